"""The ledger's entries: every decision and every outcome, append-only, keyed by workspace.

One model per kind (or per group of kinds sharing a payload), read as one union
discriminated on `kind` (`parse_entry`); the builders are in core/ledger_entries.py.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, TypeAdapter

from topics.control import Switch
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
    # Held behind its workspace's parking (a dead letter); it waits for a release or a drop.
    ACTION_PARKED = "action.parked"
    # A dead letter parked the workspace: its later commands wait (action.parked).
    WORKSPACE_PARKED = "workspace.parked"
    # The parking ended (an operator, or its TTL): the held commands run, or were dropped.
    WORKSPACE_RELEASED = "workspace.released"
    BREAKER_OPENED = "breaker.opened"
    BREAKER_HALF_OPENED = "breaker.half_opened"
    BREAKER_CLOSED = "breaker.closed"
    SIGNAL_REJECTED = "signal.rejected"
    # One record of signals folded on its shard: how many (run metrics count them).
    SIGNALS_FOLDED = "signals.folded"
    # One shard's run of a scheduled sweep: what it looked at and what it decided.
    SWEEP_COMPLETED = "sweep.completed"
    # A playbook's run (core/playbooks.py): started by a decision, one entry per step that
    # ended, then completed or failed. Written by the stage, on the workspace's decision chain.
    PLAYBOOK_STARTED = "playbook.started"
    PLAYBOOK_STEP_COMPLETED = "playbook.step_completed"
    PLAYBOOK_COMPLETED = "playbook.completed"
    PLAYBOOK_FAILED = "playbook.failed"
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
PLAYBOOK_KINDS = frozenset(
    {
        LedgerKind.PLAYBOOK_STARTED,
        LedgerKind.PLAYBOOK_STEP_COMPLETED,
        LedgerKind.PLAYBOOK_COMPLETED,
        LedgerKind.PLAYBOOK_FAILED,
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


# The payloads, one shape per group of kinds. Payloads are redacted: ids, names, counts, error
# classes and short reasons, never a secret, a prompt or a third-party payload. Field order is
# the order on the wire (the chain seals exact bytes; tests/unit/topics/golden holds them).
# Actions and lanes are text, not the enums of topics/commands.py: the ledger outlives any one
# version's set of actions, and every entry ever written must stay readable.

# A moment inside a payload, written as datetime.isoformat() ("+00:00", not "Z").
Timestamp = Annotated[AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str)]


class _Payload(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )


class DecisionPayload(_Payload):
    """decision.*: the verdict on a rule that fired, and every input it was derived from."""

    decision_id: EventId
    rule_id: str
    action: str
    priority: str
    # The rule's priority (1 to 10); `priority` is the lane it maps to.
    rank: int
    # None for a suppressed decision, which issues no command.
    command_id: EventId | None
    # Deferred: the start (epoch seconds) of the interval whose quota slot it holds.
    not_before: int | None
    # Why it was suppressed; None otherwise.
    reason: str | None
    dry_run: bool
    # core/policy.py `Inputs.as_json()`: what the rule read, so a replay derives it again.
    input: dict[str, Any]


class CommandPayload(_Payload):
    """What every action.* entry says of its command (each kind adds its own fields)."""

    command_id: EventId
    action: str
    priority: str
    rule_id: str
    attempt: int


class StartedPayload(CommandPayload):
    lease_until: Timestamp
    worker: str


class SucceededPayload(CommandPayload):
    # The handler's own redacted summary (ids, statuses, counts).
    detail: dict[str, Any]


class ErrorSummary(_Payload):
    """An error as the ledger and the dead-letter headers carry it."""

    error_class: str = Field(alias="class")
    reason: str
    retryable: bool


class FailedPayload(CommandPayload):
    error: ErrorSummary
    # When the next attempt runs; None: none will (action.dead_lettered follows).
    retry_at: Timestamp | None


class DeferredPayload(CommandPayload):
    reason: Literal["breaker_open"]
    provider: str
    until: Timestamp


class DeadLetteredPayload(CommandPayload):
    error: ErrorSummary
    attempts: int


class SkippedPayload(CommandPayload):
    reason: str
    # What it would have done, in words.
    would: str


class ApprovalRequestedPayload(CommandPayload):
    tags: list[str]
    would: str


class VerdictPayload(CommandPayload):
    by: str
    reason: str


class HeldPayload(CommandPayload):
    """action.parked: the command waits behind its workspace's parking."""

    # The dead-lettered command that parked the workspace.
    dead_lettered: EventId
    # Its place in the workspace's queue (1 runs first on a release).
    position: int


