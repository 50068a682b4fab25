"""The Command event: an action the policy asks an executor to carry out."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    # Compliance-tagged (finance): runs only once an operator approved it.
    ISSUE_CREDIT = "issue_credit"


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
