"""Sending events: ledger entries and commands, keyed by workspace so they stay on its shard.

These go straight to the app's producer rather than through Faust's Topic.send, whose
per-message futures, sensors and debug formatting cost more than the send itself here. It is the
same producer, so Faust still flushes it before every offset commit (at-least-once holds).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from agents.dead_letter_writer import Headers, Send
from agents.faust_app import Autopilot
from topics.commands import Command
from topics.control import StepOutcome
from topics.ledger import LedgerEntry


async def send_entry(
    autopilot: Autopilot, entry: LedgerEntry, shard: int | None = None
) -> Awaitable[Any]:
    """Append an entry to its chain on the ledger; one that names no workspace goes to the given
    shard."""
    return await autopilot.chain.send(entry, shard)


async def send_command(autopilot: Autopilot, command: Command) -> Awaitable[Any]:
    """Queue a command on its priority lane for the executors, keyed by its workspace."""
    return await autopilot.app.producer.send(
        autopilot.lanes[command.priority].get_topic_name(),
        command.workspace_id.encode(),
        command.model_dump_json().encode(),
        partition=None,
        timestamp=None,
        headers=None,
    )


async def send_step_outcome(autopilot: Autopilot, outcome: StepOutcome) -> Awaitable[Any]:
    """Hand how a playbook's command ended to its shard's stage, on the shard's control
    partition (keyed by its workspace, as the command was)."""
    return await autopilot.app.producer.send(
        autopilot.control.get_topic_name(),
        outcome.workspace_id.encode(),
        outcome.model_dump_json().encode(),
        partition=None,
        timestamp=None,
        headers=None,
    )


def record_sender(autopilot: Autopilot) -> Send:
    """Sends one record with the app's producer (for agents/dead_letter_writer.py)."""

    async def send(
        topic: str, key: bytes | None, value: bytes, partition: int | None, headers: Headers
    ) -> Awaitable[Any]:
        return await autopilot.app.producer.send(
            topic, key, value, partition=partition, timestamp=None, headers=headers
        )

    return send