class ParkingPayload(_Payload):
    """workspace.parked: a dead letter parked the workspace."""

    # In words: the action, the error's class and the command, never the provider's answer.
    reason: str
    dead_lettered: EventId
    action: str
    error_class: str
    since: Timestamp
    # How long until it releases itself on the workspace's next command (0: never).
    ttl_seconds: int
    # Commands already waiting as it parked (a released command parked it again).
    queued: int


class ReleasedPayload(_Payload):
    """workspace.released: a parking ended; its commands run in order, or were dropped."""

    dead_lettered: EventId
    parked_since: Timestamp
    # The operator, or "ttl" when the parking expired.
    by: str
    reason: str | None
    dropped: bool
    # Commands released (or dropped).
    count: int


class DeadLetterPlace(_Payload):
    partition: int
    offset: int


class ReissuedPayload(_Payload):
    # The new command's id; the dead-lettered one's is `reissued_from`.
    command_id: EventId
    reissued_from: EventId
    action: str
    priority: str
    rule_id: str
    error_class: str | None
    dead_letter: DeadLetterPlace
    by: str


class BreakerPayload(_Payload):
    provider: str
    failures: int
    worker: str


class RejectedSource(_Payload):
    topic: str
    partition: int
    offset: int
    # The item of a batch record; None when the whole record was refused.
    index: int | None


class RejectedPayload(_Payload):
    # The refusal's class and what to fix ("invalid: …"), never the refused content.
    reason: str
    source: RejectedSource


class FoldedPayload(_Payload):
    signals: int
    # The record's place: topic, partition, offset.
    source: tuple[str, int, int]


class SweepPayload(_Payload):
    schedule: str
    # The tick the run acted on (the causation of its decisions) and its moment.
    tick_id: str
    at: Timestamp
    shard: int
    workspaces: int
    candidates: int
    evaluated: int
    decisions: int
    actions: int
    suppressed: int
    affected: int
    skipped: int
    max_workspaces: int
    max_actions: int
    # Set when an operator asked for the run (`POST /run-once`), not the schedule.
    requested_by: str | None = None


class SwitchPayload(_Payload):
    switch: Switch
    shard: int
    by: str | None
    reason: str | None
    requested_at: Timestamp
    # The shard's mode after the switch ({"paused": …, "dry_run": …}).
    mode: dict[str, bool]


class PlaybookPayload(_Payload):
    """playbook.*: one transition of a run, what caused it and the run as it is after it."""

    run_id: EventId
    playbook: str
    # The step that ended (started: none), how, and the step entered next ("complete",
    # "fail" at the end of the run).
    step: str | None
    outcome: str | None
    next: str | None
    # The commands this transition issued (a step's, or compensations on failure).
    commands: list[EventId]
    # What moved the run: {"kind": decision|outcome|due|signal, "id": ..., "at": epoch s, ...}.
    cause: dict[str, Any]
    # The run's state after the transition (core/playbooks.py), so a replay can re-derive the
    # next transition from it; a finished run's last state.
    run: dict[str, Any]


# The entries: one model per kind, or per group of kinds that share a payload.


