"""Bad input never stops the worker and never goes missing: a Hypothesis property, real broker.

One worker serves every example. An example publishes records with a plain Kafka client:
arbitrary bytes, arbitrary JSON, near-valid signals with one mutation that makes them invalid,
valid signals, and batches mixing the last two; keyed by their workspace, by another key, by no
key or sent to an explicit partition, so signals also arrive on partitions that do not own them.
Then every input must end exactly once: accepted (counted in its workspace's windows) or on
signals.dlq with a reason and its signal.rejected ledger entry; count in == count out.

The test knows what is valid from how it built each input, never by asking the product's decoder;
for arbitrary bytes and JSON it relies on the conservation law alone.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.settings import Settings
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import get_workspace, wait_for_workspace, wait_until_answers
from tests.support.factories import SEED_POLICY
from tools.worker_process import WorkerProcess
from topics.ledger import LedgerEntry, LedgerKind, parse_entry
from topics.signals import SignalType

pytestmark = pytest.mark.integration

EXAMPLES = 25
# Settled: count out == count in and nothing changed for this long. Stalled: nothing changed for
# this long without settling, so waiting longer would not help (and shrinking stays bearable).
SETTLE_SECONDS = 0.5
STALL_SECONDS = 8.0
# The product refuses signals dated more than this after their record's timestamp.
MAX_FUTURE_SECONDS = 300
# Signal type → how far ahead the seed policy lets it be (held until due).
HELD_LIMITS = {
    held.value: SEED_POLICY.timing.max_hold_seconds for held in SEED_POLICY.timing.hold_until_due
}

# (partition, offset, index in the batch or None for a whole record): where an input was read.
Position = tuple[int, int, int | None]

# --- strategies -------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_scalars = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

# What the issue and the JSON Schema files promise, written out here rather than imported.
WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ENVELOPE = frozenset(
    {"schema_version", "id", "workspace_id", "type", "occurred_at", "source", "attributes"}
)
TYPES = frozenset(t.value for t in SignalType)

ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True)
NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:/-]{0,15}", fullmatch=True)
TEXT = st.text(max_size=40)
BAD_NAME = st.sampled_from(["", "two words", "-dash-first", "x" * 65, 7, None, ["a"]])
BAD_REFERENCE = st.sampled_from(["", "two words", "/slash-first", "x" * 129, 7, None])
BAD_TEXT = st.sampled_from(["x" * 257, 7, None, ["a"]])
NAMED = (NAME, BAD_NAME)
REFERENCED = (ID, BAD_REFERENCE)
TEXTUAL = (TEXT, BAD_TEXT)

# Per signal type, per attribute: a strategy for a valid value and one for an invalid value
# (attributes are strict: a number is a JSON number, never a numeric string).
ATTRIBUTES: dict[str, dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]]] = {
    "health_degraded": {
        "health_score": (st.floats(0, 100), st.sampled_from([-1, 100.5, "50", None])),
        "component": NAMED,
        "reason": TEXTUAL,
    },
    "provisioning_needed": {"resource": NAMED, "plan": NAMED, "reason": TEXTUAL},
    "provisioning_failed": {"operation_id": REFERENCED, "reason": TEXTUAL},
    "followup_due": {"contact_id": REFERENCED, "topic": NAMED, "reason": TEXTUAL},
    "webhook_failed": {
        "webhook_id": REFERENCED,
        "endpoint_id": REFERENCED,
        "status": (st.integers(100, 599), st.sampled_from([99, 600, "503", 503.5, True])),
        "attempt": (st.integers(1, 1000), st.sampled_from([0, 1001, "1"])),
        "error": TEXTUAL,
    },
    "integration_offline": {"integration_id": REFERENCED, "provider": NAMED, "reason": TEXTUAL},
    "queue_depth": {
        "pending": (st.integers(0, 10**9), st.sampled_from([-1, 10**9 + 1, "5", 1.5, True])),
        "queue": NAMED,
    },
    "oldest_pending_age": {
        "age_seconds": (st.floats(0, 10**6), st.sampled_from([-0.5, 10 * 365 * 86_400 + 1, "60"])),
        "queue": NAMED,
    },
    "publish_failed": {"channel": NAMED, "error": TEXTUAL},
    "error_reported": {"component": NAMED, "error_class": NAMED, "message": TEXTUAL},
    "heartbeat": {"component": NAMED, "version": NAMED},
}
# Gauges: a reading is required.
REQUIRED_ATTRIBUTE = {"queue_depth": "pending", "oldest_pending_age": "age_seconds"}


@dataclass(frozen=True)
class Context:
    """What one example's inputs refer to: its own workspaces, its hour, the time it started."""

    workspaces: tuple[str, ...]
    minute: datetime
    now: datetime
    partitions: int

    @classmethod
    def new(cls, example: int, partitions: int) -> Context:
        """The context of the example-th example: fresh workspaces, times taken now."""
        now = datetime.now(UTC)
        # One minute of a recent past hour: no signal of an example is late or outside the hour.
        minute = (now - timedelta(minutes=30)).replace(second=0, microsecond=0)
        return cls(tuple(f"hyp{example}-{n}" for n in range(3)), minute, now, partitions)


