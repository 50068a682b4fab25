"""The Command event: an action the policy asks an executor to carry out."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from topics.signals import EventId, WorkspaceId


class Priority(StrEnum):
    """Priority lanes; executors serve critical first."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Action(StrEnum):
    """What an executor can do to a workspace."""

    RUN_PROVISIONING = "run_provisioning"
    SEND_FOLLOWUP = "send_followup"
    RETRY_WEBHOOK = "retry_webhook"
    RESTART_INTEGRATION = "restart_integration"
    REBALANCE_QUEUE = "rebalance_queue"
    FORCE_PUBLISH = "force_publish"
    RETRY_FAILED = "retry_failed"
    TRIGGER_RECONCILIATION = "trigger_reconciliation"
    # Read-only checks through the control API, for playbooks (core/playbooks.py).
    VERIFY_HEALTH = "verify_health"
    CHECK_INTEGRATIONS = "check_integrations"
    # Compliance-tagged (finance): runs only once an operator approved it.
    ISSUE_CREDIT = "issue_credit"


# What a step acts on within its workspace (one item of a fan-out: an integration, ...).
Target = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]


class Command(BaseModel):
    """An instruction to act; command_id is derived from the decision and is the idempotency key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    command_id: EventId
    decision_id: EventId
    workspace_id: WorkspaceId
    action: Action
    priority: Priority
    rule_id: str
    policy_version: str
    signal_ids: tuple[EventId, ...] = Field(min_length=1)
    correlation_id: EventId
    not_before: AwareDatetime | None = None
    deadline: AwareDatetime | None = None
    attempt: int = Field(default=1, ge=1)
    dry_run: bool = False
    # A playbook's step: the run it belongs to (its outcome goes back to the run), and the item
    # of a fan-out it acts on.
    playbook_run: EventId | None = None
    target: Target | None = None
