"""Every ledger entry Autopilot writes is built here, as the model of its kind. Pure.

Ids are derived, so an entry written again (a redelivered record or command, a worker that
crashed after writing it) is the same entry and every reader keeps one. Command entries of a
terminal kind have one id per command and kind; per-attempt kinds add the attempt.
Payloads are redacted: ids and names, error classes and short reasons, counts and hashes,
never a secret, a prompt or a third-party payload.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import ValidationError

from core.codec import Rejection
from core.playbooks import Moved, Run
from core.policy import Decision, DecisionKind
from core.sweeps import SweepRun
from core.windows import SourcePosition
from topics.approvals import ParkingRelease, ParkingRequest
from topics.commands import Command
from topics.control import OperatorSwitch, Switch
from topics.errors import ActionError
from topics.ids import stable_id
from topics.ledger import (
    ActionDeadLettered,
    ActionDeferred,
    ActionFailed,
    ActionParked,
    ActionReissued,
    ActionSkipped,
    ActionStarted,
    ActionSucceeded,
    ActionVerdict,
    ApprovalRequested,
    ApprovalRequestedPayload,
    BreakerChanged,
    BreakerKinds,
    BreakerPayload,
    DeadLetteredPayload,
    DeadLetterPlace,
    DecisionEntry,
    DecisionKinds,
    DecisionPayload,
    DeferredPayload,
    ErrorSummary,
    FailedPayload,
    FoldedPayload,
    HeldPayload,
    LedgerKind,
    OperatorKinds,
    OperatorSwitched,
    ParkingPayload,
    PlaybookEntry,
    PlaybookPayload,
    ReissuedPayload,
    RejectedPayload,
    RejectedSource,
    ReleasedPayload,
    SignalRejected,
    SignalsFolded,
    SkippedPayload,
    StartedPayload,
    SucceededPayload,
    SweepCompleted,
    SweepPayload,
    SwitchPayload,
    VerdictKinds,
    VerdictPayload,
    WorkspaceParked,
    WorkspaceReleased,
)
from topics.signals import is_workspace_id

MAX_REASON_CHARS = 400

# Decisions and folds


_DECISION_KINDS: dict[DecisionKind, DecisionKinds] = {
    DecisionKind.MADE: LedgerKind.DECISION_MADE,
    DecisionKind.DEFERRED: LedgerKind.DECISION_DEFERRED,
    DecisionKind.SUPPRESSED: LedgerKind.DECISION_SUPPRESSED,
}


def decision_entry(decision: Decision, recorded_at: datetime) -> DecisionEntry:
    """The ledger entry of a decision; its id is the decision id, so consumers de-duplicate."""
    return DecisionEntry(
        entry_id=decision.decision_id,
        kind=_DECISION_KINDS[decision.kind],
        workspace_id=decision.workspace_id,
        correlation_id=decision.inputs.signal_id,
        causation_id=decision.inputs.signal_id,
        policy_version=decision.policy_version,
        recorded_at=recorded_at,
        payload=decision_payload(decision),
    )


def decision_payload(decision: Decision) -> DecisionPayload:
    """A decision as the ledger records it: the verdict and every input it was derived from."""
    return DecisionPayload(
        decision_id=decision.decision_id,
        rule_id=decision.rule_id,
        action=decision.action.value,
        priority=decision.lane.value,
        rank=decision.priority,
        command_id=decision.command_id,
        not_before=decision.not_before,
        reason=decision.reason,
        dry_run=decision.dry_run,
        input=decision.inputs.as_json(),
    )


def folded_entry(signals: int, source: SourcePosition, recorded_at: datetime) -> SignalsFolded:
    """signals.folded: how many signals of one record its shard folded (for run metrics); its id
    is the record's position, so a record folded again after a crash is counted once."""
    entry_id = stable_id("fold", source.topic, source.partition, source.offset)
    return SignalsFolded(
        entry_id=entry_id,
        workspace_id=None,
        correlation_id=entry_id,
        causation_id=entry_id,
        recorded_at=recorded_at,
        payload=FoldedPayload(
            signals=signals, source=(source.topic, source.partition, source.offset)
        ),
    )


def sweep_entry(run: SweepRun, requested_by: str | None, recorded_at: datetime) -> SweepCompleted:
    """sweep.completed: one shard's run of a sweep; its id is the tick's and the shard's, so a
    tick acted on again after a crash is counted once."""
    entry_id = stable_id("sweep", run.tick_id, run.partition)
    return SweepCompleted(
        entry_id=entry_id,
        workspace_id=None,
        correlation_id=run.tick_id,
        causation_id=run.tick_id,
        recorded_at=recorded_at,
        payload=SweepPayload(
            schedule=run.schedule,
            tick_id=run.tick_id,
            at=datetime.fromtimestamp(run.at, UTC),
            shard=run.partition,
            workspaces=run.workspaces,
            candidates=run.candidates,
            evaluated=run.evaluated,
            decisions=run.decisions,
            actions=run.actions,
            suppressed=run.suppressed,
            affected=run.affected,
            skipped=run.skipped,
            max_workspaces=run.max_workspaces,
            max_actions=run.max_actions,
            requested_by=requested_by,
        ),
    )


