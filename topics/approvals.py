"""The `approvals` topic: operators' answers to commands that wait for them.

Keyed by workspace, so each reaches the shard whose executor holds the commands:
- `ApprovalGiven`: a verdict on a compliance-tagged command; the executor records
  `action.approved` (and runs the command) or `action.rejected`;
- `ParkingRelease`: the end of a workspace's parking (a dead letter parked it); the executor
  records `workspace.released` and runs the commands held behind it in order, or drops them;
- `ParkingRequest`: a playbook's run failed, so its workspace parks as a dead letter parks
  it; the shard's stage writes it in the transaction that records `playbook.failed`.
A record is one of these by its `kind` (`parse_approvals_record`): verdicts carry none, as
they did before parking existed, so every verdict ever written still reads.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

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


class ParkingRelease(BaseModel):
    """An operator ended a workspace's parking: its held commands run in order, or (`drop`)
    each ends as skipped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    kind: Literal["parking_release"] = "parking_release"
    request_id: EventId
    workspace_id: WorkspaceId
    drop: bool = False
    by: OperatorName | None = None
    reason: str | None = Field(default=None, max_length=256)
    requested_at: AwareDatetime


class ParkingRequest(BaseModel):
    """A playbook's run failed: park its workspace (its later commands wait for an operator).
    The parking is named by `command_id`, the failed step's command (the run's id when the
    step was a wait)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    kind: Literal["parking_request"] = "parking_request"
    workspace_id: WorkspaceId
    run_id: EventId
    playbook: str = Field(max_length=32)
    step: str = Field(max_length=32)
    # How the step ended (failed, timed_out) and what it ran (an action, or "wait").
    outcome: str = Field(max_length=32)
    action: str = Field(max_length=64)
    command_id: EventId
    requested_at: AwareDatetime


def _kind_of(value: Any) -> str:
    # Verdicts carry no kind (they predate parking).
    if isinstance(value, dict):
        return str(value.get("kind", "verdict"))
    return str(getattr(value, "kind", "verdict"))


ApprovalsRecord = Annotated[
    Annotated[ApprovalGiven, Tag("verdict")]
    | Annotated[ParkingRelease, Tag("parking_release")]
    | Annotated[ParkingRequest, Tag("parking_request")],
    Discriminator(_kind_of),
]
APPROVALS_RECORD: TypeAdapter[ApprovalGiven | ParkingRelease | ParkingRequest] = TypeAdapter(
    ApprovalsRecord
)


def parse_approvals_record(raw: str | bytes) -> ApprovalGiven | ParkingRelease | ParkingRequest:
    """The verdict, release or parking request a record of the approvals topic holds;
    pydantic's ValidationError when it holds none of them."""
    return APPROVALS_RECORD.validate_json(raw)
