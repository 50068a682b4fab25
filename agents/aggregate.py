"""The aggregate agent: signals folded into workspace windows, decided on, decisions sent out.

A thin shell over the pure core: decode (core.codec), fold and decide (core.decide), then
send what the core returned: decisions to the ledger, commands to their priority lane. Bad input
goes to the dead-letter topic and the ledger, never stops the agent. The operator's switches
(the `control` topic) arrive in the same stream, shard by shard.

A signal read on a partition that does not own its workspace (a producer whose partitioner is
not murmur2, such as kcat or confluent-kafka by default) is re-routed: sent on, in one batch per
owning partition, to the partition that owns it, and folded there. Only those records pay.

Delivery: at-least-once with deterministic ids. At a flush, everything sent on behalf of the
held records (decisions, commands, dead letters) is acknowledged by the broker first, then the
states are written, then the records are acked. So a stored state never covers a decision that
is not on the ledger, and a record redelivered after a crash is decided again from the state it
was first decided from: the same decisions with the same ids, which every ledger consumer
de-duplicates (projections/ledger_reader.py). A record redelivered after its state was stored
(Faust had not committed its offset yet) is skipped, read mark by read mark
(tables/read_marks.py): counted once, not once more as a duplicate, and not re-routed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import ConsumerRecord
from pydantic import ValidationError

from agents.boundary import crash_on_unexpected
from agents.dead_letter_writer import DeadLetterWriter
from agents.emit import record_sender, send_command, send_entry
from agents.faust_app import Autopilot
from agents.gap_reader import GapReader
from agents.refetch import current, fetch_again, release
from agents.stream_gaps import StreamGaps
from core.codec import Rejection, decode_signals, describe
from core.decide import command_of, decide_signals, forget_old_slots, initial_quota
from core.ledger_entries import decision_entry, folded_entry, rejection_entry, switch_entry
from core.policy import Decision, Mode, shard_share
from core.rejections import dlq_headers
from core.rules import Policy
from core.windows import SourcePosition
from tables.read_marks import (
    Copy,
    already_folded,
    already_read,
    copy_of,
    initial_mark,
    mark_key,
    next_offset,
    note_folded,
    note_read,
)
from tables.write_behind import SHARD_KEY_PREFIX, WriteBehindStates
from topics.batches import encode_batches
from topics.control import OperatorSwitch, switched
from topics.headers import REROUTED_FROM, REROUTED_PIECE
from topics.shards import Shards
from topics.signals import Signal

# A partition behind its highwater that delivered nothing for this long had records skipped.
STALL_SECONDS = 5.0

logger = logging.getLogger(__name__)


def quota_key(partition: int) -> str:
    """The table key of a shard's slots under the platform cap (never a workspace id)."""
    return f"{SHARD_KEY_PREFIX}quota.{partition}"


def mode_key(partition: int) -> str:
    """The table key of a shard's operator mode (never a workspace id)."""
    return f"{SHARD_KEY_PREFIX}mode.{partition}"


def initial_mode() -> dict[str, Any]:
    """Decisions on, commands live: the mode of a shard no operator has switched."""
    return {"paused": False, "dry_run": False}


@dataclass
class _Held:
    """Events of one partition whose acks wait for the next flush of that partition's state."""

    events: list[Any] = field(default_factory=list)
    sent: list[Awaitable[Any]] = field(default_factory=list)
    since: float = field(default_factory=time.monotonic)


