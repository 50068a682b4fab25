"""The signal stage on the engine: signals folded and decided on, per shard, in one transaction.

The pure core (decode, fold and decide) runs once per batch. Its outputs: decisions,
operator switches and rejections on the ledger, sealed onto their chains; commands on their
priority lanes; refused input on `signals.dlq`; records of another shard's
workspaces re-routed to their shard. Everything one batch of a shard produces, its state (the
workspaces it changed, the shard's quota, mode and chain heads) and its input offsets commit
together, so a `read_committed` reader sees each decision once, and a chain's head in the
state is always its last committed entry. No read marks: a record is read again only after
its batch was aborted, and then nothing of its first reading is visible. One `signals.folded`
entry per batch (not per record) counts what the batch folded.

The stage writes its shard's decision chains (one per workspace) and the shard's own chain; the
executors write the actions' chains (core/chain.py). When a shard is first run by the stage on
a ledger written before (by an earlier version), the heads of its chains are read from the
ledger once into the state; from then on the state holds them.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pydantic import ValidationError

from core.chain import chain_of_entry, heads_of, seal
from core.codec import DEFAULT_MAX_FUTURE_SECONDS, Rejection, decode_signals, describe
from core.decide import (
    ShardQuota,
    Trigger,
    command_of,
    decide_positioned,
    decide_trigger,
    forget_old_slots,
    initial_quota,
)
from core.ledger_entries import (
    decision_entry,
    folded_entry,
    rejection_entry,
    sweep_entry,
    switch_entry,
)
from core.policy import Decision, Mode, shard_share
from core.rejections import dead_letter_value, dlq_headers
from core.rules import Policy
from core.schedules import SWEEP_PREFIX, TIMER_PREFIX, TIMERS
from core.sweeps import sweep
from core.windows import SourcePosition, WindowConfig, WorkspaceState, initialize, upcast
from engine.broker_retry import retrying
from engine.partition_store import PartitionStore
from engine.playbook_runs import PlaybookRuns
from engine.shard_timers import DueRun, DueSignal, ShardTimers
from engine.transactions import Outgoing
from topics.approvals import ParkingRequest
from topics.batches import encode_batches
from topics.catalog import (
    APPROVALS,
    CONTROL,
    LANES,
    LEDGER,
    SIGNAL_STAGE,
    SIGNALS,
    SIGNALS_DLQ,
    lane_topic,
)
from topics.commands import Command, Priority
from topics.control import CONTROL_RECORD, OperatorSwitch, StepOutcome, Tick, switched
from topics.headers import REROUTED_FROM, REROUTED_PIECE
from topics.ids import stable_id
from topics.kafka_security import PLAINTEXT, KafkaSecurity
from topics.ledger import LedgerEntry, LedgerKind
from topics.shards import Shards
from topics.signals import Signal

# The shard's own values, beside its workspaces' states (no workspace id starts with NUL).
_QUOTA = b"\x00quota"
_MODE = b"\x00mode"
_HEAD = b"\x00chain:"
# Set once the heads of a ledger written before the stage ran the shard were read into state.
_HEADS_READ = b"\x00chain-heads-read"
# Chains of the ledger the stage does not write (core/chain.py).
_OTHER_WRITERS = ("actions:", "worker:")
# Workspace ids start with a letter or digit: their keys sort from "0" to "z".
_WORKSPACES = (b"0", b"{")
# Reading a ledger partition's existing chains longer than this fails the assignment, loudly.
HEADS_TIMEOUT_SECONDS = 300.0


# A shard no operator has switched: deciding, commands live.
_INITIAL_MODE = {"paused": False, "dry_run": False}


@dataclass(frozen=True)
class SignalTopics:
    """The topics the stage reads and writes (full names, the deployment's prefix included)."""

    signals: str
    control: str
    signals_dlq: str
    ledger: str
    lanes: Mapping[Priority, str]
    changelog: str
    # Where a playbook's failed run asks its shard's executor to park the workspace.
    approvals: str

    @classmethod
    def named(cls, topic: Callable[[str], str], changelog: str) -> SignalTopics:
        """The topics of a deployment, `topic` giving each name its full (prefixed) name."""
        return cls(
            signals=topic(SIGNALS),
            control=topic(CONTROL),
            signals_dlq=topic(SIGNALS_DLQ),
            ledger=topic(LEDGER),
            lanes={Priority(lane): topic(lane_topic(lane)) for lane in LANES},
            changelog=changelog,
            approvals=topic(APPROVALS),
        )


class SignalStage:
    """Decode, fold, decide and record one shard's signals (an engine Stage)."""

    name = SIGNAL_STAGE

    def __init__(
        self,
        topics: SignalTopics,
        partitions: int,
        policy: Policy,
        windows: WindowConfig,
        *,
        ledger_key: bytes | None = None,
        max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS,
        bootstrap: str | None = None,
        security: KafkaSecurity = PLAINTEXT,
    ) -> None:
        self.topics = topics
        self.inputs: tuple[str, ...] = (topics.signals, topics.control)
        self.changelog = topics.changelog
        self.partitions = partitions
        self.policy = policy
        self.windows = windows
        self.ledger_key = ledger_key
        self.max_future_seconds = max_future_seconds
        # Where to read a ledger written before the stage ran (None: the ledger starts here).
        self.bootstrap = bootstrap
        self.security = security
        self._shards = Shards(partitions)
        # Signal type → how far ahead of its record a held type's event time may be (HTTP
        # ingest reads it too, to judge as the stage does).
        self.held = {held: policy.timing.max_hold_seconds for held in policy.held_types}
        self.schedules = {schedule.id: schedule for schedule in policy.schedules}
        # What committed batches did, for metrics: ("folded",), ("rejected", kind) and
        # ("decision", rule id, verdict) → count. A batch counts once it is committed, so an
        # aborted one read again is not counted twice.
        self.totals: Counter[tuple[str, ...]] = Counter()
        self._pending: dict[int, Counter[tuple[str, ...]]] = {}

    def process(
        self, partition: int, records: Mapping[str, list[ConsumerRecord]], store: PartitionStore
    ) -> list[Outgoing]:
        """One shard's batch: operator switches and ticks first, then its signals in offset
        order."""
        batch = _Batch(self, partition, store)
        for record in records.get(self.topics.control, []):
            batch.control(record)
        for record in records.get(self.topics.signals, []):
            batch.signals(record)
        return batch.finish()

    def discard(self, partition: int) -> None:
        """The partition's uncounted batches are gone (their state changes are the store's)."""
        self._pending.pop(partition, None)

    def committed(self, partition: int) -> None:
        """Count what the partition's committed batches did."""
        pending = self._pending.pop(partition, None)
        if pending:
            self.totals.update(pending)

    async def prepare(self, partition: int, store: PartitionStore) -> None:
        """The first time the shard runs here, continue the chains already on its ledger."""
        if self.bootstrap is None or store.get(_HEADS_READ) is not None:
            return
        heads = await retrying(
            lambda: _ledger_heads(
                self.bootstrap or "", self.topics.ledger, partition, self.security
            ),
            "reading a ledger partition's chain heads",
        )
        for chain, head in heads.items():
            if not chain.startswith(_OTHER_WRITERS):
                store.put(_HEAD + chain.encode(), head.encode())
        store.put(_HEADS_READ, b"1")

    @staticmethod
    def workspace_state(store: PartitionStore, workspace_id: str) -> WorkspaceState | None:
        """A workspace's committed state in its shard's store (None: no signal seen)."""
        raw = store.stored(workspace_id.encode())
        return None if raw is None else upcast(orjson.loads(raw))

    @staticmethod
    def mode(store: PartitionStore) -> dict[str, Any]:
        """The shard's committed operator mode."""
        raw = store.stored(_MODE)
        return dict(_INITIAL_MODE) if raw is None else dict(orjson.loads(raw))


class _Batch:
    """What one batch of one shard reads and changes; written back to the store at its end."""

    def __init__(self, stage: SignalStage, partition: int, store: PartitionStore) -> None:
        self.stage = stage
        self.partition = partition
        self.store = store
        self.out: list[Outgoing] = []
        self.states: dict[str, WorkspaceState] = {}
        self.heads: dict[str, str | None] = {}
        self.quota: ShardQuota = self._load(_QUOTA) or initial_quota()
        self.mode: dict[str, Any] = self._load(_MODE) or dict(_INITIAL_MODE)
        self.share = shard_share(
            stage.policy.limits.platform_cap_per_interval, stage.partitions, partition
        )
        self.now = datetime.now(UTC)
        # This shard's signals of the batch, each with the record it came from.
        self.own: list[tuple[Signal, SourcePosition]] = []
        self.tally = stage._pending.setdefault(partition, Counter())
        self.timers = ShardTimers(store)
        self.runs = PlaybookRuns(
            stage.policy,
            self._state_of,
            self._record,
            self._issue,
            self._park,
            self.timers,
            self.tally,
            self.now,
        )

    def control(self, record: ConsumerRecord) -> None:
        try:
            request = CONTROL_RECORD.validate_json(record.value or b"")
        except ValidationError as exc:
            self._reject(Rejection(f"control record: {describe(exc)}", record.value or b""), record)
            return
        if isinstance(request, Tick):
            if request.shard != self.partition:
                reason = f"invalid: a tick for shard {request.shard} on control partition"
                self._reject(Rejection(f"{reason} {self.partition}", record.value or b""), record)
                return
            self.tick(request, SourcePosition(record.topic, self.partition, record.offset))
        elif isinstance(request, StepOutcome):
            owner = self.stage._shards.owner(request.workspace_id)
            if owner != self.partition:
                reason = f"invalid: a step outcome for shard {owner} on control partition"
                self._reject(Rejection(f"{reason} {self.partition}", record.value or b""), record)
                return
            self.runs.outcome(request)
        else:
            self.switch(request)

    def switch(self, request: OperatorSwitch) -> None:
        self.mode = switched(self.mode, request.switch)
        self.store.put(_MODE, orjson.dumps(self.mode))
        self._record(switch_entry(request, self.partition, self.mode, self.now))

    def signals(self, record: ConsumerRecord) -> None:
        source = SourcePosition(record.topic, self.partition, record.offset)
        written_at = record.timestamp / 1000.0 if record.timestamp else None
        decoded = decode_signals(
            record.value, written_at, self.stage.max_future_seconds, self.stage.held
        )
        for rejection in decoded.rejections:
            self._reject(rejection, record)
        foreign: dict[int, list[Signal]] = {}
        timed = self.stage.policy.timed_types
        awaited = self.stage.policy.awaited_types
        for signal in decoded.signals:
            owner = self.stage._shards.owner(signal.workspace_id)
            if owner == self.partition:
                if signal.type in timed and self._held(signal, source, written_at):
                    continue
                if signal.type in awaited:
                    self.runs.signal(signal)
                self.own.append((signal, source))
            else:
                foreign.setdefault(owner, []).append(signal)
        for owner, batch in foreign.items():
            origin = f"{source.topic}/{source.partition}/{source.offset}".encode()
            # Re-encoding can outgrow the record it came from (derived ids are added), so
            # encode_batches splits, as the client does, rather than let the owner refuse it.
            for piece, value in enumerate(encode_batches(batch)):
                headers = ((REROUTED_FROM, origin), (REROUTED_PIECE, str(piece).encode()))
                self.out.append(Outgoing(self.stage.topics.signals, owner, None, value, headers))

    def _held(self, signal: Signal, source: SourcePosition, written_at: float | None) -> bool:
        """Hold a signal written before it is due (True), or arm the timers it arms."""
        policy = self.stage.policy
        moment = signal.occurred_at.timestamp()
        # Due on the whole second at or after its moment (ticks are on whole seconds).
        at = math.ceil(moment)
        if signal.type in policy.held_types and written_at is not None and moment > written_at:
            # Folded when a tick reaches its time.
            self.timers.hold(signal, source, at)
            self.tally[("held",)] += 1
            return True
        for timer in policy.timers_for[signal.type]:
            due = at + timer.after_seconds
            # A signal already that old when written says nothing of now (a backfill).
            if timer.arms(signal.attributes) and (written_at is None or due > written_at):
                state = self._state_of(signal.workspace_id)
                self.timers.arm(state, signal.workspace_id, timer.id, due)
        return False

    def decide(self) -> None:
        """Fold and decide the batch's signals in one call of the core, in their order."""
        if not self.own:
            return
        stage = self.stage
        decided = decide_positioned(
            self._state_of,
            self.own,
            stage.windows,
            stage.policy,
            self.quota,
            self.share,
            self._mode(),
        )
        self.states.update(decided.states)
        self._emit(decided.decisions)

    def tick(self, tick: Tick, source: SourcePosition) -> None:
        """A schedule's period (or an operator's run): due timers and held signals, or a
        sweep; a copy of a tick already acted on does nothing."""
        due = int(tick.due_at.timestamp())
        first = (
            self.timers.take_request(tick.tick_id)
            if tick.requested_by is not None
            else self.timers.take_tick(tick.schedule, due)
        )
        if not first:
            return
        if tick.schedule == TIMERS:
            self._due(due, source)
            return
        schedule = self.stage.schedules.get(tick.schedule)
        if schedule is None:
            # The policy that wrote it has no such schedule any more.
            self.tally["tick_unknown", tick.schedule] += 1
            return
        trigger = Trigger(SWEEP_PREFIX + schedule.id, tick.tick_id, due, source)
        swept = sweep(
            self._workspaces(),
            schedule,
            trigger,
            self.stage.policy,
            self.quota,
            self.stage.partitions,
            self._mode(),
        )
        self.states.update(swept.changed)
        self._emit(swept.decisions)
        self.tally["sweep", schedule.id] += 1
        self._record(sweep_entry(swept.run, tick.requested_by, self.now))

    def _due(self, at: int, source: SourcePosition) -> None:
        """Fire the timers due by `at`, and queue the held signals due by then."""
        policy = self.stage.policy
        for item in self.timers.due(at, self._state_of):
            if isinstance(item, DueSignal):
                self.own.append((item.signal, item.source))
                continue
            if isinstance(item, DueRun):
                self.runs.due(item)
                continue
            trigger_type = TIMER_PREFIX + item.timer
            if trigger_type not in policy.rules_for:
                self.tally["timer_unknown", item.timer] += 1
                continue
            trigger = Trigger(
                trigger_type,
                stable_id("timer", item.timer, item.workspace_id, item.due),
                item.due,
                source,
            )
            state = self._state_of(item.workspace_id)
            self._emit(
                decide_trigger(
                    state,
                    item.workspace_id,
                    trigger,
                    policy,
                    self.quota,
                    self.share,
                    self._mode(),
                )
            )

    def _emit(self, decisions: list[Decision]) -> None:
        """Each decision on the ledger, in the same transaction as its command (a playbook's
        first step's, the run started)."""
        stage = self.stage
        for decision in decisions:
            self.tally["decision", decision.rule_id, decision.kind.value] += 1
            self._record(decision_entry(decision, self.now))
            command = command_of(decision)
            if command is None:
                continue
            playbook = stage.policy.playbook_of.get(decision.rule_id)
            if playbook is not None:
                command = self.runs.start(playbook, decision, command)
            self._issue(command)

    def _issue(self, command: Command) -> None:
        """A command on its lane, on this shard."""
        self.out.append(
            Outgoing(
                self.stage.topics.lanes[command.priority],
                self.partition,
                command.workspace_id.encode(),
                command.model_dump_json().encode(),
            )
        )

    def _park(self, request: ParkingRequest) -> None:
        """A parking request for the shard's executor, in this batch's transaction."""
        self.out.append(
            Outgoing(
                self.stage.topics.approvals,
                self.partition,
                request.workspace_id.encode(),
                request.model_dump_json().encode(),
            )
        )

    def _mode(self) -> Mode:
        return Mode(paused=self.mode["paused"], dry_run=self.mode["dry_run"])

    def _workspaces(self) -> Iterator[tuple[str, WorkspaceState]]:
        """Every workspace of the shard with its state as of the batch so far."""
        for key, raw in self.store.scan(*_WORKSPACES):
            workspace_id = key.decode()
            state = self.states.get(workspace_id)
            yield workspace_id, state if state is not None else upcast(orjson.loads(raw))

    def finish(self) -> list[Outgoing]:
        """The batch's records; its state changes are staged in the store."""
        self.decide()
        if self.own:
            self.tally[("folded",)] += len(self.own)
            # One per batch, named by its last record: batches never overlap (one that is
            # read again was aborted, and its entry with it).
            last = self.own[-1][1]
            self._record(folded_entry(len(self.own), last, self.now))
        forget_old_slots(self.quota, self.stage.policy)
        self.store.put(_QUOTA, orjson.dumps(self.quota))
        for workspace_id, state in self.states.items():
            self.store.put(workspace_id.encode(), orjson.dumps(state))
        for chain, head in self.heads.items():
            if head is not None:
                self.store.put(_HEAD + chain.encode(), head.encode())
        return self.out

    def _state_of(self, workspace_id: str) -> WorkspaceState:
        state = self.states.get(workspace_id)
        if state is None:
            raw = self.store.get(workspace_id.encode())
            state = initialize() if raw is None else upcast(orjson.loads(raw))
            self.states[workspace_id] = state
        return state

    def _reject(self, rejection: Rejection, record: ConsumerRecord) -> None:
        self.tally["rejected", rejection.kind] += 1
        source = SourcePosition(record.topic, self.partition, record.offset)
        # A whole record is dead-lettered as it was read (a NULL stays marked as one).
        raw = record.value if rejection.index is None else rejection.raw
        value, kept = dead_letter_value(raw)
        self.out.append(
            Outgoing(
                self.stage.topics.signals_dlq,
                self.partition,
                record.key,
                value,
                (*dlq_headers(rejection, source), *kept),
            )
        )
        self._record(rejection_entry(rejection, source, self.now))

    def _record(self, entry: LedgerEntry) -> None:
        """Seal the entry onto its chain's head and queue it on the ledger."""
        workspace_id = entry.workspace_id
        # A workspace's entries go to its shard's partition, except rejected input: on this
        # shard's, where its chain is (whichever shard the workspace it names is on).
        partition = (
            self.partition
            if workspace_id is None or entry.kind is LedgerKind.SIGNAL_REJECTED
            else self.stage._shards.owner(workspace_id)
        )
        chain = chain_of_entry(entry, partition)
        if chain not in self.heads:
            raw = self.store.get(_HEAD + chain.encode())
            self.heads[chain] = None if raw is None else raw.decode()
        record, sealed = seal(entry, self.heads[chain], self.stage.ledger_key)
        self.heads[chain] = sealed
        key = workspace_id.encode() if workspace_id else None
        self.out.append(Outgoing(self.stage.topics.ledger, partition, key, record))

    def _load(self, key: bytes) -> Any:
        raw = self.store.get(key)
        return None if raw is None else orjson.loads(raw)


async def _ledger_heads(
    bootstrap: str, ledger: str, partition: int, security: KafkaSecurity
) -> dict[str, str]:
    """The head of every chain on one ledger partition, read to its committed end."""
    tp = TopicPartition(ledger, partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security.client_options(),
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start)
        values: list[bytes] = []
        async with asyncio.timeout(HEADS_TIMEOUT_SECONDS):
            while await consumer.position(tp) < end:
                got = await consumer.getmany(tp, timeout_ms=500, max_records=50_000)
                values.extend(r.value for r in got.get(tp, []) if r.value is not None)
    finally:
        await consumer.stop()
    return heads_of(values, partition)
