"""The execute agents: commands in from the priority lanes and the retry topic, verdicts and
parking releases and requests in from the approvals topic; the executor (agents/executor.py)
carries them out.

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
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from pydantic import ValidationError

from actions.content import load_llm_sdk
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
from core.rules import Parking
from core.windows import SourcePosition
from topics.approvals import ApprovalGiven, ParkingRequest, parse_approvals_record
from topics.commands import Command, Priority

logger = logging.getLogger(__name__)

# Commands handed to the executor and not finished yet, per worker: past it, the topics wait.
MAX_IN_HAND = 1024
# A partition with records past what its stream delivered, and silent this long, was skipped.
STALL_SECONDS = 5.0


def attach(
    autopilot: Autopilot,
    signals: SignalEngine,
    bootstrap: str,
    max_defer_seconds: float,
    parking: Parking,
    playbook_rules: frozenset[str] = frozenset(),
) -> tuple[LaneGate, Executor]:
    """Register the lane, retry and approval agents; returns the lane gate and the executor.
    `parking`: the policy's `[parking]` table (which dead letters park a workspace, how long);
    `playbook_rules`: the rules that start playbooks (their commands' dead letters do not park)."""
    agents = ExecuteAgents(
        autopilot, signals, bootstrap, max_defer_seconds, parking, playbook_rules
    )
    agents.register()
    return agents.gate, agents.executor


class ExecuteAgents:
    """The execute agents of one worker and what they share: the executor, the lane gate, the
    guard against records Faust skipped, and the commands in hand or set aside."""

    def __init__(
        self,
        autopilot: Autopilot,
        signals: SignalEngine,
        bootstrap: str,
        max_defer_seconds: float,
        parking: Parking,
        playbook_rules: frozenset[str] = frozenset(),
    ) -> None:
        self.autopilot = autopilot
        self.app = autopilot.app
        self.max_defer_seconds = max_defer_seconds
        self.executor = Executor(autopilot, signals.state, bootstrap, parking, playbook_rules)
        self.topics = {lane: topic.get_topic_name() for lane, topic in autopilot.lanes.items()}
        self.command_topics = {
            *self.topics.values(),
            autopilot.commands_retry.get_topic_name(),
            autopilot.approvals.get_topic_name(),
        }
        self.dead_letters = DeadLetterWriter(
            record_sender(autopilot), autopilot.commands_dlq.get_topic_name()
        )
        self.security = autopilot.settings.kafka_security()
        self.peek = RecordPeek(bootstrap, self.security)
        self.gate = LaneGate(
            self.topics,
            self.highwater,
            self.committed,
            self.latest,
            self.peek.first_record,
            autopilot.settings.lane_max_wait_seconds,
        )
        self.guard = OffsetGuard(self.committed, self.peek.first_record, STALL_SECONDS)
        self.in_hand = asyncio.Semaphore(MAX_IN_HAND)
        # Commands set aside until their `not_before`, per partition; and those running.
        self.waiting: dict[int, set[asyncio.Task[None]]] = {}
        self.in_flight: set[asyncio.Task[None]] = set()

    def register(self) -> None:
        """Attach the agents, the stall timer and the rebalance and shutdown hooks to the app."""
        app = self.app
        for lane, topic in self.autopilot.lanes.items():
            app.agent(topic, name=f"execute.{lane.value}")(self._lane_agent(lane))
        app.agent(self.autopilot.commands_retry, name="execute.retry")(self._retry)
        app.agent(self.autopilot.approvals, name="execute.approvals")(self._approvals)
        app.timer(STALL_SECONDS)(self._refetch_skipped)
        if self.autopilot.settings.llm_api_key is not None:
            app.task(load_llm_sdk)
        # Faust types signal receivers as sync callables without keyword arguments.
        app.on_partitions_revoked.connect(self._forget)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self._close)  # type: ignore[arg-type]

    def highwater(self, topic: str, partition: int) -> int | None:
        try:
            return self.app.consumer.highwater(TopicPartition(topic, partition))
        except (KeyError, AssertionError):
            return None

    async def committed(self, keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        return await committed_offsets(_bootstrap(self.app), self.app.conf.id, keys, self.security)

    async def latest(self, keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        ends = await self.app.consumer.highwaters(*(TopicPartition(t, p) for t, p in keys))
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    async def skipped_before(self, event: Any) -> bool:
        """Whether the consumer skipped records before this one; if so they are fetched again,
        and this one is passed over unacked (it comes again with them)."""
        message = event.message
        gap = await self.guard.gap_before(message.topic, message.partition, message.offset)
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
            await fetch_again(self.app, message.topic, message.partition, gap.seek_to)
        return True

    async def _refetch_skipped(self) -> None:
        if self.in_hand.locked():
            return  # the streams wait for the executor, not for records
        for tp in self.app.consumer.assignment():
            if tp.topic not in self.command_topics:
                continue
            seek_to = await self.guard.stalled(
                tp.topic, tp.partition, self.highwater(tp.topic, tp.partition), STALL_SECONDS
            )
            if seek_to is not None:
                logger.warning(
                    "records skipped by the consumer, fetching them again",
                    extra={"topic": tp.topic, "partition": tp.partition, "from": seek_to},
                )
                await fetch_again(self.app, tp.topic, tp.partition, seek_to)

    async def _forget(self, app: faust.App, revoked: set[Any], **_: Any) -> None:
        for partition in {tp.partition for tp in revoked if tp.topic in self.command_topics}:
            self.gate.forget(partition)
            self.guard.forget(partition)
            self.executor.revoked(partition)
            # Their records are unacked: the shard's next owner gets them again.
            for task in self.waiting.pop(partition, set()):
                task.cancel()

    def _track(self, task: asyncio.Task[None]) -> None:
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        task.add_done_callback(lambda _: self.in_hand.release())
        task.add_done_callback(_crash_on_failure)

    async def _close(self, app: faust.App, **_: Any) -> None:
        # Actions mid-call finish and record their outcome on the ledger (the producer is
        # still up), so whoever runs the shard next finds it instead of waiting out the lease.
        self.executor.stopping()
        # Commands set aside for later stay unacked: the shard's next owner gets them again.
        for tasks in self.waiting.values():
            for task in tasks:
                task.cancel()
        if self.in_flight:
            _done, late = await asyncio.wait(
                self.in_flight, timeout=self.autopilot.settings.http_timeout_seconds + 5
            )
            # Nothing may use the tables once they are closed, which comes next: an action
            # still running is cancelled; the next owner settles its lease from the ledger.
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self.executor.stop()
        await self.peek.stop()
        await self.autopilot.chain.stop()

    async def _park(self, message: Any, exc: ValidationError) -> None:
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
        await self.dead_letters.send(
            message.key, message.value, dlq_headers(rejection, source), message.partition
        )

    async def _hand_over(self, event: Any, command: Command) -> None:
        # Tasks keep the context they are created in: the executor's table writes go to the
        # changelog partition of this event, the workspace's shard.
        await self.in_hand.acquire()
        message = event.message
        source = SourcePosition(message.topic, message.partition, message.offset)
        self._track(asyncio.create_task(self.executor.carry_out(event, command, source)))

    async def _run_when_due(self, event: Any, command: Command, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._hand_over(event, command)

    def _set_aside(self, event: Any, command: Command, delay: float) -> None:
        partition = event.message.partition
        task = asyncio.create_task(
            self._run_when_due(event, command, min(delay, self.max_defer_seconds))
        )
        tasks = self.waiting.setdefault(partition, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_crash_on_failure)

    async def _take(self, event: Any) -> None:
        try:
            command = Command.model_validate_json(event.value)
        except ValidationError as exc:
            await self._park(event.message, exc)
            event.ack()
            return
        delay = _seconds_until(command.not_before)
        if delay > 0 and not command.dry_run:
            self._set_aside(event, command, delay)
        else:
            await self._hand_over(event, command)

    def _lane_agent(
        self, lane: Priority
    ) -> Callable[[faust.StreamT[bytes]], Coroutine[Any, Any, None]]:
        async def execute(stream: faust.StreamT[bytes]) -> None:
            with crash_on_unexpected(f"execute.{lane.value}"):
                # noack lives on Stream, not on the StreamT interface Faust types agents with.
                async for event in cast(faust.Stream[bytes], stream).noack().events():
                    if await self.skipped_before(event):
                        continue
                    message = event.message
                    await self.gate.wait_turn(lane, message.partition)
                    await self._take(event)
                    self.gate.served(lane, message.partition, message.offset)

        return execute

    async def _retry(self, stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("execute.retry"):
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                if not await self.skipped_before(event):
                    await self._take(event)

    async def _approvals(self, stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("execute.approvals"):
            async for event in cast(faust.Stream[bytes], stream).noack().events():
                if await self.skipped_before(event):
                    continue
                try:
                    answer = parse_approvals_record(event.value)
                except ValidationError as exc:
                    await self._park(event.message, exc)
                    event.ack()
                    continue
                await self.in_hand.acquire()
                partition = event.message.partition
                if isinstance(answer, ApprovalGiven):
                    work = self.executor.give_verdict(event, answer, partition)
                elif isinstance(answer, ParkingRequest):
                    work = self.executor.park_for_run(event, answer, partition)
                else:
                    work = self.executor.end_parking(event, answer, partition)
                self._track(asyncio.create_task(work))


def _seconds_until(moment: datetime | None) -> float:
    return 0.0 if moment is None else (moment - datetime.now(UTC)).total_seconds()


def _crash_on_failure(task: asyncio.Task[None]) -> None:
    # A command task's failure is as unexpected as one in the stream: crash loudly.
    if not task.cancelled() and task.exception() is not None:
        with crash_on_unexpected("execute.command"):
            raise task.exception()  # type: ignore[misc]


def _bootstrap(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)
