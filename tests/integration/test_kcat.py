"""kcat publishes with librdkafka's default partitioner, and the workspace view stays exact.

librdkafka (kcat, confluent-kafka) puts a keyed record on CRC32(key) mod partitions, while the
shard that owns a workspace is murmur2's choice (topics/shards.py). So kcat puts some workspaces'
signals on a partition that does not own them; the signal stage re-routes those to their
owner. This test publishes with the real kcat, checks where its records landed, and asserts
what an operator reads back: the workspace view, the dead-letter topic and the ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from app.settings import Settings
from projections.ledger_reader import read_ledger, seek_to_start
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import get_workspace, wait_for_workspace, wait_until_answers
from topics.headers import REROUTED_FROM, REROUTED_PIECE
from topics.ledger import LedgerKind
from topics.shards import shard_of

pytestmark = pytest.mark.integration

# Fixed and in the past: a signal more than 300 s after its record's timestamp is refused.
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
EPOCH0 = int(T0.timestamp())
INVALID_REASON = "invalid: attributes.pending: Input should be a valid integer"


@pytest.fixture
def kcat() -> str:
    """The kcat executable; a missing one fails the test (CI installs it with `make tools`)."""
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not on the PATH: run `make tools` (installs Debian's kcat package)")
    return path


def librdkafka_partition(key: str, partitions: int) -> int:
    """Where librdkafka's default partitioner (consistent_random) puts a non-empty key."""
    return zlib.crc32(key.encode()) % partitions


def pick_workspaces(partitions: int, misplaced: int) -> tuple[str, list[str]]:
    """One workspace both partitioners agree on, and some kcat misplaces (distinct partitions)."""
    agreeing: str | None = None
    by_kcat_partition: dict[int, str] = {}
    for n in range(1000):
        workspace = f"ws-kcat-{n}"
        kcat_partition = librdkafka_partition(workspace, partitions)
        if kcat_partition == shard_of(workspace, partitions):
            agreeing = agreeing or workspace
        else:
            by_kcat_partition.setdefault(kcat_partition, workspace)
        if agreeing and len(by_kcat_partition) >= misplaced:
            return agreeing, list(by_kcat_partition.values())[:misplaced]
    raise AssertionError(f"no workspace ids found for {partitions} partitions")


