"""The execute agents, one per priority lane: commands in, handlers run, outcomes on the ledger.

Lanes are served critical first (agents/lanes.py). A dry-run command touches nothing outside and
records `action.skipped`. A deferred command (over the platform cap) is set aside until its
`not_before` while the lane goes on; its record is acked only once it ran, so the committed
offset stays behind it and a crash redelivers it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from agents.boundary import crash_on_unexpected
from agents.emit import send_entry
from agents.handlers import ActionError, Outcome, outcome_entry, run_command, skipped_entry
from agents.lanes import LaneGate
from app.faust_app import Autopilot
from tables.windows import SourcePosition
from topics.codec import Rejection, describe
from topics.commands import Command, Priority
from topics.rejections import dlq_headers

logger = logging.getLogger(__name__)


def attach(autopilot: Autopilot, max_defer_seconds: float) -> LaneGate:
    """Register one execute agent per lane on the app; returns the gate that orders them."""
    app = autopilot.app
    topics = {lane: topic.get_topic_name() for lane, topic in autopilot.lanes.items()}
    lane_of_topic = {name: lane for lane, name in topics.items()}

    def highwater(topic: str, partition: int) -> int | None:
        try:
            return app.consumer.highwater(TopicPartition(topic, partition))
        except (KeyError, AssertionError):
            return None

    async def committed(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=_bootstrap(app))
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(
                app.conf.id, partitions=[TopicPartition(t, p) for t, p in keys]
            )
        finally:
            await admin.close()
        return {
            (tp.topic, tp.partition): (meta.offset if meta.offset >= 0 else None)
            for tp, meta in offsets.items()
        }

    async def latest(keys: list[tuple[str, int]]) -> Mapping[tuple[str, int], int]:
        ends = await app.consumer.highwaters(*(TopicPartition(t, p) for t, p in keys))
        return {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    gate = LaneGate(topics, highwater, committed, latest, autopilot.settings.lane_max_wait_seconds)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _forget(app: faust.App, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic in lane_of_topic:
                gate.forget(tp.partition)
                # Their records are unacked: the shard's next owner gets them again.
                for task in waiting.pop(tp.partition, set()):
                    task.cancel()

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
        await autopilot.commands_dlq.send(
            key=message.key,
            value=rejection.raw,
            partition=message.partition,
            headers=dlq_headers(rejection, source),
        )

    waiting: dict[int, set[asyncio.Task[None]]] = {}

    async def run_when_due(event: Any, command: Command, delay: float) -> None:
        await asyncio.sleep(delay)
        await carry_out(command)
        event.ack()

    def set_aside(event: Any, command: Command, delay: float) -> None:
        partition = event.message.partition
        task = asyncio.create_task(run_when_due(event, command, min(delay, max_defer_seconds)))
        tasks = waiting.setdefault(partition, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_crash_on_failure)

    async def carry_out(command: Command) -> None:
        if command.dry_run:
            await send_entry(autopilot, skipped_entry(command, datetime.now(UTC), "dry_run"))
            return
        outcome: Outcome | None = None
        error: ActionError | None = None
        try:
            outcome = await run_command(command)
        except ActionError as exc:
            error = exc
            logger.warning(
                "action failed",
                extra={
                    "workspace_id": command.workspace_id,
                    "command_id": command.command_id,
                    "correlation_id": command.correlation_id,
                    "error": type(exc).__name__,
                },
            )
        await send_entry(autopilot, outcome_entry(command, datetime.now(UTC), outcome, error))

    def lane_agent(lane: Priority, topic: faust.TopicT) -> None:
        async def execute(stream: faust.StreamT[bytes]) -> None:
            with crash_on_unexpected(f"execute.{lane.value}"):
                # noack lives on Stream, not on the StreamT interface Faust types agents with.
                async for event in cast(faust.Stream[bytes], stream).noack().events():
                    message = event.message
                    await gate.wait_turn(lane, message.partition)
                    try:
                        command = Command.model_validate_json(event.value)
                    except ValidationError as exc:
                        await park(message, exc)
                        event.ack()
                    else:
                        delay = _seconds_until(command.not_before)
                        if delay > 0 and not command.dry_run:
                            set_aside(event, command, delay)
                        else:
                            await carry_out(command)
                            event.ack()
                    gate.served(lane, message.partition, message.offset)

        app.agent(topic, name=f"execute.{lane.value}")(execute)

    for lane, topic in autopilot.lanes.items():
        lane_agent(lane, topic)
    return gate


def _seconds_until(moment: datetime | None) -> float:
    return 0.0 if moment is None else (moment - datetime.now(UTC)).total_seconds()


def _crash_on_failure(task: asyncio.Task[None]) -> None:
    # A deferred command's failure is as unexpected as one in the stream: crash loudly.
    if not task.cancelled() and task.exception() is not None:
        with crash_on_unexpected("execute.deferred"):
            raise task.exception()  # type: ignore[misc]


def _bootstrap(app: faust.App) -> str:
    return ",".join(f"{url.host}:{url.port}" for url in app.conf.broker)
