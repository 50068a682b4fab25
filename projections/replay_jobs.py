"""A replay in several processes: the ledger's partitions split among them, one database.

Each process runs the projector (projections/projector.py) on its share of the partitions.
Every row a partition's entries fold into belongs to that partition, positions move per
partition, and counters across partitions are added in SQL, so the database is the same as one
process would build, row for row. Python folds on one core per process: this is how a replay
uses the machine.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from projections.database import Database
from projections.ledger_reader import partitions_of
from projections.projector import Progress, Projector, Until
from projections.store import Projection
from topics.errors import AutopilotError
from topics.kafka_security import PLAINTEXT, KafkaSecurity

# How often the parent looks at its children when none reports.
POLL_SECONDS = 0.2
# A process reports after every batch: this long without any report is a stall, not work.
STALL_SECONDS = 300.0


@dataclass(frozen=True)
class ReplayJob:
    """What every process of one replay needs to know."""

    url: str
    bootstrap: str
    topic: str
    interval_seconds: int
    batch_records: int
    until: Until | None
    # Pickled into each process: file paths, no SSL context (topics/kafka_security.py).
    security: KafkaSecurity = PLAINTEXT


def replay(
    job: ReplayJob, processes: int, on_progress: Callable[[Progress], None] | None = None
) -> Progress:
    """Replay the ledger into the job's database with up to `processes` processes."""
    partitions = asyncio.run(partitions_of(job.bootstrap, job.topic, job.security))
    shares = [frozenset(partitions[i :: max(1, processes)]) for i in range(max(1, processes))]
    shares = [share for share in shares if share]
    context = multiprocessing.get_context("spawn")
    reports: multiprocessing.Queue[tuple[object, ...]] = context.Queue()
    children = [
        context.Process(target=_run_share, args=(job, share, number, reports), daemon=True)
        for number, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    latest: dict[int, Progress] = {}
    done: set[int] = set()
    heard = time.monotonic()
    try:
        while len(done) < len(children):
            try:
                kind, number, progress = reports.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [c for n, c in enumerate(children) if n not in done and not c.is_alive()]
                if dead:
                    raise AutopilotError(
                        f"a replay process ended without a result (exit code {dead[0].exitcode})"
                    ) from None
                if time.monotonic() - heard > STALL_SECONDS:
                    raise AutopilotError(
                        f"the replay made no progress for {STALL_SECONDS:.0f} s: "
                        "check the broker and the database"
                    ) from None
                continue
            heard = time.monotonic()
            if kind == "error":
                raise AutopilotError(str(progress))
            assert isinstance(number, int) and isinstance(progress, Progress)
            latest[number] = progress
            if kind == "done":
                done.add(number)
            if on_progress is not None:
                on_progress(_sum(latest.values()))
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)
    return _sum(latest.values())


def _sum(progresses: Iterable[Progress]) -> Progress:
    """The processes' progress as one: counts added, from the first start to the last end."""
    parts = list(progresses)
    totals = Progress()
    for name in ("records", "folded", "copies", "unreadable", "later", "total"):
        setattr(totals, name, sum(getattr(p, name) for p in parts))
    if parts:
        totals.began = min(p.began for p in parts)
        totals.ended = max(p.ended or time.monotonic() for p in parts)
    return totals


def _run_share(
    job: ReplayJob, share: frozenset[int], number: int, reports: multiprocessing.Queue[object]
) -> None:
    """One process: fold its partitions, reporting progress after every batch."""
    try:
        database = Database.open(job.url)
        try:
            projection = Projection(database, job.topic, job.interval_seconds)
            projector = Projector(
                projection,
                job.bootstrap,
                until=job.until,
                on_batch=lambda progress: reports.put(("progress", number, progress)),
                batch_records=job.batch_records,
                partitions=share,
                security=job.security,
            )
            progress = asyncio.run(projector.run(follow=False))
            reports.put(("done", number, progress))
        finally:
            database.close()
    except Exception as exc:
        reports.put(("error", number, f"replay of partitions {sorted(share)} failed: {exc}"))