def attach(autopilot: Autopilot, policy: Policy, bootstrap: str) -> WriteBehindStates:
    """Register the aggregate agent on the app; returns the states it keeps, for the read view."""
    settings = autopilot.settings
    config = settings.window_config()
    limits = policy.limits
    table = autopilot.states

    def write_last(key: str, value: bytes) -> Awaitable[Any]:
        # What the table's __setitem__ does (mode's ManagedUserDict: on_key_set sends the
        # changelog record, then the local store is written), keeping the send's future.
        stored = table.send_changelog(table.partition_for_key(key), key, value)
        cast(Any, table).data[key] = value
        return stored

    states = WriteBehindStates(table, settings.state_cache_max_workspaces, write_last)
    shards = Shards(settings.partitions)
    signals_topic = autopilot.signals.get_topic_name()
    control_topic = autopilot.control.get_topic_name()
    held: dict[int, _Held] = {}
    dead_letters = DeadLetterWriter(
        record_sender(autopilot), autopilot.signals_dlq.get_topic_name()
    )
    # Bumped whenever a partition is revoked: a record whose processing began before (it
    # awaited across the rebalance) must not touch the cache, flush or ack any more, or a
    # state cached after the revoke would later stand in for the restored one, and an ack
    # would commit past a state that was never stored. Its next owner decides it again.
    generation: dict[int, int] = {}

    # The last event delivered per partition: a stalled tail's states are written as of it.
    last_event: dict[int, Any] = {}
    # Held while the agent takes a record: a partition is not stalled while the agent is busy.
    taking = asyncio.Lock()
    # Reads the records Faust's stream skipped (agents/gap_reader.py).
    reader = GapReader(bootstrap)

    def _start_over(tps: set[Any]) -> None:
        for tp in tps:
            gaps.forget(tp.topic, tp.partition)
            last_event.pop(tp.partition, None)
            if tp.topic == signals_topic:
                states.forget(tp.partition)
                held.pop(tp.partition, None)
                generation[tp.partition] = generation.get(tp.partition, 0) + 1

    # Faust types signal receivers as sync callables without keyword arguments; async works.
    @autopilot.app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(app: faust.App, revoked: set[Any], **_: Any) -> None:
        # Unacked records of a revoked partition are redelivered to its next owner, which
        # folds them onto the state stored at the last flush.
        _start_over(revoked)

    async def reject(
        rejections: list[Any], source: SourcePosition, key: bytes | None, value: bytes | None
    ) -> list[Any]:
        sent = []
        now = datetime.now(UTC)
        for rejection in rejections:
            entry = rejection_entry(rejection, source, now)
            logger.warning(
                "input rejected",
                extra={
                    "reason": rejection.reason,
                    "workspace_id": entry.workspace_id,
                    "topic": source.topic,
                    "partition": source.partition,
                    "offset": source.offset,
                },
            )
            # A whole record is dead-lettered as it was read (a NULL stays marked as one).
            raw = value if rejection.index is None else rejection.raw
            sent.append(
                await dead_letters.send(key, raw, dlq_headers(rejection, source), source.partition)
            )
            sent.append(await send_entry(autopilot, entry, source.partition))
        return sent

    async def reroute(foreign: dict[int, list[Signal]], source: SourcePosition) -> list[Any]:
        sent = []
        origin = f"{source.topic}/{source.partition}"
        for owner, batch in foreign.items():
            logger.info(
                "signals re-routed to their shard",
                extra={"count": len(batch), "partition": source.partition, "owner": owner},
            )
            # Re-encoding can outgrow the record it came from (derived ids are added), so
            # encode_batches splits, as the client does, rather than let the owner refuse it.
            for piece, value in enumerate(encode_batches(batch)):
                copy = Copy(origin, source.offset, piece)
                sent.append(
                    await autopilot.app.producer.send(
                        signals_topic,
                        None,
                        value,
                        partition=owner,
                        timestamp=None,
                        headers=[
                            (REROUTED_FROM, copy.header()),
                            (REROUTED_PIECE, str(piece).encode()),
                        ],
                    )
                )
        return sent

    def read_before(message: Any, partition: int) -> bool:
        """Whether the state (stored, or cached since) already holds this record: read again
        after a crash or a rebalance, or a re-routed copy of an origin already folded. Else it
        is noted as read, to be stored with the states it is folded into."""
        mark = states.get_value(partition, mark_key(partition), initial_mark)
        if already_read(mark, message.topic, message.offset):
            return True
        note_read(mark, message.topic, message.offset)
        copy = None
        if message.topic == signals_topic and message.headers:
            headers = dict(message.headers)
            copy = copy_of(headers.get(REROUTED_FROM), headers.get(REROUTED_PIECE))
        if copy is not None:
            if already_folded(mark, copy):
                states.put(partition, mark_key(partition), mark)
                return True
            note_folded(mark, copy)
        states.put(partition, mark_key(partition), mark)
        return False

    async def emit(decisions: list[Decision]) -> list[Any]:
        sent = []
        recorded_at = datetime.now(UTC)
        for decision in decisions:
            # The decision is on the ledger before its command can be executed.
            sent.append(await send_entry(autopilot, decision_entry(decision, recorded_at)))
            command = command_of(decision)
            if command is not None:
                sent.append(await send_command(autopilot, command))
        return sent

    async def apply_switch(raw: bytes, source: SourcePosition, key: bytes | None) -> list[Any]:
        try:
            request = OperatorSwitch.model_validate_json(raw)
        except ValidationError as exc:
            rejection = Rejection(reason=f"control record: {describe(exc)}", raw=raw)
            return await reject([rejection], source, key, raw)
        partition = source.partition
        mode = switched(
            states.get_value(partition, mode_key(partition), initial_mode), request.switch
        )
        states.put(partition, mode_key(partition), mode)
        logger.warning(
            "operator switch applied",
            extra={"switch": request.switch.value, "partition": partition, "by": request.by},
        )
        entry = switch_entry(request, partition, mode, datetime.now(UTC))
        return [await send_entry(autopilot, entry, partition)]

    def decide(partition: int, own: list[Signal], source: SourcePosition) -> list[Decision]:
        quota = states.get_value(partition, quota_key(partition), initial_quota)
        switches = states.get_value(partition, mode_key(partition), initial_mode)
        mode = Mode(paused=switches["paused"], dry_run=switches["dry_run"])
        share = shard_share(limits.platform_cap_per_interval, settings.partitions, partition)
        decided = decide_signals(
            lambda workspace_id: states.get(partition, workspace_id),
            own,
            source,
            config,
            policy,
            quota,
            share,
            mode,
        )
        for workspace_id, state in decided.states.items():
            states.put(partition, workspace_id, state)
        # Written at each flush with the states (one table write per flush, not per record).
        forget_old_slots(quota, policy)
        states.put(partition, quota_key(partition), quota)
        return decided.decisions

    async def fold(record: Any, pending: _Held, began: int) -> None:
        """Fold one record (a Faust message, or a record read again after a gap)."""
        partition = record.partition
        source = SourcePosition(record.topic, partition, record.offset)
        if read_before(record, partition):
            return  # acked with the others at the next flush
        if record.topic == control_topic:
            pending.sent.extend(await apply_switch(record.value or b"", source, record.key))
            return
        written_at = _seconds(record)
        decoded = decode_signals(record.value, written_at, settings.signal_max_future_seconds)
        if decoded.rejections:
            pending.sent.extend(await reject(decoded.rejections, source, record.key, record.value))
        own, foreign = _by_owner(decoded.signals, partition, shards)
        if foreign:
            pending.sent.extend(await reroute(foreign, source))
        if own and generation.get(partition, 0) == began:
            pending.sent.extend(await emit(decide(partition, own, source)))
            folded = folded_entry(len(own), source, datetime.now(UTC))
            pending.sent.append(await send_entry(autopilot, folded, partition))

    async def start_of(topic: str, partition: int) -> int:
        """Where a partition's stream should start after an assignment: past what the stored
        state holds, else at the group's commit, else at 0 (nothing read, nothing committed)."""
        mark = states.get_value(partition, mark_key(partition), initial_mark)
        stored = next_offset(mark, topic)
        if stored is not None:
            return stored
        committed = await reader.committed(autopilot.app.conf.id, topic, partition)
        return 0 if committed is None else committed

    gaps = StreamGaps(reader.read, start_of)

    async def take(event: Any) -> None:
        """Fold one delivered record, and any skipped before it; flush when it is time."""
        message = event.message
        partition = message.partition
        last_event[partition] = event
        began = generation.get(partition, 0)
        pending = held.setdefault(partition, _Held())
        expected, skipped = await gaps.skipped_before(message.topic, partition, message.offset)
        if message.offset > expected:
            logger.warning(
                "records skipped by the consumer, read again",
                extra={
                    "topic": message.topic,
                    "partition": partition,
                    "from": expected,
                    "to": message.offset,
                    "records": len(skipped),
                },
            )
        for record in [*skipped, message]:
            if generation.get(partition, 0) == began:
                await fold(record, pending, began)
        if generation.get(partition, 0) != began:
            return  # rebalanced meanwhile: left unacked, decided again by its owner
        pending.events.append(event)
        caught_up = message.offset + 1 >= autopilot.app.consumer.highwater(message.tp)
        if (
            caught_up
            or states.dirty_count(partition) >= settings.state_flush_max_dirty
            or time.monotonic() - pending.since >= settings.state_flush_interval_seconds
        ):
            await flush(partition, pending, began)

    async def flush(partition: int, pending: _Held, began: int) -> None:
        """Store the partition's states, then ack its held records (a current event of the
        partition is needed: table writes go to its store and changelog partition)."""
        # What was sent for these records is on the broker before the states that include
        # them are stored (see the module docstring).
        for sent in pending.sent:
            await sent
        if generation.get(partition, 0) != began:
            return  # see above: nothing of the old generation is stored or acked
        flushed = states.flush(partition)
        # Faust buffers changelog writes and commits offsets without waiting for them: a
        # worker killed in between leaves offsets committed past a state its successor never
        # restores. So the flush's last changelog write, and with it every one before it, is
        # on the broker before the records are acked (found by the rebalance kill test).
        try:
            # The producer's flush sends at once rather than after its linger; it may return
            # early (tables/write_behind.py), the stored write's future does not.
            await autopilot.app.producer.flush()
            if flushed.stored is not None:
                await flushed.stored
        except asyncio.CancelledError:
            # The worker is stopping: Faust flushes its producer as it stops, so these records
            # count as done (not redelivered to the next owner).
            for held_event in pending.events:
                held_event.ack()
            raise
        for held_event in pending.events:
            held_event.ack()
        held[partition] = _Held()

    async def fold_tail(event: Any, topic: str, partition: int, start: int, end: int) -> None:
        """Read a stalled partition's records from `start` to `end` and fold them, as of the
        partition's last delivered event."""
        began = generation.get(partition, 0)
        records = await reader.read(topic, partition, start, end)
        if generation.get(partition, 0) != began:
            return  # revoked meanwhile: its next owner reads it
        pending = held.setdefault(partition, _Held())
        with current(event):
            for record in records:
                if generation.get(partition, 0) == began:
                    await fold(record, pending, began)
            gaps.delivered(topic, partition, end)
            await flush(partition, pending, began)

    @autopilot.app.timer(STALL_SECONDS)  # type: ignore[untyped-decorator]  # Faust is untyped
    async def _stalled() -> None:
        # Skipped records at a partition's end show in no later record: a partition whose
        # highwater is past what its stream delivered, and that delivered nothing for a while
        # (the agent not busy), has them read here, and is fetched again.
        if taking.locked():
            return
        for tp in autopilot.app.consumer.assignment():
            if tp.topic not in (signals_topic, control_topic):
                continue
            highwater = autopilot.app.consumer.highwater(tp)
            start = gaps.stalled(tp.topic, tp.partition, highwater, STALL_SECONDS)
            if start is None:
                continue
            logger.warning(
                "records skipped by the consumer at a partition's end, read again",
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "from": start,
                    "to": highwater,
                },
            )
            release(autopilot.app, tp.topic, tp.partition)  # the agent is idle: see release
            await fetch_again(autopilot.app, tp.topic, tp.partition, start)
            event = last_event.get(tp.partition)
            if event is not None:
                async with taking:
                    await fold_tail(event, tp.topic, tp.partition, start, highwater)

    @autopilot.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: faust.App, **_: Any) -> None:
        await reader.stop()

    @autopilot.app.agent(autopilot.decide_input, name="aggregate")
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("aggregate"):
            # noack lives on Stream, not on the StreamT interface Faust types agents with.
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                async with taking:
                    await take(event)

    return states


def _by_owner(
    signals: list[Signal], partition: int, shards: Shards
) -> tuple[list[Signal], dict[int, list[Signal]]]:
    """This partition's signals in order, and the others' per owning partition."""
    own: list[Signal] = []
    foreign: dict[int, list[Signal]] = {}
    for signal in signals:
        owner = shards.owner(signal.workspace_id)
        if owner == partition:
            own.append(signal)
        else:
            foreign.setdefault(owner, []).append(signal)
    return own, foreign


def _seconds(record: Any) -> float | None:
    """When the record was written, in seconds: Faust's messages say so in seconds, the
    records read again (aiokafka's) in milliseconds."""
    timestamp = record.timestamp
    if not timestamp:
        return None
    return timestamp / 1000.0 if isinstance(record, ConsumerRecord) else float(timestamp)
