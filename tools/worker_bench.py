"""`make bench`'s worker lines: `python -m app worker` processes as deployed, each deployment on
fresh topics, fed one JSON signal per record keyed by workspace id (as any Kafka client sends
them). Every worker acts on the sandbox platform with its live projector off, as in the batch
rounds, and is settled first (each shard has decided a warm-up signal).

- **One-per-record end-to-end:** one worker, from the first signal sent until every decision
  an offline replay expects is on the ledger (read with `read_committed`), against raw
  aiokafka reading that topic (getmany + orjson) in the same round.
- **Two workers / one:** the same with two worker processes in one group (each its own data
  directory and web port), on a deployment of its own next to the one-worker round.
- **Decision latency:** a steady stream to a settled worker, each signal a webhook failure of a
  workspace of its own (so no cooldown hides one: every signal is decided), from its send to
  its decision entry, whatever the verdict (made, deferred or suppressed under the platform
  cap), seen by a `read_committed` reader. The first seconds are a lead-in, not counted.
  Twice: at the asked rate, and at a light one (200/s) that leaves the machine room, so the
  worker's own latency shows apart from the broker, the worker and the bench sharing 2 cores.
- **Memory:** the worker's resident set after it folded a heartbeat from each of N workspaces.
- **Restore:** that deployment's changelog, restored by a new worker with an empty data
  directory: from its start until every shard answers GET /workspaces/{id} with the state;
  beside it, a worker of an empty deployment, until every shard answers (404: no signals).
  The restore rate is the changelog's entries over the time the restoring worker took beyond
  the empty one.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from app.kafka_admin import ensure_topics
from app.settings import Settings
from engine.signal_stage import SignalStage
from tools import engine_bench
from tools.worker_process import WorkerProcess
from tools.worker_watch import (
    LedgerWatch,
    changelog_entries,
    one_per_shard,
    per_record,
    producer,
    ready_at,
    rss_mb,
    send_all,
    settle,
    warm_up_signals,
)
from tools.workload import workspace_ids
from topics.catalog import stage_changelog
from topics.signals import Heartbeat, Signal, SignalType, WebhookFailed

TIMEOUT_SECONDS = 600.0
READY_TIMEOUT_SECONDS = 300.0
LEAD_IN_SECONDS = 2.0
# How long the last batch's changes take to reach the store after its commit, at most.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Options:
    """How much the worker lines measure (the integration test shrinks these)."""

    rounds: int
    latency_rate: int
    latency_seconds: float
    memory_workspaces: int
    # A second, light stream: the latency of the worker itself, on a machine not saturated.
    latency_light_rate: int = 200


@dataclass(frozen=True)
class Workload:
    """The bench's signals, the decisions an offline replay expects of them, and their start."""

    signals: list[Signal]
    expected: set[str]
    start: datetime


@dataclass(frozen=True)
class Latency:
    """Publish → decision, in milliseconds, and what was decided."""

    p50: float
    p99: float
    signals: int
    sent_rate: float
    kinds: Counter[str]


@dataclass(frozen=True)
class Restore:
    """Memory after folding many workspaces, and how long their state takes to come back."""

    rss_settled: float
    rss: float
    entries: int
    ready: float
    empty_ready: float


@dataclass(frozen=True)
class Figures:
    """The medians of the worker lines."""

    raw: float
    one: float
    two: float
    latency: Latency
    light: Latency
    restore: Restore


@dataclass(frozen=True)
class Deployment:
    """A deployment on fresh topics; its workers act on the sandbox platform."""

    settings: Settings
    bootstrap: str
    workdir: Path
    env: Mapping[str, str]

    def worker(self, name: str) -> WorkerProcess:
        """A worker of this deployment with its own data directory, log and web port."""
        worker = WorkerProcess.for_deployment(
            self.settings, self.bootstrap, self.workdir / name, name=name
        )
        worker.env.update(self.env)
        return worker

    def topic(self, name: str) -> str:
        """A topic's full name in this deployment."""
        return self.settings.topic(name)


class WorkerBench:
    """Makes the deployments the worker lines run on: fresh topics, one control token."""

    def __init__(
        self, base: Settings, bootstrap: str, tmp: Path, platform: Mapping[str, str]
    ) -> None:
        self.base = base
        self.bootstrap = bootstrap
        self.tmp = tmp
        self.token = secrets.token_urlsafe(24)
        self.env = {
            **platform,
            "AUTOPILOT_PROJECTOR_ENABLED": "false",
            "AUTOPILOT_CONTROL_TOKEN": self.token,
        }
        self._made = 0

    async def deploy(self, tag: str) -> Deployment:
        """A new deployment (topic prefix, group, changelog), its topics created."""
        self._made += 1
        run = f"wb{int(time.time())}{tag}{self._made}"
        settings = self.base.model_copy(update={"topic_prefix": f"{run}.", "app_id": f"ap-{run}"})
        await ensure_topics(settings, self.bootstrap)
        return Deployment(settings, self.bootstrap, self.tmp / run, self.env)