@dataclass(frozen=True)
class Input:
    """One input as the test built it, and how it must end."""

    # True: must be accepted; False: must be dead-lettered; None (arbitrary input): either.
    accept: bool | None
    # What the dead-letter record must carry if it is refused; None when not checked.
    dead_letter: bytes | None
    workspace_id: str | None = None


@dataclass(frozen=True)
class Record:
    """One record to publish and the inputs it holds (a batch's items, else the record itself)."""

    value: bytes | None
    key: bytes | None
    partition: int | None
    batch: bool
    inputs: tuple[Input, ...] = field(repr=False)

    def __repr__(self) -> str:
        return (
            f"Record(value={self.value!r}, key={self.key!r}, partition={self.partition}, "
            f"accept={tuple(i.accept for i in self.inputs)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with its pretty printer: keep them short.
        printer.text(repr(self))


def _event_time(draw: st.DrawFn, at: datetime) -> str:
    offset = timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60)))
    text = at.astimezone(timezone(offset)).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


@st.composite
def valid_signals(draw: st.DrawFn, context: Context) -> dict[str, Any]:
    """A signal of any type that the issue says must be accepted."""
    kind = draw(st.sampled_from(sorted(ATTRIBUTES)))
    at = context.minute + timedelta(microseconds=draw(st.integers(0, 59_999_999)))
    signal: dict[str, Any] = {
        "workspace_id": draw(st.sampled_from(context.workspaces)),
        "type": kind,
        "occurred_at": _event_time(draw, at),
    }
    # Ids may repeat: a repeat is accepted as a duplicate, which the count includes.
    if draw(st.booleans()):
        signal["id"] = draw(ID)
    if draw(st.booleans()):
        signal["source"] = draw(NAME)
    if draw(st.booleans()):
        signal["schema_version"] = 1
    required = REQUIRED_ATTRIBUTE.get(kind)
    if required or draw(st.booleans()):
        fields = {name: good for name, (good, _) in ATTRIBUTES[kind].items()}
        mandatory = {required: fields.pop(required)} if required else {}
        signal["attributes"] = draw(st.fixed_dictionaries(mandatory, optional=fields))
    return signal


