"""The execute agents: commands in from the priority lanes and the retry topic, verdicts in from
the approvals topic; the executor (agents/executor.py) carries them out.

Lanes are served critical first (agents/lanes.py). Each command runs in its own task, under its
workspace's lock, so a workspace that is busy or waiting (for a lease, an approval, a slow
provider) does not hold up the other workspaces of its shard. A command with a `not_before` in
the future (deferred over the platform cap, or a retry after its backoff) is set aside until
then while its topic goes on; its record is acked only once it ran, so the committed offset
stays behind it and a crash redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from pydantic import ValidationError

from agents.boundary import crash_on_unexpected
from agents.dead_letter_writer import DeadLetterWriter
from agents.emit import record_sender
from agents.executor import Executor
from agents.faust_app import Autopilot
from agents.group_offsets import committed_offsets
from agents.lanes import LaneGate
from agents.offset_guard import OffsetGuard
from agents.record_peek import RecordPeek
from agents.refetch import fetch_again
from agents.signal_engine import SignalEngine
from core.codec import Rejection, describe
from core.rejections import dlq_headers
from core.windows import SourcePosition
from topics.approvals import ApprovalGiven
from topics.commands import Command, Priority

logger = logging.getLogger(__name__)

# Commands handed to the executor and not finished yet, per worker: past it, the topics wait.
MAX_IN_HAND = 1024
# A partition with records past what its stream delivered, and silent this long, was skipped.
STALL_SECONDS = 5.0


def attach(
    autopilot: Autopilot, signals: SignalEngine, bootstrap: str, max_defer_seconds: float
) -> tuple[LaneGate, Executor]:
    """Register the lane, retry and approval agents; returns the lane gate and the executor."""
    app = autopilot.app
    executor = Executor(autopilot, signals.state, bootstrap)
    topics = {lane: topic.get_topic_name() for lane, topic in autopilot.lanes.items()}
    command_topics = {
        *topics.values(),
        autopilot.commands_retry.get_topic_name(),
        autopilot.approvals.get_topic_name(),
    }

    def highwater(topic: str, partition: int) -> int | None:
        try:
            return app.consumer.highwater(TopicPartition(topic, partition))
        except (KeyError, AssertionError):
            return None

    async def committed(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        return await committed_offsets(_bootstrap(app), app.conf.id, keys)

    async def latest(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        ends = await app.consumer.highwaters(*(TopicPartition(t, p) for t, p in keys))
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    dead_letters = DeadLetterWriter(
        record_sender(autopilot), autopilot.commands_dlq.get_topic_name()
    )
    peek = RecordPeek(bootstrap)
    gate = LaneGate(
        topics,
        highwater,
        committed,
        latest,
        peek.first_record,
        autopilot.settings.lane_max_wait_seconds,
    )
    guard = OffsetGuard(committed, peek.first_record, retry_seconds=STALL_SECONDS)

    async def skipped_before(event: Any) -> bool:
        """Whether the consumer skipped records before this one; if so they are fetched again,
        and this one is passed over unacked (it comes again with them)."""
        message = event.message
        gap = await guard.gap_before(message.topic, message.partition, message.offset)
        if gap is None:
            return False
        if gap.seek_to is not None:
            logger.warning(
                "records skipped by the consumer, fetching them again",
                extra={
                    "topic": message.topic,
                    "partition": message.partition,
                    "from": gap.seek_to,
                    "to": message.offset,
                },
            )
            await fetch_again(app, message.topic, message.partition, gap.seek_to)
        return True

    @app.timer(STALL_SECONDS)  # type: ignore[untyped-decorator]  # Faust is untyped
    async def _refetch_skipped() -> None:
        if in_hand.locked():
            return  # the streams wait for the executor, not for records
        for tp in app.consumer.assignment():
            if tp.topic not in command_topics:
                continue
            seek_to = await guard.stalled(
                tp.topic, tp.partition, highwater(tp.topic, tp.partition), STALL_SECONDS
            )
            if seek_to is not None:
                logger.warning(
                    "records skipped by the consumer, fetching them again",
                    extra={"topic": tp.topic, "partition": tp.partition, "from": seek_to},
                )
                await fetch_again(app, tp.topic, tp.partition, seek_to)

    in_hand = asyncio.Semaphore(MAX_IN_HAND)
    waiting: dict[int, set[asyncio.Task[None]]] = {}

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(app: faust.App, revoked: set[Any], **_: Any) -> None:
        for partition in {tp.partition for tp in revoked if tp.topic in command_topics}:
            gate.forget(partition)
            guard.forget(partition)
            executor.revoked(partition)
            # Their records are unacked: the shard's next owner gets them again.
            for task in waiting.pop(partition, set()):
                task.cancel()

    in_flight: set[asyncio.Task[None]] = set()

    def track(task: asyncio.Task[None]) -> None:
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        task.add_done_callback(lambda _: in_hand.release())
        task.add_done_callback(_crash_on_failure)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def _close(app: faust.App, **_: Any) -> None:
        # Actions mid-call finish and record their outcome on the ledger (the producer is
        # still up), so whoever runs the shard next finds it instead of waiting out the lease.
        executor.stopping()
        # Commands set aside for later stay unacked: the shard's next owner gets them again.
        for tasks in waiting.values():
            for task in tasks:
                task.cancel()
        if in_flight:
            _done, late = await asyncio.wait(
                in_flight, timeout=autopilot.settings.http_timeout_seconds + 5
            )
            # Nothing may use the tables once they are closed, which comes next: an action
            # still running is cancelled; the next owner settles its lease from the ledger.
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await executor.stop()
        await peek.stop()
        await autopilot.chain.stop()

    async def park(message: Any, exc: ValidationError) -> None:
        # Only Autopilot writes these topics, so this is a bug or a foreign writer: park the
        # record with its reason rather than act on it or lose it.
        source = SourcePosition(message.topic, message.partition, message.offset)
        rejection = Rejection(reason=describe(exc), raw=message.value or b"")
        logger.error(
            "undecodable command dead-lettered",
            extra={
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
            },
        )
        await dead_letters.send(
            message.key, message.value, dlq_headers(rejection, source), message.partition
        )

    async def hand_over(event: Any, command: Command) -> None:
        # Tasks keep the context they are created in: the executor's table writes go to the
        # changelog partition of this event, the workspace's shard.
        await in_hand.acquire()
        message = event.message
        source = SourcePosition(message.topic, message.partition, message.offset)
        track(asyncio.create_task(executor.carry_out(event, command, source)))

    async def run_when_due(event: Any, command: Command, delay: float) -> None:
        await asyncio.sleep(delay)
        await hand_over(event, command)

    def set_aside(event: Any, command: Command, delay: float) -> None:
        partition = event.message.partition
        task = asyncio.create_task(run_when_due(event, command, min(delay, max_defer_seconds)))
        tasks = waiting.setdefault(partition, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_crash_on_failure)

    async def take(event: Any) -> None:
        try:
            command = Command.model_validate_json(event.value)
        except ValidationError as exc:
            await park(event.message, exc)
            event.ack()
            return
        delay = _seconds_until(command.not_before)
        if delay > 0 and not command.dry_run:
            set_aside(event, command, delay)
        else:
            await hand_over(event, command)

    def lane_agent(lane: Priority, topic: faust.TopicT) -> None:
        async def execute(stream: faust.StreamT[bytes]) -> None:
            with crash_on_unexpected(f"execute.{lane.value}"):
                # noack lives on Stream, not on the StreamT interface Faust types agents with.
                async for event in cast(faust.Stream[bytes], stream).noack().events():
                    if await skipped_before(event):
                        continue
                    message = event.message
                    await gate.wait_turn(lane, message.partition)
                    await take(event)
                    gate.served(lane, message.partition, message.offset)

        app.agent(topic, name=f"execute.{lane.value}")(execute)

    for lane, topic in autopilot.lanes.items():
        lane_agent(lane, topic)

    @app.agent(autopilot.commands_retry, name="execute.retry")
    async def retry(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("execute.retry"):
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                if not await skipped_before(event):
                    await take(event)

    @app.agent(autopilot.approvals, name="execute.approvals")
    async def approvals(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("execute.approvals"):
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                if await skipped_before(event):
                    continue
                try:
                    approval = ApprovalGiven.model_validate_json(event.value)
                except ValidationError as exc:
                    await park(event.message, exc)
                    event.ack()
                    continue
                await in_hand.acquire()
                track(
                    asyncio.create_task(
                        executor.give_verdict(event, approval, event.message.partition)
                    )
                )

    del retry, approvals  # registered on the app by the decorators
    return gate, executor


def _seconds_until(moment: datetime | None) -> float:
    return 0.0 if moment is None else (moment - datetime.now(UTC)).total_seconds()


def _crash_on_failure(task: asyncio.Task[None]) -> None:
    # A command task's failure is as unexpected as one in the stream: crash loudly.
    if not task.cancelled() and task.exception() is not None:
        with crash_on_unexpected("execute.command"):
            raise task.exception()  # type: ignore[misc]


def _bootstrap(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)
