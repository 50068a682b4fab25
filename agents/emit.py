"""Sending events: ledger entries and commands, keyed by workspace so they stay on its shard."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from app.faust_app import Autopilot
from topics.commands import Command
from topics.ledger import LedgerEntry


async def send_entry(
    autopilot: Autopilot, entry: LedgerEntry, shard: int | None = None
) -> Awaitable[Any]:
    """Append an entry to the ledger; one that names no workspace goes to the given shard."""
    key = entry.workspace_id.encode() if entry.workspace_id else None
    return await autopilot.ledger.send(
        key=key,
        value=entry.model_dump_json().encode(),
        partition=None if key else shard,
    )


async def send_command(autopilot: Autopilot, command: Command) -> Awaitable[Any]:
    """Queue a command for the executors, keyed by its workspace."""
    return await autopilot.commands.send(
        key=command.workspace_id.encode(), value=command.model_dump_json().encode()
    )
