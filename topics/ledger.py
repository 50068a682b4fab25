"""The LedgerEntry event: every decision and every outcome, append-only, keyed by workspace."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from topics.signals import EventId, WorkspaceId


class LedgerKind(StrEnum):
    """What a ledger entry records."""

    DECISION_MADE = "decision.made"
    DECISION_DEFERRED = "decision.deferred"
    DECISION_SUPPRESSED = "decision.suppressed"
    ACTION_STARTED = "action.started"
    ACTION_SUCCEEDED = "action.succeeded"
    # One attempt failed; `retry_at` says when the next one runs (none: dead-lettered next).
    ACTION_FAILED = "action.failed"
    ACTION_SKIPPED = "action.skipped"
    # Held back while its provider's circuit breaker is open; no attempt was used.
    ACTION_DEFERRED = "action.deferred"
    ACTION_DEAD_LETTERED = "action.dead_lettered"
    # A dead-lettered command sent again by `autopilot dlq replay`, under a new command id.
    ACTION_REISSUED = "action.reissued"
    ACTION_APPROVAL_REQUESTED = "action.approval_requested"
    ACTION_APPROVED = "action.approved"
    ACTION_REJECTED = "action.rejected"
    BREAKER_OPENED = "breaker.opened"
    BREAKER_HALF_OPENED = "breaker.half_opened"
    BREAKER_CLOSED = "breaker.closed"
    SIGNAL_REJECTED = "signal.rejected"
    # One record of signals folded on its shard: how many (run metrics count them).
    SIGNALS_FOLDED = "signals.folded"
    OPERATOR_PAUSED = "operator.paused"
    OPERATOR_RESUMED = "operator.resumed"
    OPERATOR_DRY_RUN_ENABLED = "operator.dry_run_enabled"
    OPERATOR_DRY_RUN_DISABLED = "operator.dry_run_disabled"


DECISION_KINDS = frozenset(
    {LedgerKind.DECISION_MADE, LedgerKind.DECISION_DEFERRED, LedgerKind.DECISION_SUPPRESSED}
)
# How a command ends: exactly one of these per command id (shared/DESIGN.md).
TERMINAL_KINDS = frozenset(
    {
        LedgerKind.ACTION_SUCCEEDED,
        LedgerKind.ACTION_SKIPPED,
        LedgerKind.ACTION_DEAD_LETTERED,
        LedgerKind.ACTION_REJECTED,
    }
)
OPERATOR_KINDS = frozenset(
    {
        LedgerKind.OPERATOR_PAUSED,
        LedgerKind.OPERATOR_RESUMED,
        LedgerKind.OPERATOR_DRY_RUN_ENABLED,
        LedgerKind.OPERATOR_DRY_RUN_DISABLED,
    }
)


class LedgerEntry(BaseModel):
    """One fact on the ledger; the payload is redacted (no secrets, no third-party payloads).

    Version 2 added the chain (core/chain.py): `prev_hash` links the entry to the previous
    entry of its chain (its workspace's), and `hash` seals the exact bytes before it. A version 1
    entry reads as version 2 with no chain. The writer sets both; `hash` stays the last field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1, 2] = 2
    entry_id: EventId
    kind: LedgerKind
    # None only for input that names no valid workspace (a rejected, unreadable signal).
    workspace_id: WorkspaceId | None
    correlation_id: EventId
    causation_id: EventId
    policy_version: str | None = None
    recorded_at: AwareDatetime
    payload: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None
