"""The `approvals` topic: an operator's verdict on a compliance-tagged command.

Keyed by workspace, so it reaches the shard whose executor parked the command; that executor
records `action.approved` (and runs the command) or `action.rejected`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from topics.control import OperatorName
from topics.signals import EventId, WorkspaceId


class Verdict(StrEnum):
    """An operator's answer to an approval request."""

    APPROVED = "approved"
    REJECTED = "rejected"


class ApprovalGiven(BaseModel):
    """An operator approved or rejected one command (by its id)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    request_id: EventId
    workspace_id: WorkspaceId
    command_id: EventId
    verdict: Verdict
    by: OperatorName | None = None
    reason: str | None = Field(default=None, max_length=256)
    given_at: AwareDatetime