@contextmanager
def running(workers: Sequence[WorkerProcess]) -> Iterator[Sequence[WorkerProcess]]:
    """Start the workers; stop them together on the way out (one after the other, each would
    first take over the shards of those stopped before it)."""
    try:
        for worker in workers:
            worker.start()
        yield workers
    finally:
        with ThreadPoolExecutor(max_workers=len(workers)) as pool:
            list(pool.map(WorkerProcess.stop, workers))


async def measure(bench: WorkerBench, workload: Workload, options: Options) -> Figures:
    """Every worker line; throughput rounds alternate one worker and two."""
    raws, ones, twos = [], [], []
    for number in range(1, options.rounds + 1):
        one, raw = await _throughput(bench, workload, 1)
        two, _ = await _throughput(bench, workload, 2)
        raws.append(raw)
        ones.append(one)
        twos.append(two)
        print(
            f"worker round {number}: one signal per record: raw {raw:,.0f} signals/s, "
            f"one worker {one:,.0f} signals/s, two workers {two:,.0f} signals/s"
        )
    latency = await _latency(bench, workload, options, options.latency_rate)
    light = await _latency(bench, workload, options, options.latency_light_rate)
    restore = await _restore(bench, workload, options)
    return Figures(
        statistics.median(raws),
        statistics.median(ones),
        statistics.median(twos),
        latency,
        light,
        restore,
    )


async def _throughput(bench: WorkerBench, workload: Workload, count: int) -> tuple[float, float]:
    """Signals/s of `count` workers, to every decision expected on the ledger, and raw
    aiokafka's on the same topic."""
    deployment = await bench.deploy(f"w{count}")
    topic = deployment.topic("signals")
    records = per_record(workload.signals)
    warm_up = warm_up_signals(workload.start, deployment.settings.partitions)
    workers = [deployment.worker(f"worker-{n}") for n in range(count)]
    with running(workers):
        async with (
            LedgerWatch(bench.bootstrap, deployment.topic("ledger")) as watch,
            producer(bench.bootstrap) as sender,
        ):
            await settle(workers, watch, sender, topic, warm_up, bench.token)
            started = time.perf_counter()
            await send_all(sender, topic, records)
            done = await watch.wait(
                lambda: workload.expected <= watch.decision_ids, workers, TIMEOUT_SECONDS
            )
    raw = await engine_bench.raw_rate(bench.bootstrap, topic, len(records) + len(warm_up))
    return len(records) / (done - started), raw


async def _latency(bench: WorkerBench, workload: Workload, options: Options, rate: int) -> Latency:
    """Publish → decision at a steady rate, after a lead-in."""
    deployment = await bench.deploy("lat")
    topic = deployment.topic("signals")
    lead_in = int(rate * LEAD_IN_SECONDS)
    total = lead_in + int(rate * options.latency_seconds)
    measured = {_failure_id(n) for n in range(lead_in, total)}
    sent_at: dict[str, float] = {}
    worker = deployment.worker("worker")
    with running([worker]):
        async with (
            LedgerWatch(bench.bootstrap, deployment.topic("ledger")) as watch,
            producer(bench.bootstrap, linger_ms=0) as sender,
        ):
            warm_up = warm_up_signals(workload.start, deployment.settings.partitions)
            await settle([worker], watch, sender, topic, warm_up, bench.token)
            stream = asyncio.create_task(_steady(sender, topic, total, rate, sent_at))
            try:
                # A stream that failed ends the wait: its error is raised below.
                await watch.wait(
                    lambda: (
                        stream.done()
                        and (stream.exception() is not None or measured <= watch.decided.keys())
                    ),
                    [worker],
                    options.latency_seconds + TIMEOUT_SECONDS,
                )
            finally:
                stream.cancel()
            sent_rate = stream.result()
    latencies = sorted((watch.decided[s][0] - sent_at[s]) * 1000 for s in measured)
    return Latency(
        statistics.median(latencies),
        statistics.quantiles(latencies, n=100)[98],
        len(latencies),
        sent_rate,
        Counter(watch.decided[s][1] for s in measured),
    )


def _failure_id(n: int) -> str:
    """The id of the latency stream's n-th signal (its decision's correlation id)."""
    return f"lat-{n}"


