"""What the worker benches see of a worker from outside, as a client and an operator do: the
signals they send one per record, the ledger read with `read_committed`, the HTTP workspace
view, the process's resident memory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from types import TracebackType

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.views import SERVED_BY_HEADER
from projections.ledger_reader import seek_to_start
from tools.worker_process import WorkerProcess
from topics.shards import Shards
from topics.signals import FollowupDue, Signal, SignalType

PROBE_INTERVAL_SECONDS = 0.05


class BenchFailed(Exception):
    """A worker bench could not measure: the message says what, with the workers' logs."""

    def __init__(self, message: str, workers: Sequence[WorkerProcess]) -> None:
        logs = "\n".join(f"--- {w.log_path} ---\n{w.log_tail()}" for w in workers)
        super().__init__(f"bench failed: {message}\n{logs}")


def per_record(signals: Sequence[Signal]) -> list[tuple[bytes, bytes]]:
    """(key, value) records: one JSON signal each, keyed by workspace id."""
    return [(s.workspace_id.encode(), s.model_dump_json().encode()) for s in signals]


@asynccontextmanager
async def producer(bootstrap: str, *, linger_ms: int = 5) -> AsyncIterator[AIOKafkaProducer]:
    """A plain client's producer (the default partitioner: murmur2 of the key, the workspace's
    shard), started before any clock runs."""
    started = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=linger_ms
    )
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


async def send_all(
    sender: AIOKafkaProducer, topic: str, records: Sequence[tuple[bytes, bytes]]
) -> None:
    """Send the records and wait until the broker has every one."""
    deliveries = [await sender.send(topic, value, key=key) for key, value in records]
    await asyncio.gather(*deliveries)


def warm_up_signals(before: datetime, partitions: int) -> list[Signal]:
    """One follow-up per shard, a day before the workload: its slot under the platform cap is
    in an interval the workload never uses, so the decisions expected are unchanged, and each
    shard's decision proves that its owner processes it."""
    shards = Shards(partitions)
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        found.setdefault(shards.owner(f"ws-warm-up-{n}"), f"ws-warm-up-{n}")
        n += 1
    return [
        FollowupDue(
            id=f"warm-up-{shard}",
            workspace_id=workspace_id,
            type=SignalType.FOLLOWUP_DUE,
            occurred_at=before - timedelta(days=1),
            source="bench",
        )
        for shard, workspace_id in sorted(found.items())
    ]


def one_per_shard(workspace_ids: Sequence[str], partitions: int) -> list[str]:
    """The first of the workspaces on each shard: what asking every shard takes."""
    shards = Shards(partitions)
    first: dict[int, str] = {}
    for workspace_id in workspace_ids:
        first.setdefault(shards.owner(workspace_id), workspace_id)
    return [first[shard] for shard in sorted(first)]


class LedgerWatch:
    """A `read_committed` reader of a ledger from its start: which decision entries are on it,
    when this reader first saw each signal decided, and how many signals the folds counted.

    Only decision and fold entries are decoded, so the reader takes little of the cores the
    workers run on.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 << 20,
        )
        self.decision_ids: set[str] = set()
        # Signal id (a decision's correlation id) → (when it was seen, the decision's kind).
        self.decided: dict[str, tuple[float, str]] = {}
        self.folded = 0

    async def __aenter__(self) -> LedgerWatch:
        await self._consumer.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    async def wait(
        self, done: Callable[[], bool], workers: Sequence[WorkerProcess], timeout: float
    ) -> float:
        """Read until `done()` holds; returns when (perf_counter) the last record read was
        fetched. Fails when a worker exits, or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        seen = time.perf_counter()
        while not done():
            for worker in workers:
                if not worker.alive:
                    raise BenchFailed(f"a worker exited with code {worker.returncode}", workers)
            if time.monotonic() > deadline:
                raise BenchFailed(f"the ledger was not complete after {timeout:.0f} s", workers)
            batches = await self._consumer.getmany(timeout_ms=100)
            seen = time.perf_counter()
            for records in batches.values():
                for record in records:
                    self._read(record.value, seen)
        return seen

    def _read(self, value: bytes | None, seen: float) -> None:
        """Note a decision or a fold; other entries are passed over undecoded."""
        if value is None:
            return
        if b'"kind":"decision.' in value:
            entry = orjson.loads(value)
            self.decision_ids.add(entry["entry_id"])
            self.decided.setdefault(entry["correlation_id"], (seen, entry["kind"]))
        elif b'"kind":"signals.folded"' in value:
            self.folded += orjson.loads(value)["payload"]["signals"]


async def settle(
    workers: Sequence[WorkerProcess],
    watch: LedgerWatch,
    sender: AIOKafkaProducer,
    topic: str,
    warm_up: Sequence[Signal],
    token: str,
) -> None:
    """Return once every shard decided a warm-up signal and the shards are spread over all
    the workers: nothing of the group's start is left inside a measurement."""
    await send_all(sender, topic, per_record(warm_up))
    ids = {signal.id for signal in warm_up}
    await watch.wait(lambda: ids <= watch.decided.keys(), workers, 180)
    workspaces = [signal.workspace_id for signal in warm_up]
    await ready_at(workers, workspaces, {200}, token, 180)


async def ready_at(
    workers: Sequence[WorkerProcess],
    workspaces: Sequence[str],
    accepted: set[int],
    token: str,
    timeout: float,
) -> float:
    """When (perf_counter) each workspace, asked of the first worker, is answered with an
    accepted status by its shard's owner, and every worker owns some of them: the shards are
    assigned, their state restored, and served."""
    deadline = time.monotonic() + timeout
    url = workers[0].web_url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        while True:
            answers = await asyncio.gather(*(_ask(session, url, w, token) for w in workspaces))
            owners = {served_by for _, served_by in answers}
            if all(status in accepted for status, _ in answers) and len(owners) == len(workers):
                return time.perf_counter()
            for worker in workers:
                if not worker.alive:
                    raise BenchFailed(f"a worker exited with code {worker.returncode}", workers)
            if time.monotonic() > deadline:
                raise BenchFailed(f"workers not serving every shard after {timeout:.0f} s", workers)
            await asyncio.sleep(PROBE_INTERVAL_SECONDS)


async def _ask(
    session: aiohttp.ClientSession, url: str, workspace_id: str, token: str
) -> tuple[int, str | None]:
    """GET /workspaces/{id}: the status and the worker that served it (0: no answer yet)."""
    try:
        async with session.get(
            f"{url}/workspaces/{workspace_id}", headers={"Authorization": f"Bearer {token}"}
        ) as answer:
            await answer.read()
            return answer.status, answer.headers.get(SERVED_BY_HEADER)
    except (aiohttp.ClientError, TimeoutError):
        return 0, None


def rss_mb(worker: WorkerProcess) -> float:
    """The worker process's resident memory (VmRSS), in MB."""
    assert worker.process is not None
    with open(f"/proc/{worker.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchFailed("no VmRSS for the worker in /proc", [worker])


async def changelog_entries(bootstrap: str, topic: str, partitions: int) -> int:
    """The records a new owner restores: the changelog read with `read_committed` to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await seek_to_start(consumer, tps)
        count = 0
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                got = await consumer.getmany(tp, timeout_ms=500, max_records=50_000)
                count += len(got.get(tp, []))
        return count
    finally:
        await consumer.stop()
