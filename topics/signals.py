"""The Signal event: what a producing service says about a workspace."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

# A workspace id is an opaque platform id, never free text: it becomes a Kafka key, a table key
# and a path segment in URLs, so only a safe alphabet and a bounded length are accepted.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
WorkspaceId = Annotated[str, StringConstraints(pattern=WORKSPACE_ID_PATTERN)]
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
SourceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]
AttributeKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
MAX_ATTRIBUTE_CHARS = 256


def _one_attribute_error(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # A union reports one error per member; a producer needs one sentence.
    try:
        return handler(value)
    except ValidationError as exc:
        raise PydanticCustomError(
            "attribute_value",
            "must be a string of at most {limit} characters, a number, a boolean or null",
            {"limit": MAX_ATTRIBUTE_CHARS},
        ) from exc


AttributeValue = Annotated[
    Annotated[str, StringConstraints(max_length=MAX_ATTRIBUTE_CHARS)] | int | float | bool | None,
    WrapValidator(_one_attribute_error),
]

MAX_ATTRIBUTES = 16


class SignalType(StrEnum):
    """The signal types the seed policy knows (shared/DESIGN.md)."""

    HEALTH_DEGRADED = "health_degraded"
    PROVISIONING_NEEDED = "provisioning_needed"
    FOLLOWUP_DUE = "followup_due"
    WEBHOOK_FAILED = "webhook_failed"
    INTEGRATION_OFFLINE = "integration_offline"


class Signal(BaseModel):
    """One observation about one workspace, at an event time given by its producer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    id: EventId
    workspace_id: WorkspaceId
    type: SignalType
    occurred_at: AwareDatetime
    source: SourceName = "unknown"
    attributes: Annotated[dict[AttributeKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES)] = (
        Field(default_factory=dict)
    )