# Each mutation makes a valid signal invalid, whatever else the signal holds.
def _drop_field(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    del signal[draw(st.sampled_from(["workspace_id", "type", "occurred_at"]))]


def _bad_workspace(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["workspace_id"] = draw(
        st.sampled_from(["", "../../etc", "ws 1", "ws\n", "-ws", "w" * 65])
        | st.text(max_size=70).filter(lambda text: not WORKSPACE_ID.fullmatch(text))
        | INT64
        | st.none()
    )


def _unknown_type(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["type"] = draw(
        st.sampled_from(["HEARTBEAT", "disk_full", ""])
        | st.text(max_size=20).filter(lambda text: text not in TYPES)
        | INT64
        | st.none()
    )


def _bad_time(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    # Not numbers: an epoch number is a valid (UTC) event time.
    naive = context.minute.replace(tzinfo=None).isoformat()
    signal["occurred_at"] = draw(
        st.sampled_from(["", "soon", naive, "2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z"])
        | st.booleans()
        | st.none()
        | st.lists(st.integers(0, 9), max_size=2)
    )


def _future_time(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    # Well past the limit: the record is written a little after the example started. Types the
    # seed policy holds until due have a limit of their own.
    kind = signal.get("type")
    limit = HELD_LIMITS.get(kind, MAX_FUTURE_SECONDS) if isinstance(kind, str) else 0
    limit = max(limit, MAX_FUTURE_SECONDS)
    ahead = draw(st.integers(limit + 300, 10**8))
    signal["occurred_at"] = _event_time(draw, context.now + timedelta(seconds=ahead))


def _bad_id(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["id"] = draw(
        st.sampled_from(["", "two words", "-dash-first", "i" * 129]) | INT64 | st.none()
    )


def _bad_source(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["source"] = draw(BAD_NAME)


def _bad_schema_version(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["schema_version"] = draw(INT64.filter(lambda v: v != 1) | st.sampled_from(["1", None]))


def _unknown_field(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    name = draw(st.text(max_size=12).filter(lambda text: text not in ENVELOPE))
    signal[name] = draw(json_values)


def _attributes_not_object(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["attributes"] = draw(
        st.none() | INT64 | st.text(max_size=5) | st.lists(json_scalars, max_size=3)
    )


def _unknown_attribute(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    known = ATTRIBUTES[signal["type"]]
    name = draw(st.text(max_size=12).filter(lambda text: text not in known))
    signal["attributes"] = {**signal.get("attributes", {}), name: draw(json_scalars)}


def _bad_attribute(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    known = ATTRIBUTES[signal["type"]]
    name = draw(st.sampled_from(sorted(known)))
    signal["attributes"] = {**signal.get("attributes", {}), name: draw(known[name][1])}


def _gauge_without_reading(draw: st.DrawFn, signal: dict[str, Any], context: Context) -> None:
    signal["type"] = draw(st.sampled_from(sorted(REQUIRED_ATTRIBUTE)))
    signal.pop("attributes", None)
    if draw(st.booleans()):
        signal["attributes"] = {}


MUTATIONS: list[Callable[[st.DrawFn, dict[str, Any], Context], None]] = [
    _drop_field,
    _bad_workspace,
    _unknown_type,
    _bad_time,
    _future_time,
    _bad_id,
    _bad_source,
    _bad_schema_version,
    _unknown_field,
    _attributes_not_object,
    _unknown_attribute,
    _bad_attribute,
    _gauge_without_reading,
]


@st.composite
def invalid_signals(draw: st.DrawFn, context: Context) -> dict[str, Any]:
    """A valid signal with one mutation that the issue says must get it dead-lettered."""
    signal = draw(valid_signals(context))
    draw(st.sampled_from(MUTATIONS))(draw, signal, context)
    return signal


def _built(signal: dict[str, Any], accept: bool, dead_letter: bytes) -> Input:
    return Input(accept, dead_letter, signal["workspace_id"] if accept else None)


def _arbitrary(value: bytes | None) -> tuple[bool, tuple[Input, ...]]:
    """A record's inputs by the issue's counting rule: a non-empty JSON array's items, else 1."""
    try:
        parsed = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, list) and parsed:
        return True, tuple(Input(None, None) for _ in parsed)
    return False, (Input(None, value if value is not None else b""),)


@st.composite
def records(draw: st.DrawFn, context: Context) -> Record:
    """One record of any of the kinds the issue lists, with its routing."""
    kind = draw(st.sampled_from(["bytes", "json", "invalid", "valid", "batch"]))
    if kind == "bytes":
        value = draw(st.binary(max_size=40) | st.none())
        batch, inputs = _arbitrary(value)
    elif kind == "json":
        value = orjson.dumps(draw(json_values))
        batch, inputs = _arbitrary(value)
    elif kind in ("invalid", "valid"):
        accept = kind == "valid"
        signal = draw(valid_signals(context) if accept else invalid_signals(context))
        value = orjson.dumps(signal)
        batch, inputs = False, (_built(signal, accept, value),)
    else:
        items = draw(
            st.lists(
                st.tuples(valid_signals(context), st.just(True))
                | st.tuples(invalid_signals(context), st.just(False)),
                min_size=1,
                max_size=5,
            )
        )
        value = orjson.dumps([signal for signal, _ in items])
        batch = True
        inputs = tuple(_built(s, accept, orjson.dumps(s)) for s, accept in items)
    # The owner's key, another key, no key, or an explicit partition: not always the owner's.
    key = draw(
        st.none()
        | st.sampled_from(context.workspaces).map(str.encode)
        | st.binary(min_size=1, max_size=8)
    )
    if value is None and key is None:
        key = b"no-value"  # Kafka takes a record without a value only with a key
    partition = draw(st.none() | st.integers(0, context.partitions - 1))
    return Record(value, key, partition, batch, inputs)


# --- one worker, watched ----------------------------------------------------------------------


@dataclass
class Outcome:
    """What the worker made of one example's records so far."""

    accepted: dict[str, int] = field(default_factory=dict)
    dead: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    rejected: list[LedgerEntry] = field(default_factory=list)

    @property
    def count_out(self) -> int:
        """Inputs that ended: accepted by a workspace of the example, or dead-lettered."""
        return sum(self.accepted.values()) + len(self.dead)

    def snapshot(self) -> tuple[Any, ...]:
        """What changes while the worker is still busy with the example."""
        return tuple(sorted(self.accepted.items())), len(self.dead), len(self.rejected)


class Harness:
    """The worker under test, a producer, and consumers of its DLQ and ledger topics."""

    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        # Kafka clients bind to the running event loop: build a Harness with `open`.
        assert settings.kafka_bootstrap_servers
        bootstrap = settings.kafka_bootstrap_servers
        self.settings = settings
        self.worker = worker
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        self.dlq = _consumer(bootstrap)
        self.ledger = _consumer(bootstrap)

    @classmethod
    async def open(cls, settings: Settings, worker: WorkerProcess) -> Harness:
        """A started harness, its clients bound to the running event loop."""
        harness = cls(settings, worker)
        await harness.producer.start()
        # Read from offset 0 and never seek: whatever arrives between examples is seen too.
        for consumer, name in ((harness.dlq, "signals.dlq"), (harness.ledger, "ledger")):
            await consumer.start()
            topic = settings.topic(name)
            consumer.assign([TopicPartition(topic, p) for p in range(settings.partitions)])
        return harness

    async def stop(self) -> None:
        """Stop the clients (the worker is the fixture's to stop)."""
        await self.producer.stop()
        await self.dlq.stop()
        await self.ledger.stop()

    async def publish(self, records: list[Record]) -> list[tuple[int, int]]:
        """Send the records; returns where each was written (partition, offset)."""
        topic = self.settings.topic("signals")
        sent = [
            await self.producer.send(topic, r.value, key=r.key, partition=r.partition)
            for r in records
        ]
        return [((meta := await f).partition, meta.offset) for f in sent]

    async def observe(self, workspaces: tuple[str, ...], count_in: int) -> Outcome:
        """Poll until count out == count in and nothing moves, or nothing moves for too long."""
        outcome = Outcome()
        deadline = time.monotonic() + WAIT_SECONDS
        previous: tuple[Any, ...] | None = None
        changed = time.monotonic()
        while True:
            if not self.worker.alive:
                raise AssertionError(f"the worker exited\n{self.worker.log_tail()}")
            dead, entries = await asyncio.gather(_drain(self.dlq), _drain(self.ledger))
            outcome.dead.extend(dead)
            for record in entries:
                entry = parse_entry(record.value)
                if entry.kind is LedgerKind.SIGNAL_REJECTED:
                    outcome.rejected.append(entry)
            outcome.accepted = {ws: await self.accepted(ws) for ws in workspaces}
            now = time.monotonic()
            if outcome.snapshot() != previous:
                previous, changed = outcome.snapshot(), now
            settled = outcome.count_out == count_in and len(outcome.rejected) >= len(outcome.dead)
            if (settled and now - changed >= SETTLE_SECONDS) or (
                now - changed >= STALL_SECONDS or now >= deadline
            ):
                return outcome
            await asyncio.sleep(0.1)

    async def accepted(self, workspace_id: str) -> int:
        """Signals the workspace's windows took: counted in the hour, duplicates and late."""
        status, body = await get_workspace(self.worker, workspace_id)
        if status == 404:
            return 0
        assert status == 200, (workspace_id, status, body)
        counts = (body["hour"] or {}).get("counts", {})
        return int(sum(counts.values()) + body["duplicates"] + body["late"])


def _consumer(bootstrap: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


async def _drain(consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
    batches = await consumer.getmany(timeout_ms=100)
    return [record for batch in batches.values() for record in batch]


def _source(record: ConsumerRecord[bytes, bytes]) -> tuple[str, Position, str]:
    """A dead letter's source topic, position and reason, from its headers."""
    headers = {name: value.decode() for name, value in record.headers}
    index = headers.get("autopilot.source.index")
    position = (
        int(headers["autopilot.source.partition"]),
        int(headers["autopilot.source.offset"]),
        None if index is None else int(index),
    )
    return headers["autopilot.source.topic"], position, headers.get("autopilot.reason", "")


def check_example(
    settings: Settings,
    context: Context,
    records: list[Record],
    written: list[tuple[int, int]],
    outcome: Outcome,
    worker: WorkerProcess,
) -> None:
    """Every input ended exactly once, as built; count in == count out; the worker is up."""
    inputs: dict[Position, Input] = {}
    for record, (partition, offset) in zip(records, written, strict=True):
        for index, built in enumerate(record.inputs):
            inputs[(partition, offset, index if record.batch else None)] = built
    count_in = len(inputs)

    def fail(problem: str) -> str:
        return (
            f"{problem}\ncount in {count_in}, count out {outcome.count_out} "
            f"(accepted {outcome.accepted}, dead-lettered {len(outcome.dead)}, "
            f"signal.rejected {len(outcome.rejected)})\nwritten at {written}\n"
            f"worker log:\n{worker.log_tail()}"
        )

    assert worker.alive, fail("the worker exited")

    # Each dead letter names the signals topic, a position of this example's input and a reason,
    # and carries the refused bytes.
    dead: dict[Position, str] = {}
    for record in outcome.dead:
        topic, position, reason = _source(record)
        assert topic == settings.topic("signals"), fail(f"dead letter from {topic}")
        assert position in inputs, fail(f"dead letter for no input of this example: {position}")
        assert position not in dead, fail(f"input dead-lettered twice: {position}")
        assert reason, fail(f"dead letter without a reason: {position}")
        expected_bytes = inputs[position].dead_letter
        if expected_bytes is not None:
            assert record.value == expected_bytes, fail(
                f"dead letter at {position} carries {record.value!r}, sent {expected_bytes!r}"
            )
        dead[position] = reason

    # Each dead letter has its signal.rejected entry, at the same position, with the same reason.
    rejected: dict[Position, str] = {}
    for entry in outcome.rejected:
        source = entry.payload.source
        assert source.topic == settings.topic("signals"), fail(f"rejected from {source}")
        position = (source.partition, source.offset, source.index)
        assert position not in rejected, fail(f"signal.rejected twice for {position}")
        rejected[position] = entry.payload.reason
    assert rejected == dead, fail(
        f"signal.rejected entries {sorted(rejected.items(), key=repr)} "
        f"do not match the dead letters {sorted(dead.items(), key=repr)}"
    )

    # What the test built valid is accepted, in its own workspace; what it broke is refused.
    for position, built in inputs.items():
        if built.accept is False:
            assert position in dead, fail(f"invalid input at {position} was not dead-lettered")
        if built.accept is True:
            assert position not in dead, fail(
                f"valid input at {position} was dead-lettered: {dead[position]}"
            )
    expected = Counter(built.workspace_id for built in inputs.values() if built.accept)
    assert outcome.accepted == {ws: expected[ws] for ws in context.workspaces}, fail(
        "accepted signals per workspace differ from the valid inputs sent to each"
    )
    # The conservation law: every input ends either accepted or dead-lettered.
    assert count_in == outcome.count_out, fail("count in != count out")


# --- the test ---------------------------------------------------------------------------------


async def test_every_input_ends_accepted_or_dead_lettered_and_the_worker_stays_up(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given one running worker that has taken its partitions (a first signal is counted)
    worker = start_worker()
    await wait_until_answers(worker)
    await _warm_up(settings, worker)
    # When Hypothesis publishes its examples, and Then each one ends as check_example says.
    # Hypothesis drives a synchronous test: it runs in a thread with an event loop of its own.
    await asyncio.to_thread(_run_examples, settings, worker)


async def _warm_up(settings: Settings, worker: WorkerProcess) -> None:
    assert settings.kafka_bootstrap_servers
    signal = {
        "workspace_id": "warm-up",
        "type": "heartbeat",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("signals"), orjson.dumps(signal))
    finally:
        await producer.stop()
    await wait_for_workspace(worker, "warm-up", lambda body: body["hour"] is not None, WAIT_SECONDS)


def _run_examples(settings: Settings, worker: WorkerProcess) -> None:
    loop = asyncio.new_event_loop()
    try:
        harness = loop.run_until_complete(Harness.open(settings, worker))
        try:
            _property(settings, worker, loop, harness)()
        finally:
            loop.run_until_complete(harness.stop())
    finally:
        loop.close()


def _property(
    settings: Settings, worker: WorkerProcess, loop: asyncio.AbstractEventLoop, harness: Harness
) -> Callable[[], None]:
    examples = itertools.count()

    # Explaining a failure replays it many times over; shrinking alone gives the reproducer.
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def every_input_ends_accepted_or_dead_lettered(data: st.DataObject) -> None:
        context = Context.new(next(examples), settings.partitions)
        published = data.draw(st.lists(records(context), min_size=1, max_size=8), "records")
        written = loop.run_until_complete(harness.publish(published))
        count_in = sum(len(record.inputs) for record in published)
        outcome = loop.run_until_complete(harness.observe(context.workspaces, count_in))
        check_example(settings, context, published, written, outcome, worker)

    return every_input_ends_accepted_or_dead_lettered