def signal(workspace: str, n: int, kind: str, seconds: int, **attributes: Any) -> dict[str, Any]:
    """One signal as a plain Kafka client would write it."""
    return {
        "id": f"{workspace}-{n}",
        "workspace_id": workspace,
        "type": kind,
        "occurred_at": (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z"),
        "source": "kcat",
        "attributes": attributes,
    }


@dataclass(frozen=True)
class Script:
    """What one workspace sends, and what its view must show afterwards."""

    signals: list[dict[str, Any]]
    expected: dict[str, Any]


def scripts(healthy: str, degraded: str, critical: str, quiet: str) -> dict[str, Script]:
    """Four workspaces whose views differ in every field the test reads."""
    return {
        healthy: Script(
            [
                signal(healthy, 1, "heartbeat", 0, component="api"),
                signal(healthy, 2, "error_reported", 20, component="api"),
                signal(healthy, 3, "queue_depth", 40, pending=30),
            ],
            {
                "as_of": EPOCH0 + 40,
                "minute": {"heartbeat": 1, "error_reported": 1, "queue_depth": 1},
                "hour": {"heartbeat": 1, "error_reported": 1, "queue_depth": 1},
                "gauges": {"queue_depth": {"at": EPOCH0 + 40, "value": 30}},
                "duplicates": 0,
                "late": 0,
                "score": 95,
                "status": "healthy",
                "deductions": [5],
            },
        ),
        degraded: Script(
            [
                signal(degraded, 1, "error_reported", 0),
                signal(degraded, 2, "error_reported", 30),
                signal(degraded, 3, "queue_depth", 50, pending=80),
                signal(degraded, 4, "webhook_failed", 70, status=503),
                signal(degraded, 5, "queue_depth", 90, pending=120),
            ],
            {
                "as_of": EPOCH0 + 90,
                "minute": {"webhook_failed": 1, "queue_depth": 1},
                "hour": {"error_reported": 2, "queue_depth": 2, "webhook_failed": 1},
                "gauges": {"queue_depth": {"at": EPOCH0 + 90, "value": 120}},
                "duplicates": 1,  # the resent degraded-2 below
                "late": 0,
                "score": 70,
                "status": "degraded",
                "deductions": [10, 20],
            },
        ),
        critical: Script(
            [
                signal(critical, 1, "queue_depth", 0, pending=200),
                signal(critical, 2, "oldest_pending_age", 5, age_seconds=2400),
                signal(critical, 3, "publish_failed", 10, channel="email"),
                *(signal(critical, n, "error_reported", 10 + n) for n in range(4, 9)),
                signal(critical, 9, "heartbeat", 360),  # the next 5-minute step, minute 10:06
            ],
            {
                "as_of": EPOCH0 + 360,
                "minute": {"heartbeat": 1},
                "hour": {
                    "queue_depth": 1,
                    "oldest_pending_age": 1,
                    "publish_failed": 1,
                    "error_reported": 5,
                    "heartbeat": 1,
                },
                "gauges": {
                    "queue_depth": {"at": EPOCH0, "value": 200},
                    "oldest_pending_age": {"at": EPOCH0 + 5, "value": 2400},
                },
                "duplicates": 0,
                "late": 0,
                "score": 30,
                "status": "critical",
                "deductions": [10, 15, 20, 25],
            },
        ),
        quiet: Script(
            [
                signal(quiet, 1, "followup_due", 0, contact_id="c-1"),
                signal(quiet, 2, "integration_offline", 10, provider="slack"),
            ],
            {
                "as_of": EPOCH0 + 10,
                "minute": {"followup_due": 1, "integration_offline": 1},
                "hour": {"followup_due": 1, "integration_offline": 1},
                "gauges": {},
                "duplicates": 0,
                "late": 0,
                "score": 100,
                "status": "healthy",
                "deductions": [],
            },
        ),
    }


def outcome(body: dict[str, Any]) -> dict[str, Any]:
    """The parts of GET /workspaces/{id} the test pins down exactly."""
    return {
        "as_of": body["as_of"],
        "minute": body["minute"]["counts"],
        "hour": body["hour"]["counts"],
        "gauges": body["gauges"],
        "duplicates": body["duplicates"],
        "late": body["late"],
        "score": body["health"]["score"],
        "status": body["health"]["status"],
        "deductions": sorted(d["points"] for d in body["health"]["deductions"]),
    }


def reached(expected: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    """Whether a view has come as far as expected (not whether it is exact: that comes last)."""

    def check(body: dict[str, Any]) -> bool:
        return bool(
            body["as_of"] == expected["as_of"]
            and sum(body["hour"]["counts"].values()) >= sum(expected["hour"].values())
            and body["duplicates"] >= expected["duplicates"]
        )

    return check


async def kcat_produce(
    kcat: str, bootstrap: str, topic: str, lines: list[bytes], *, keyed: bool = True
) -> None:
    """`kcat -P` with librdkafka's default partitioner, and a key before a tab on each line
    (unless not `keyed`: then the lines are values, and records have no key)."""
    process = await asyncio.create_subprocess_exec(
        kcat,
        "-P",
        "-b",
        bootstrap,
        "-t",
        topic,
        *(("-K", "\t") if keyed else ()),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(b"\n".join(lines) + b"\n"), 30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError("kcat did not finish producing within 30 s") from None
    assert process.returncode == 0, f"kcat exited {process.returncode}: {err.decode()}"


async def read_all(bootstrap: str, topic: str, partitions: int) -> list[ConsumerRecord[Any, Any]]:
    """Every committed record on the topic now: each partition from offset 0 to its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    records: list[ConsumerRecord[Any, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await seek_to_start(consumer, tps)
        ends = await consumer.end_offsets(tps)
        async with asyncio.timeout(WAIT_SECONDS):
            for tp in tps:
                while await consumer.position(tp) < ends[tp]:
                    for batch in (await consumer.getmany(tp, timeout_ms=500)).values():
                        records.extend(r for r in batch if r.offset < ends[tp])
    finally:
        await consumer.stop()
    return records


async def test_kcat_default_partitioner_gives_exact_workspace_views(
    kcat: str, settings: Settings, start_worker: StartWorker
) -> None:
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap
    partitions = settings.partitions
    signals_topic = settings.topic("signals")
    healthy, misplaced = pick_workspaces(partitions, 3)
    degraded, critical, quiet = misplaced
    plan = scripts(healthy, degraded, critical, quiet)

    # Given a running worker
    worker = start_worker()
    await wait_until_answers(worker, WAIT_SECONDS)

    # When kcat publishes each workspace's signals, one per record, keyed by workspace id and
    # interleaved across workspaces (each workspace's own order kept), then resends one signal
    # and sends one invalid record
    interleaved = itertools.chain.from_iterable(
        itertools.zip_longest(*(script.signals for script in plan.values()))
    )
    values = [(s["workspace_id"], orjson.dumps(s)) for s in interleaved if s is not None]
    duplicate = orjson.dumps(plan[degraded].signals[1])
    invalid = orjson.dumps(
        {**signal(quiet, 3, "queue_depth", 20), "attributes": {"pending": "lots"}}
    )
    values += [(degraded, duplicate), (quiet, invalid)]
    await kcat_produce(
        kcat, bootstrap, signals_topic, [key.encode() + b"\t" + value for key, value in values]
    )

    # Then each workspace's view reaches its expected watermark and totals ...
    for workspace, script in plan.items():
        await wait_for_workspace(worker, workspace, reached(script.expected), WAIT_SECONDS)

    # ... and kcat really used CRC32 of the key: every record it wrote is on that partition,
    # which for the misplaced workspaces is not the owning shard
    records = await read_all(bootstrap, signals_topic, partitions)
    from_kcat = [r for r in records if r.key is not None]
    assert sorted(r.value for r in from_kcat) == sorted(value for _, value in values)
    for record in from_kcat:
        workspace = record.key.decode()
        assert record.partition == librdkafka_partition(workspace, partitions), workspace
        owns = record.partition == shard_of(workspace, partitions)
        assert owns == (workspace == healthy), (workspace, record.partition)

    # ... and the misplaced workspaces' valid signals (the duplicate too, before de-duplication)
    # were re-routed to their owner once each (committed with the batch that read them), each
    # naming the kcat record it came from
    by_position = {(r.partition, r.offset): r for r in from_kcat}
    pieces: list[tuple[bytes, bytes, int]] = []
    rerouted: dict[str, list[str]] = {}
    for record in records:
        headers = dict(record.headers)
        origin = headers.get(REROUTED_FROM)
        if origin is None:
            continue
        pieces.append((origin, headers[REROUTED_PIECE], record.partition))
        topic, partition, offset = origin.decode().rsplit("/", 2)
        assert topic == signals_topic
        source = by_position[int(partition), int(offset)]
        for item in orjson.loads(record.value):
            assert record.partition == shard_of(item["workspace_id"], partitions)
            assert item["id"] == orjson.loads(source.value)["id"]
            rerouted.setdefault(item["workspace_id"], []).append(item["id"])
    assert len(pieces) == len(set(pieces)), "a record re-routed twice"
    assert rerouted == {
        degraded: [s["id"] for s in plan[degraded].signals] + [f"{degraded}-2"],
        critical: [s["id"] for s in plan[critical].signals],
        quiet: [s["id"] for s in plan[quiet].signals],
    }

    # ... and the invalid record is dead-lettered as sent, with the reason and its position
    (dead,) = await read_all(bootstrap, settings.topic("signals.dlq"), partitions)
    (invalid_record,) = [r for r in from_kcat if r.value == invalid]
    headers = dict(dead.headers)
    assert dead.value == invalid
    assert dead.key == quiet.encode()
    assert headers["autopilot.reason"] == INVALID_REASON.encode()
    assert headers["autopilot.source.topic"] == signals_topic.encode()
    assert headers["autopilot.source.partition"] == str(invalid_record.partition).encode()
    assert headers["autopilot.source.offset"] == str(invalid_record.offset).encode()

    # ... and recorded on the ledger as rejected, with the workspace it claimed
    entries = await read_ledger(
        bootstrap,
        settings.topic("ledger"),
        until=lambda got: any(e.kind is LedgerKind.SIGNAL_REJECTED for e in got),
        timeout=WAIT_SECONDS,
    )
    (rejected,) = [e for e in entries if e.kind is LedgerKind.SIGNAL_REJECTED]
    assert rejected.workspace_id == quiet
    assert rejected.payload.model_dump() == {
        "reason": INVALID_REASON,
        "source": {
            "topic": signals_topic,
            "partition": invalid_record.partition,
            "offset": invalid_record.offset,
            "index": None,
        },
    }

    # ... and, read again after all of that (every re-routed record was on the topic), every
    # workspace's counts, gauges and health are exactly what was sent: none lost, doubled or
    # misfiled
    for workspace, script in plan.items():
        status, body = await get_workspace(worker, workspace)
        assert status == 200, (workspace, body)
        assert outcome(body) == script.expected, (workspace, worker.log_tail())
    assert worker.alive, worker.log_tail()


async def test_random_keys_and_no_keys_fold_each_signal_once_on_its_shard(
    kcat: str, settings: Settings, start_worker: StartWorker
) -> None:
    """Given signals of many workspaces sent by kcat, half under random keys and half with no
    key (librdkafka then picks a partition at random), when a worker has read them, then each
    workspace's view counts exactly what was sent for it: every signal folded once, on the
    shard that owns its workspace, whatever partition it landed on."""
    bootstrap = settings.kafka_bootstrap_servers
    assert bootstrap
    signals_topic = settings.topic("signals")
    workspaces = [f"ws-anykey-{n}" for n in range(24)]
    sent = {
        w: [signal(w, n, "error_reported", n) for n in range(1, 1 + n_of(w))] for w in workspaces
    }
    every = [s for signals in sent.values() for s in signals]
    worker = start_worker()
    await wait_until_answers(worker, WAIT_SECONDS)

    # When half go under random keys and half with no key
    half = len(every) // 2
    await kcat_produce(
        kcat,
        bootstrap,
        signals_topic,
        [f"random-{n}".encode() + b"\t" + orjson.dumps(s) for n, s in enumerate(every[:half])],
    )
    await kcat_produce(
        kcat, bootstrap, signals_topic, [orjson.dumps(s) for s in every[half:]], keyed=False
    )

    # Then every workspace's view holds each of its signals once
    for workspace, signals in sent.items():
        counted = {"error_reported": len(signals)}
        await wait_for_workspace(
            worker,
            workspace,
            lambda body, counted=counted: body["hour"]["counts"] == counted,
            WAIT_SECONDS,
        )
        status, body = await get_workspace(worker, workspace)
        assert status == 200, body
        assert (body["hour"]["counts"], body["duplicates"]) == (counted, 0), workspace
    landed = {r.partition for r in await read_all(bootstrap, signals_topic, settings.partitions)}
    assert len(landed) == settings.partitions, "kcat's records did not spread over the shards"
    assert worker.alive, worker.log_tail()


def n_of(workspace: str) -> int:
    """How many signals a workspace sends: 1 to 5, different across workspaces."""
    return 1 + zlib.crc32(workspace.encode()) % 5