async def _steady(
    sender: AIOKafkaProducer, topic: str, count: int, rate: int, sent_at: dict[str, float]
) -> float:
    """Send `count` webhook failures at `rate` a second, each of a workspace of its own and
    stamped with the moment it is handed to the producer; returns the rate achieved."""
    deliveries = []
    started = time.perf_counter()
    for n in range(count):
        early = started + n / rate - time.perf_counter()
        if early > 0:
            await asyncio.sleep(early)
        signal = WebhookFailed(
            id=_failure_id(n),
            workspace_id=f"ws-lat-{n:07d}",
            type=SignalType.WEBHOOK_FAILED,
            occurred_at=datetime.now(UTC),
            source="webhook-dispatcher",
        )
        [(key, value)] = per_record([signal])
        sent_at[signal.id] = time.perf_counter()
        deliveries.append(await sender.send(topic, value, key=key))
    await asyncio.gather(*deliveries)
    return count / (time.perf_counter() - started)


async def _restore(bench: WorkerBench, workload: Workload, options: Options) -> Restore:
    """Memory after folding a heartbeat per workspace, then that state restored by new workers
    (one per round), each beside a worker of an empty deployment."""
    deployment = await bench.deploy("mem")
    topic = deployment.topic("signals")
    heartbeats = [
        Heartbeat(
            id=f"hb-{workspace_id}",
            workspace_id=workspace_id,
            type=SignalType.HEARTBEAT,
            occurred_at=workload.start,
            source="agent",
        )
        for workspace_id in workspace_ids(options.memory_workspaces)
    ]
    warm_up = warm_up_signals(workload.start, deployment.settings.partitions)
    worker = deployment.worker("worker")
    with running([worker]):
        async with (
            LedgerWatch(bench.bootstrap, deployment.topic("ledger")) as watch,
            producer(bench.bootstrap) as sender,
        ):
            await settle([worker], watch, sender, topic, warm_up, bench.token)
            settled = rss_mb(worker)
            await send_all(sender, topic, per_record(heartbeats))
            folded = len(heartbeats) + len(warm_up)
            await watch.wait(lambda: watch.folded >= folded, [worker], TIMEOUT_SECONDS)
            await asyncio.sleep(SETTLE_SECONDS)
            rss = rss_mb(worker)
    changelog = stage_changelog(deployment.settings.app_id, SignalStage.name)
    partitions = deployment.settings.partitions
    entries = await changelog_entries(bench.bootstrap, changelog, partitions)
    probes = one_per_shard([h.workspace_id for h in heartbeats], partitions)
    readies, empties = [], []
    for number in range(1, options.rounds + 1):
        empty = await _ready(bench, await bench.deploy("empty"), "worker", probes, {404})
        ready = await _ready(bench, deployment, f"restore-{number}", probes, {200})
        print(
            f"restore round {number}: {entries} changelog entries, ready after {ready:.1f} s; "
            f"empty worker ready after {empty:.1f} s"
        )
        readies.append(ready)
        empties.append(empty)
    return Restore(settled, rss, entries, statistics.median(readies), statistics.median(empties))


async def _ready(
    bench: WorkerBench, deployment: Deployment, name: str, probes: list[str], accepted: set[int]
) -> float:
    """Seconds from a new worker's start (empty data directory) until every shard answers."""
    worker = deployment.worker(name)
    started = time.perf_counter()
    with running([worker]):
        ready = await ready_at([worker], probes, accepted, bench.token, READY_TIMEOUT_SECONDS)
    return ready - started


def print_figures(figures: Figures, options: Options) -> None:
    """The worker lines of `make bench`."""
    restore = figures.restore
    said = f"medians of {options.rounds} rounds" if options.rounds > 1 else "1 round"
    print(f"\nthe worker process, one signal per record ({said}; latency and memory: 1 round)")
    print(f"raw aiokafka on the one-per-record topic: {figures.raw:,.0f} signals/s")
    print(f"one-per-record end-to-end: {figures.one:,.0f} signals/s")
    print(f"ratio one-per-record / raw: {figures.one / figures.raw:.3f}")
    print(f"two workers end-to-end: {figures.two:,.0f} signals/s")
    print(f"two workers / one: {figures.two / figures.one:.2f}")
    for sent, latency in (
        (options.latency_rate, figures.latency),
        (options.latency_light_rate, figures.light),
    ):
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(latency.kinds.items()))
        print(
            f"latency: {latency.signals} signals sent at {latency.sent_rate:,.0f}/s, "
            f"each decided ({kinds}); every verdict counted"
        )
        print(
            f"decision latency p50/p99 at {sent} signals/s: "
            f"{latency.p50:.1f} / {latency.p99:.1f} ms"
        )
    print(f"rss of a settled worker: {restore.rss_settled:.0f} MB")
    print(f"rss after {options.memory_workspaces} workspaces: {restore.rss:.0f} MB")
    print(f"ready after {restore.entries} changelog entries: {restore.ready:.1f} s")
    beyond = restore.ready - restore.empty_ready
    rate = f"{restore.entries / beyond:,.0f} entries/s" if beyond > 0 else "n/a (within noise)"
    print(f"restore rate (entries over the time beyond an empty worker's): {rate}")
    print(f"empty worker ready: {restore.empty_ready:.1f} s")