class LedgerEntry(BaseModel):
    """One fact on the ledger: the envelope every entry shares (read one with `parse_entry`).

    Version 2 added the chain (core/chain.py): `prev_hash` links the entry to the previous
    entry of its chain (its workspace's), and `hash` seals the exact bytes before it. A version 1
    entry reads as version 2 with no chain. The writer sets both; `hash` stays the last field.
    Version 3 holds the same fields; only its chains differ: a workspace's action outcomes
    chain apart from its decisions, and rejected input per shard (core/chain.py says why).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1, 2, 3] = 3
    entry_id: EventId
    kind: LedgerKind
    # None only for entries about no one workspace: a rejected input that names no valid one,
    # a shard's folds and operator switches, a worker's breakers.
    workspace_id: WorkspaceId | None
    correlation_id: EventId
    causation_id: EventId
    policy_version: str | None = None
    recorded_at: AwareDatetime
    payload: _Payload
    prev_hash: str | None = None
    hash: str | None = None


DecisionKinds = Literal[
    LedgerKind.DECISION_MADE, LedgerKind.DECISION_DEFERRED, LedgerKind.DECISION_SUPPRESSED
]
VerdictKinds = Literal[LedgerKind.ACTION_APPROVED, LedgerKind.ACTION_REJECTED]
BreakerKinds = Literal[
    LedgerKind.BREAKER_OPENED, LedgerKind.BREAKER_HALF_OPENED, LedgerKind.BREAKER_CLOSED
]
OperatorKinds = Literal[
    LedgerKind.OPERATOR_PAUSED,
    LedgerKind.OPERATOR_RESUMED,
    LedgerKind.OPERATOR_DRY_RUN_ENABLED,
    LedgerKind.OPERATOR_DRY_RUN_DISABLED,
]


class DecisionEntry(LedgerEntry):
    kind: DecisionKinds
    payload: DecisionPayload


class ActionStarted(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_STARTED] = LedgerKind.ACTION_STARTED
    payload: StartedPayload


class ActionSucceeded(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_SUCCEEDED] = LedgerKind.ACTION_SUCCEEDED
    payload: SucceededPayload


class ActionFailed(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_FAILED] = LedgerKind.ACTION_FAILED
    payload: FailedPayload


class ActionDeferred(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_DEFERRED] = LedgerKind.ACTION_DEFERRED
    payload: DeferredPayload


class ActionDeadLettered(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_DEAD_LETTERED] = LedgerKind.ACTION_DEAD_LETTERED
    payload: DeadLetteredPayload


class ActionSkipped(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_SKIPPED] = LedgerKind.ACTION_SKIPPED
    payload: SkippedPayload


class ActionReissued(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_REISSUED] = LedgerKind.ACTION_REISSUED
    payload: ReissuedPayload


class ApprovalRequested(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_APPROVAL_REQUESTED] = LedgerKind.ACTION_APPROVAL_REQUESTED
    payload: ApprovalRequestedPayload


class ActionVerdict(LedgerEntry):
    kind: VerdictKinds
    payload: VerdictPayload


class ActionParked(LedgerEntry):
    kind: Literal[LedgerKind.ACTION_PARKED] = LedgerKind.ACTION_PARKED
    payload: HeldPayload


class WorkspaceParked(LedgerEntry):
    kind: Literal[LedgerKind.WORKSPACE_PARKED] = LedgerKind.WORKSPACE_PARKED
    payload: ParkingPayload


class WorkspaceReleased(LedgerEntry):
    kind: Literal[LedgerKind.WORKSPACE_RELEASED] = LedgerKind.WORKSPACE_RELEASED
    payload: ReleasedPayload


class BreakerChanged(LedgerEntry):
    kind: BreakerKinds
    payload: BreakerPayload


class SignalRejected(LedgerEntry):
    kind: Literal[LedgerKind.SIGNAL_REJECTED] = LedgerKind.SIGNAL_REJECTED
    payload: RejectedPayload


class SignalsFolded(LedgerEntry):
    kind: Literal[LedgerKind.SIGNALS_FOLDED] = LedgerKind.SIGNALS_FOLDED
    payload: FoldedPayload


class SweepCompleted(LedgerEntry):
    kind: Literal[LedgerKind.SWEEP_COMPLETED] = LedgerKind.SWEEP_COMPLETED
    payload: SweepPayload


PlaybookKinds = Literal[
    LedgerKind.PLAYBOOK_STARTED,
    LedgerKind.PLAYBOOK_STEP_COMPLETED,
    LedgerKind.PLAYBOOK_COMPLETED,
    LedgerKind.PLAYBOOK_FAILED,
]


class PlaybookEntry(LedgerEntry):
    kind: PlaybookKinds
    payload: PlaybookPayload


class OperatorSwitched(LedgerEntry):
    kind: OperatorKinds
    payload: SwitchPayload


# Entries about one command: their payload is a CommandPayload (action.reissued names its new
# command the same way).
CommandEntry = (
    ActionStarted
    | ActionSucceeded
    | ActionFailed
    | ActionDeferred
    | ActionDeadLettered
    | ActionSkipped
    | ApprovalRequested
    | ActionVerdict
    | ActionParked
)
AnyLedgerEntry = Annotated[
    DecisionEntry
    | CommandEntry
    | ActionReissued
    | WorkspaceParked
    | WorkspaceReleased
    | BreakerChanged
    | SignalRejected
    | SignalsFolded
    | SweepCompleted
    | PlaybookEntry
    | OperatorSwitched,
    Field(discriminator="kind"),
]
LEDGER_ENTRY: TypeAdapter[AnyLedgerEntry] = TypeAdapter(AnyLedgerEntry)


def parse_entry(raw: str | bytes) -> AnyLedgerEntry:
    """The entry a ledger record holds, as the model of its kind; pydantic's ValidationError
    when it holds none."""
    return LEDGER_ENTRY.validate_json(raw)