def playbook_entry(
    run: Run,
    move: Moved,
    cause: dict[str, Any],
    policy_version: str,
    recorded_at: datetime,
) -> PlaybookEntry:
    """playbook.*: one step of a run's transition; its id is the run's, the kind's, the step's
    and the cause's, so a transition made again after a crash is recorded once."""
    entry_id = stable_id("pb", run["id"], move.kind.value, move.step or "", cause["id"])
    return PlaybookEntry(
        kind=move.kind,
        entry_id=entry_id,
        workspace_id=run["workspace"],
        correlation_id=run["id"],
        causation_id=cause["id"],
        policy_version=policy_version,
        recorded_at=recorded_at,
        payload=PlaybookPayload(
            run_id=run["id"],
            playbook=run["playbook"],
            step=move.step,
            outcome=move.outcome,
            next=move.next,
            commands=[command.command_id for command in move.commands],
            cause=cause,
            run=run,
        ),
    )


def rejection_entry(
    rejection: Rejection, source: SourcePosition, recorded_at: datetime
) -> SignalRejected:
    """signal.rejected: the reason and the position, never the payload."""
    entry_id = stable_id("rej", source.topic, source.partition, source.offset, rejection.index)
    return SignalRejected(
        entry_id=entry_id,
        workspace_id=claimed_workspace(rejection.raw),
        correlation_id=entry_id,
        causation_id=entry_id,
        recorded_at=recorded_at,
        payload=RejectedPayload(
            reason=rejection.reason,
            source=RejectedSource(
                topic=source.topic,
                partition=source.partition,
                offset=source.offset,
                index=rejection.index,
            ),
        ),
    )


def claimed_workspace(raw: bytes) -> str | None:
    """The workspace a refused input names, when it names a valid one; else None."""
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = item.get("workspace_id") if isinstance(item, dict) else None
    return value if is_workspace_id(value) else None


_SWITCH_KINDS: dict[Switch, OperatorKinds] = {
    Switch.PAUSE: LedgerKind.OPERATOR_PAUSED,
    Switch.RESUME: LedgerKind.OPERATOR_RESUMED,
    Switch.DRY_RUN_ON: LedgerKind.OPERATOR_DRY_RUN_ENABLED,
    Switch.DRY_RUN_OFF: LedgerKind.OPERATOR_DRY_RUN_DISABLED,
}


def switch_entry(
    request: OperatorSwitch, partition: int, mode: dict[str, Any], recorded_at: datetime
) -> OperatorSwitched:
    """operator.*: a shard applied an operator's switch (who and why, never the token)."""
    entry_id = stable_id("op", request.request_id, partition)
    return OperatorSwitched(
        entry_id=entry_id,
        kind=_SWITCH_KINDS[request.switch],
        workspace_id=None,
        correlation_id=request.request_id,
        causation_id=request.request_id,
        recorded_at=recorded_at,
        payload=SwitchPayload(
            switch=request.switch,
            shard=partition,
            by=request.by,
            reason=request.reason,
            requested_at=request.requested_at,
            mode=dict(mode),
        ),
    )


# A command's life


def started_entry(
    command: Command, recorded_at: datetime, until: datetime, worker: str
) -> ActionStarted:
    """action.started: an attempt begins on a worker; the workspace is leased until `until`."""
    return ActionStarted(
        **_about(command, LedgerKind.ACTION_STARTED, recorded_at, command.attempt),
        payload=StartedPayload(**_command(command), lease_until=until, worker=worker),
    )


def succeeded_entry(
    command: Command, recorded_at: datetime, detail: dict[str, Any]
) -> ActionSucceeded:
    """action.succeeded: the command is carried out (terminal)."""
    return ActionSucceeded(
        **_about(command, LedgerKind.ACTION_SUCCEEDED, recorded_at),
        payload=SucceededPayload(**_command(command), detail=detail),
    )


def failed_entry(
    command: Command, recorded_at: datetime, error: ActionError, retry_at: datetime | None
) -> ActionFailed:
    """action.failed: one attempt failed; `retry_at` is when the next one runs (None: none)."""
    return ActionFailed(
        **_about(command, LedgerKind.ACTION_FAILED, recorded_at, command.attempt),
        payload=FailedPayload(**_command(command), error=error_of(error), retry_at=retry_at),
    )


