"""The ledger entries of a command's life: started, failed, deferred, and how it ended (pure).

Ids are derived, so an entry written again (a redelivered command, a worker that crashed after
writing it) is the same entry and every reader keeps one. Terminal kinds have one id per
command and kind; per-attempt kinds add the attempt.
Payloads are redacted: the command's ids and action, error classes and short reasons, counts and
hashes, never a secret, a prompt or a third-party payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from topics.commands import Command
from topics.errors import ActionError
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind

MAX_REASON_CHARS = 400


def started_entry(
    command: Command, recorded_at: datetime, until: datetime, worker: str
) -> LedgerEntry:
    """action.started: an attempt begins on a worker; the workspace is leased until `until`."""
    return _command_entry(
        command,
        LedgerKind.ACTION_STARTED,
        recorded_at,
        {"lease_until": until.isoformat(), "worker": worker},
    )


def succeeded_entry(command: Command, recorded_at: datetime, detail: dict[str, Any]) -> LedgerEntry:
    """action.succeeded: the command is carried out (terminal)."""
    return _command_entry(command, LedgerKind.ACTION_SUCCEEDED, recorded_at, {"detail": detail})


def failed_entry(
    command: Command, recorded_at: datetime, error: ActionError, retry_at: datetime | None
) -> LedgerEntry:
    """action.failed: one attempt failed; `retry_at` is when the next one runs (None: none)."""
    return _command_entry(
        command,
        LedgerKind.ACTION_FAILED,
        recorded_at,
        {
            "error": error_of(error),
            "retry_at": None if retry_at is None else retry_at.isoformat(),
        },
    )


def dead_lettered_entry(command: Command, recorded_at: datetime, error: ActionError) -> LedgerEntry:
    """action.dead_lettered: given up (terminal error or attempts used up); now on commands.dlq."""
    return _command_entry(
        command,
        LedgerKind.ACTION_DEAD_LETTERED,
        recorded_at,
        {"error": error_of(error), "attempts": command.attempt},
    )


def deferred_entry(
    command: Command, recorded_at: datetime, provider: str, until: datetime
) -> LedgerEntry:
    """action.deferred: the provider's circuit breaker is open; no attempt was used."""
    return _command_entry(
        command,
        LedgerKind.ACTION_DEFERRED,
        recorded_at,
        {"reason": "breaker_open", "provider": provider, "until": until.isoformat()},
    )


def skipped_entry(
    command: Command, recorded_at: datetime, reason: str, would: str | None = None
) -> LedgerEntry:
    """action.skipped: not carried out (dry-run), with what it would have done (terminal)."""
    return _command_entry(
        command,
        LedgerKind.ACTION_SKIPPED,
        recorded_at,
        {
            "reason": reason,
            "would": would or f"{command.action.value} for workspace {command.workspace_id}",
        },
    )


def approval_requested_entry(
    command: Command, recorded_at: datetime, tags: frozenset[str], would: str
) -> LedgerEntry:
    """action.approval_requested: a compliance-tagged command waits for an operator."""
    return _command_entry(
        command,
        LedgerKind.ACTION_APPROVAL_REQUESTED,
        recorded_at,
        {"tags": sorted(tags), "would": would},
    )


def verdict_entry(
    command: Command, recorded_at: datetime, approved: bool, by: str, reason: str
) -> LedgerEntry:
    """action.approved or action.rejected (terminal): an operator's answer, and who gave it."""
    kind = LedgerKind.ACTION_APPROVED if approved else LedgerKind.ACTION_REJECTED
    return _command_entry(command, kind, recorded_at, {"by": by, "reason": reason})


def breaker_entry(
    provider: str, state: str, failures: int, worker: str, recorded_at: datetime
) -> LedgerEntry:
    """breaker.opened / half_opened / closed: a provider's circuit breaker changed state."""
    kind = {
        "open": LedgerKind.BREAKER_OPENED,
        "half_open": LedgerKind.BREAKER_HALF_OPENED,
        "closed": LedgerKind.BREAKER_CLOSED,
    }[state]
    entry_id = stable_id("brk", worker, provider, kind.value, recorded_at.isoformat())
    return LedgerEntry(
        entry_id=entry_id,
        kind=kind,
        workspace_id=None,
        correlation_id=entry_id,
        causation_id=entry_id,
        recorded_at=recorded_at,
        payload={"provider": provider, "failures": failures, "worker": worker},
    )


def header_of(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None, name: str
) -> bytes | None:
    """The first value of a record header (Faust gives a list of pairs, or a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return next((value for key, value in pairs if key == name), None)


def reissued_entry_of(raw: bytes, command: Command) -> LedgerEntry | None:
    """The action.reissued entry a re-issued command carries, if it is one for this command."""
    try:
        entry = LedgerEntry.model_validate_json(raw)
    except ValidationError:
        return None
    if (
        entry.kind is not LedgerKind.ACTION_REISSUED
        or entry.workspace_id != command.workspace_id
        or entry.payload.get("command_id") != command.command_id
    ):
        return None
    # Sealed by the chain's writer; whatever chain fields came with it are not trusted.
    return entry.model_copy(update={"prev_hash": None, "hash": None})


def error_of(error: ActionError) -> dict[str, Any]:
    """An error as the ledger and the dead-letter headers carry it: class, reason, retryable."""
    return {
        "class": type(error).__name__,
        "reason": str(error)[:MAX_REASON_CHARS],
        "retryable": error.retryable,
    }


def _command_entry(
    command: Command, kind: LedgerKind, recorded_at: datetime, details: dict[str, Any]
) -> LedgerEntry:
    per_attempt = kind in {
        LedgerKind.ACTION_STARTED,
        LedgerKind.ACTION_FAILED,
        LedgerKind.ACTION_DEFERRED,
    }
    parts: tuple[object, ...] = (command.command_id, kind.value)
    if per_attempt:
        parts = (*parts, command.attempt)
    if kind is LedgerKind.ACTION_DEFERRED:
        parts = (*parts, details["until"])
    return LedgerEntry(
        entry_id=stable_id("out", *parts),
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
