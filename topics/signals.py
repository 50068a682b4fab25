"""Signals: what a producing service says about a workspace, one frozen model per signal type.

`Signal` is the union of every type, told apart by `type`. Each type has its own typed, bounded
attributes (topics/signal_attributes.py) and a `schema_version`; the JSON Schema files in
topics/schemas/ are generated from these models (`autopilot schemas`) for non-Python producers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    TypeAdapter,
)

from topics.signal_attributes import (
    ErrorReportedAttributes,
    FollowupDueAttributes,
    HealthDegradedAttributes,
    HeartbeatAttributes,
    IntegrationOfflineAttributes,
    OldestPendingAgeAttributes,
    ProvisioningFailedAttributes,
    ProvisioningNeededAttributes,
    PublishFailedAttributes,
    QueueDepthAttributes,
    WebhookFailedAttributes,
)

# A workspace id is an opaque platform id, never free text: it becomes a Kafka key, a table key
# and a path segment in URLs, so only a safe alphabet and a bounded length are accepted.
WORKSPACE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
WorkspaceId = Annotated[str, StringConstraints(pattern=WORKSPACE_ID_PATTERN)]
# fullmatch without the anchors: `re.match` with `$` accepts a trailing newline, the model not.
_WORKSPACE_ID = re.compile(WORKSPACE_ID_PATTERN.removeprefix("^").removesuffix("$"))
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
SourceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]


def is_workspace_id(value: object) -> bool:
    """Whether a value is a valid workspace id (as the models accept it)."""
    return isinstance(value, str) and _WORKSPACE_ID.fullmatch(value) is not None


class SignalType(StrEnum):
    """Every signal type: the operator signals of the seed policy, then monitoring signals."""

    HEALTH_DEGRADED = "health_degraded"
    PROVISIONING_NEEDED = "provisioning_needed"
    PROVISIONING_FAILED = "provisioning_failed"
    FOLLOWUP_DUE = "followup_due"
    WEBHOOK_FAILED = "webhook_failed"
    INTEGRATION_OFFLINE = "integration_offline"
    QUEUE_DEPTH = "queue_depth"
    OLDEST_PENDING_AGE = "oldest_pending_age"
    PUBLISH_FAILED = "publish_failed"
    ERROR_REPORTED = "error_reported"
    HEARTBEAT = "heartbeat"


# Gauges report a level rather than an occurrence: the state keeps their latest reading.
GAUGE_ATTRIBUTE: dict[SignalType, str] = {
    SignalType.QUEUE_DEPTH: "pending",
    SignalType.OLDEST_PENDING_AGE: "age_seconds",
}


class _Envelope(BaseModel):
    """The fields every signal has; a concrete type adds `type` and its `attributes`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    id: EventId
    workspace_id: WorkspaceId
    occurred_at: AwareDatetime
    source: SourceName = "unknown"


class HealthDegraded(_Envelope):
    """A service saw the workspace's health degrade."""

    type: Literal[SignalType.HEALTH_DEGRADED]
    attributes: HealthDegradedAttributes = Field(default_factory=HealthDegradedAttributes)


class ProvisioningNeeded(_Envelope):
    """The workspace needs (re-)provisioning."""

    type: Literal[SignalType.PROVISIONING_NEEDED]
    attributes: ProvisioningNeededAttributes = Field(default_factory=ProvisioningNeededAttributes)


class ProvisioningFailed(_Envelope):
    """A provisioning run of the workspace failed."""

    type: Literal[SignalType.PROVISIONING_FAILED]
    attributes: ProvisioningFailedAttributes = Field(default_factory=ProvisioningFailedAttributes)


class FollowupDue(_Envelope):
    """A follow-up with the workspace is due."""

    type: Literal[SignalType.FOLLOWUP_DUE]
    attributes: FollowupDueAttributes = Field(default_factory=FollowupDueAttributes)


class WebhookFailed(_Envelope):
    """A webhook delivery for the workspace failed."""

    type: Literal[SignalType.WEBHOOK_FAILED]
    attributes: WebhookFailedAttributes = Field(default_factory=WebhookFailedAttributes)


class IntegrationOffline(_Envelope):
    """An integration of the workspace went offline."""

    type: Literal[SignalType.INTEGRATION_OFFLINE]
    attributes: IntegrationOfflineAttributes = Field(default_factory=IntegrationOfflineAttributes)


class QueueDepth(_Envelope):
    """The workspace's queue depth (pending jobs), a gauge."""

    type: Literal[SignalType.QUEUE_DEPTH]
    attributes: QueueDepthAttributes


class OldestPendingAge(_Envelope):
    """The age of the workspace's oldest pending job, a gauge."""

    type: Literal[SignalType.OLDEST_PENDING_AGE]
    attributes: OldestPendingAgeAttributes


class PublishFailed(_Envelope):
    """A publish or delivery for the workspace failed."""

    type: Literal[SignalType.PUBLISH_FAILED]
    attributes: PublishFailedAttributes = Field(default_factory=PublishFailedAttributes)


class ErrorReported(_Envelope):
    """An error was recorded for the workspace."""

    type: Literal[SignalType.ERROR_REPORTED]
    attributes: ErrorReportedAttributes = Field(default_factory=ErrorReportedAttributes)


class Heartbeat(_Envelope):
    """A component of the workspace reported that it is alive."""

    type: Literal[SignalType.HEARTBEAT]
    attributes: HeartbeatAttributes = Field(default_factory=HeartbeatAttributes)


Signal = Annotated[
    HealthDegraded
    | ProvisioningNeeded
    | ProvisioningFailed
    | FollowupDue
    | WebhookFailed
    | IntegrationOffline
    | QueueDepth
    | OldestPendingAge
    | PublishFailed
    | ErrorReported
    | Heartbeat,
    Discriminator("type"),
]

# Each type's model, read off the union: a new type is one enum member, one class, one line
# in the union.
SIGNAL_MODELS: dict[SignalType, type[_Envelope]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(Signal)[0])
}
if set(SIGNAL_MODELS) != set(SignalType):
    raise TypeError(f"signal types without a model: {sorted(set(SignalType) - set(SIGNAL_MODELS))}")

SIGNAL: TypeAdapter[Signal] = TypeAdapter(Signal)
SIGNALS: TypeAdapter[list[Signal]] = TypeAdapter(list[Signal])


def signal_from(fields: dict[str, Any]) -> Signal:
    """Validate one signal of any type from its fields (the JSON object's content)."""
    return SIGNAL.validate_python(fields)