def dead_lettered_entry(
    command: Command, recorded_at: datetime, error: ActionError
) -> ActionDeadLettered:
    """action.dead_lettered: given up (terminal error or attempts used up); now on commands.dlq."""
    return ActionDeadLettered(
        **_about(command, LedgerKind.ACTION_DEAD_LETTERED, recorded_at),
        payload=DeadLetteredPayload(
            **_command(command), error=error_of(error), attempts=command.attempt
        ),
    )


def deferred_entry(
    command: Command, recorded_at: datetime, provider: str, until: datetime
) -> ActionDeferred:
    """action.deferred: the provider's circuit breaker is open; no attempt was used."""
    return ActionDeferred(
        **_about(
            command, LedgerKind.ACTION_DEFERRED, recorded_at, command.attempt, until.isoformat()
        ),
        payload=DeferredPayload(
            **_command(command), reason="breaker_open", provider=provider, until=until
        ),
    )


def skipped_entry(
    command: Command, recorded_at: datetime, reason: str, would: str | None = None
) -> ActionSkipped:
    """action.skipped: not carried out (dry-run), with what it would have done (terminal)."""
    return ActionSkipped(
        **_about(command, LedgerKind.ACTION_SKIPPED, recorded_at),
        payload=SkippedPayload(
            **_command(command),
            reason=reason,
            would=would or f"{command.action.value} for workspace {command.workspace_id}",
        ),
    )


def approval_requested_entry(
    command: Command, recorded_at: datetime, tags: frozenset[str], would: str
) -> ApprovalRequested:
    """action.approval_requested: a compliance-tagged command waits for an operator."""
    return ApprovalRequested(
        **_about(command, LedgerKind.ACTION_APPROVAL_REQUESTED, recorded_at),
        payload=ApprovalRequestedPayload(**_command(command), tags=sorted(tags), would=would),
    )


def verdict_entry(
    command: Command, recorded_at: datetime, approved: bool, by: str, reason: str
) -> ActionVerdict:
    """action.approved or action.rejected (terminal): an operator's answer, and who gave it."""
    kind: VerdictKinds = LedgerKind.ACTION_APPROVED if approved else LedgerKind.ACTION_REJECTED
    return ActionVerdict(
        **_about(command, kind, recorded_at),
        kind=kind,
        payload=VerdictPayload(**_command(command), by=by, reason=reason),
    )


def reissued_entry(
    new: Command,
    old: Command,
    dead_letter: DeadLetterPlace,
    error_class: str | None,
    recorded_at: datetime,
    by: str,
) -> ActionReissued:
    """action.reissued: who sent a dead-lettered command again, from where, under which id."""
    return ActionReissued(
        entry_id=stable_id("reissue", new.command_id),
        workspace_id=old.workspace_id,
        correlation_id=old.correlation_id,
        causation_id=old.command_id,
        policy_version=old.policy_version,
        recorded_at=recorded_at,
        payload=ReissuedPayload(
            command_id=new.command_id,
            reissued_from=old.command_id,
            action=old.action.value,
            priority=old.priority.value,
            rule_id=old.rule_id,
            error_class=error_class,
            dead_letter=dead_letter,
            by=by,
        ),
    )


def reissued_entry_of(raw: bytes, command: Command) -> ActionReissued | None:
    """The action.reissued entry a re-issued command carries, if it is one for this command."""
    try:
        entry = ActionReissued.model_validate_json(raw)
    except ValidationError:
        return None
    if entry.workspace_id != command.workspace_id or entry.payload.command_id != (
        command.command_id
    ):
        return None
    # Sealed by the chain's writer; whatever chain fields came with it are not trusted.
    return entry.model_copy(update={"prev_hash": None, "hash": None})


# Parking


def parked_entry(
    dead_letter: ActionDeadLettered,
    since: datetime,
    ttl_seconds: int,
    queued: int,
    recorded_at: datetime,
) -> WorkspaceParked:
    """workspace.parked: a command's dead letter parks its workspace (one entry per dead
    letter); the reason names the action, the error's class and the command, nothing more."""
    dead = dead_letter.payload
    error_class = dead.error.error_class
    return WorkspaceParked(
        entry_id=parking_id(dead.command_id),
        workspace_id=dead_letter.workspace_id,
        correlation_id=dead_letter.correlation_id,
        causation_id=dead_letter.entry_id,
        policy_version=dead_letter.policy_version,
        recorded_at=recorded_at,
        payload=ParkingPayload(
            reason=f"{dead.action} dead-lettered ({error_class}), command {dead.command_id}",
            dead_lettered=dead.command_id,
            action=dead.action,
            error_class=error_class,
            since=since,
            ttl_seconds=ttl_seconds,
            queued=queued,
        ),
    )


