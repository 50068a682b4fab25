"""The execute agent: commands in, handlers run, one terminal outcome per command on the ledger."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from pydantic import ValidationError

from agents.boundary import crash_on_unexpected
from agents.emit import send_entry
from agents.handlers import ActionError, Outcome, outcome_entry, run_command
from app.faust_app import Autopilot
from tables.windows import SourcePosition
from topics.codec import Rejection, describe
from topics.commands import Command
from topics.rejections import dlq_headers

logger = logging.getLogger(__name__)


def attach(autopilot: Autopilot) -> None:
    """Register the execute agent on the app."""

    @autopilot.app.agent(autopilot.commands, name="execute")
    async def execute(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("execute"):
            async for event in stream.events():
                try:
                    command = Command.model_validate_json(event.value)
                except ValidationError as exc:
                    # Only Autopilot writes this topic, so this is a bug or a foreign writer: park
                    # the record with its reason rather than act on it or lose it.
                    message = event.message
                    source = SourcePosition(message.topic, message.partition, message.offset)
                    rejection = Rejection(reason=describe(exc), raw=message.value or b"")
                    logger.error(
                        "undecodable command dead-lettered",
                        extra={"partition": message.partition, "offset": message.offset},
                    )
                    await autopilot.commands_dlq.send(
                        key=message.key,
                        value=rejection.raw,
                        partition=message.partition,
                        headers=dlq_headers(rejection, source),
                    )
                    continue
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
                await send_entry(
                    autopilot, outcome_entry(command, datetime.now(UTC), outcome, error)
                )
