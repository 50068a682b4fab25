"""Action handlers, one per action, and the registry the executor dispatches through.

Handlers are reconcilers (shared/STYLE.md): given a command, they end in an Outcome or raise
ActionError for a terminal failure. This skeleton's handlers touch nothing outside yet; the
real ones (control API, webhooks, LLM content) replace them one module at a time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.errors import AutopilotError
from topics.commands import Action, Command
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind


class ActionError(AutopilotError):
    """A terminal failure of an action: recorded as action.failed, never retried."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful end of an action, with a short redacted note of what was done."""

    detail: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Command], Awaitable[Outcome]]


async def _acknowledge(command: Command) -> Outcome:
    # Stands in for the real side effect until the executor issue lands: the flow and the
    # ledger entries are real, the outside call is not made yet.
    return Outcome({"effect": "none (no provider configured)"})


HANDLERS: Mapping[Action, Handler] = {action: _acknowledge for action in Action}


async def run_command(command: Command, handlers: Mapping[Action, Handler] = HANDLERS) -> Outcome:
    """Dispatch a command to its action's handler; ActionError means terminal failure."""
    handler = handlers.get(command.action)
    if handler is None:
        raise ActionError(f"no handler registered for action {command.action.value}")
    return await handler(command)


def skipped_entry(command: Command, recorded_at: datetime, reason: str) -> LedgerEntry:
    """action.skipped: the command was not carried out (e.g. dry-run), and what it would do."""
    return _command_entry(
        command,
        LedgerKind.ACTION_SKIPPED,
        recorded_at,
        {
            "reason": reason,
            "would": f"{command.action.value} for workspace {command.workspace_id}",
        },
    )


def outcome_entry(
    command: Command, recorded_at: datetime, outcome: Outcome | None, error: ActionError | None
) -> LedgerEntry:
    """The terminal ledger entry of a command: action.succeeded or action.failed."""
    if error is not None:
        return _command_entry(
            command,
            LedgerKind.ACTION_FAILED,
            recorded_at,
            {"error": {"class": type(error).__name__, "reason": str(error)[:400]}},
        )
    detail = {} if outcome is None else {"detail": outcome.detail}
    return _command_entry(command, LedgerKind.ACTION_SUCCEEDED, recorded_at, detail)


def _command_entry(
    command: Command, kind: LedgerKind, recorded_at: datetime, details: dict[str, Any]
) -> LedgerEntry:
    # One terminal entry per command and kind: its id is derived, so a repeat is de-duplicated.
    return LedgerEntry(
        entry_id=stable_id("out", command.command_id, kind.value),
        kind=kind,
        workspace_id=command.workspace_id,
        correlation_id=command.correlation_id,
        causation_id=command.decision_id,
        policy_version=command.policy_version,
        recorded_at=recorded_at,
        payload={
            "command_id": command.command_id,
            "action": command.action.value,
            "priority": command.priority.value,
            "rule_id": command.rule_id,
            "attempt": command.attempt,
            **details,
        },
    )