def run_parked_entry(
    request: ParkingRequest, since: datetime, ttl_seconds: int, queued: int, recorded_at: datetime
) -> WorkspaceParked:
    """workspace.parked: a playbook's failed run parks its workspace, the parking named by the
    failed step's command as a dead letter's is by its command."""
    return WorkspaceParked(
        entry_id=parking_id(request.command_id),
        workspace_id=request.workspace_id,
        correlation_id=request.run_id,
        causation_id=request.run_id,
        recorded_at=recorded_at,
        payload=ParkingPayload(
            reason=(
                # A step may lead to "fail" on success too (an escalation that was sent).
                f"playbook {request.playbook} failed after step {request.step}, "
                f"run {request.run_id}"
                if request.outcome == "succeeded"
                else f"playbook {request.playbook} failed at step {request.step} "
                f"({request.outcome}), run {request.run_id}"
            ),
            dead_lettered=request.command_id,
            action=request.action,
            error_class=request.outcome,
            since=since,
            ttl_seconds=ttl_seconds,
            queued=queued,
        ),
    )


def held_entry(
    command: Command, dead_lettered: str, position: int, recorded_at: datetime
) -> ActionParked:
    """action.parked: the command waits behind its workspace's parking, at this position."""
    return ActionParked(
        **_about(command, LedgerKind.ACTION_PARKED, recorded_at, command.attempt, dead_lettered),
        payload=HeldPayload(**_command(command), dead_lettered=dead_lettered, position=position),
    )


def released_entry(
    workspace_id: str,
    dead_lettered: str,
    parked_since: datetime,
    release: ParkingRelease | None,
    count: int,
    recorded_at: datetime,
) -> WorkspaceReleased:
    """workspace.released: an operator's release or drop (`release`), or the parking's TTL
    (None), ended the parking of `count` commands (one entry per parking: the parking is
    named by the command whose dead letter began it)."""
    parked = parking_id(dead_lettered)
    return WorkspaceReleased(
        entry_id=stable_id("release", workspace_id, dead_lettered),
        workspace_id=workspace_id,
        correlation_id=parked if release is None else release.request_id,
        causation_id=parked,
        recorded_at=recorded_at,
        payload=ReleasedPayload(
            dead_lettered=dead_lettered,
            parked_since=parked_since,
            by="ttl" if release is None else release.by or "operator",
            reason=None if release is None else release.reason,
            dropped=release is not None and release.drop,
            count=count,
        ),
    )


def parking_id(dead_lettered: str) -> str:
    """The id of the workspace.parked entry of a dead-lettered command."""
    return stable_id("park", dead_lettered)


def error_of(error: ActionError) -> ErrorSummary:
    """An error as the ledger and the dead-letter headers carry it: class, reason, retryable."""
    return ErrorSummary.model_validate(
        {
            "class": type(error).__name__,
            "reason": str(error)[:MAX_REASON_CHARS],
            "retryable": error.retryable,
        }
    )


# Breakers


def breaker_entry(
    provider: str, state: str, failures: int, worker: str, recorded_at: datetime
) -> BreakerChanged:
    """breaker.opened / half_opened / closed: a provider's circuit breaker changed state."""
    kinds: dict[str, BreakerKinds] = {
        "open": LedgerKind.BREAKER_OPENED,
        "half_open": LedgerKind.BREAKER_HALF_OPENED,
        "closed": LedgerKind.BREAKER_CLOSED,
    }
    kind = kinds[state]
    entry_id = stable_id("brk", worker, provider, kind.value, recorded_at.isoformat())
    return BreakerChanged(
        entry_id=entry_id,
        kind=kind,
        workspace_id=None,
        correlation_id=entry_id,
        causation_id=entry_id,
        recorded_at=recorded_at,
        payload=BreakerPayload(provider=provider, failures=failures, worker=worker),
    )


def _about(
    command: Command, kind: LedgerKind, recorded_at: datetime, *per_attempt: object
) -> dict[str, Any]:
    """The envelope of an entry about a command: its id (per attempt when `per_attempt` is
    given), its workspace, and the decision and signal it descends from."""
    return {
        "entry_id": stable_id("out", command.command_id, kind.value, *per_attempt),
        "workspace_id": command.workspace_id,
        "correlation_id": command.correlation_id,
        "causation_id": command.decision_id,
        "policy_version": command.policy_version,
        "recorded_at": recorded_at,
    }


def _command(command: Command) -> dict[str, Any]:
    return {
        "command_id": command.command_id,
        "action": command.action.value,
        "priority": command.priority.value,
        "rule_id": command.rule_id,
        "attempt": command.attempt,
    }
