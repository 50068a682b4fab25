"""The typed, bounded attributes of each signal type.

TypedDicts rather than models: a validated attribute set is a plain dict, so it serialises with
orjson as it is and travels on the hot path without conversion. Strict: a number is a JSON number,
never a numeric string, so that what we accept is exactly what the JSON Schema files promise.
"""

from __future__ import annotations

from typing import Annotated, Required

from pydantic import ConfigDict, Field, StringConstraints, with_config
from typing_extensions import TypedDict

MAX_TEXT_CHARS = 256

# Free text a producer may attach (a reason, an error message): bounded, never parsed.
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
# A name from the platform's own vocabulary: a queue, a component, a provider, a plan.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")]
# A reference to another object of the platform: a webhook, an integration, a contact.
Reference = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
Count = Annotated[int, Field(ge=0, le=1_000_000_000)]
Seconds = Annotated[float, Field(ge=0, le=10 * 365 * 86_400, allow_inf_nan=False)]

_ATTRIBUTES = ConfigDict(extra="forbid", strict=True)


@with_config(_ATTRIBUTES)
class HealthDegradedAttributes(TypedDict, total=False):
    """A service saw a workspace degrade; its own score is advisory, ours is derived."""

    health_score: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
    component: Name
    reason: Text


@with_config(_ATTRIBUTES)
class ProvisioningNeededAttributes(TypedDict, total=False):
    """A workspace lacks a resource it should have."""

    resource: Name
    plan: Name
    reason: Text


@with_config(_ATTRIBUTES)
class ProvisioningFailedAttributes(TypedDict, total=False):
    """A provisioning run of the workspace failed: which run, and why."""

    operation_id: Reference
    reason: Text


@with_config(_ATTRIBUTES)
class FollowupDueAttributes(TypedDict, total=False):
    """A follow-up with the workspace's contact is due (at the signal's event time)."""

    contact_id: Reference
    topic: Name
    reason: Text


@with_config(_ATTRIBUTES)
class WebhookFailedAttributes(TypedDict, total=False):
    """A webhook delivery to the workspace's endpoint failed."""

    webhook_id: Reference
    endpoint_id: Reference
    status: Annotated[int, Field(ge=100, le=599)]
    attempt: Annotated[int, Field(ge=1, le=1_000)]
    error: Text


@with_config(_ATTRIBUTES)
class IntegrationOfflineAttributes(TypedDict, total=False):
    """An integration of the workspace stopped answering."""

    integration_id: Reference
    provider: Name
    reason: Text


@with_config(_ATTRIBUTES)
class QueueDepthAttributes(TypedDict, total=False):
    """A gauge: how many jobs wait in the workspace's queue right now."""

    pending: Required[Count]
    queue: Name


@with_config(_ATTRIBUTES)
class OldestPendingAgeAttributes(TypedDict, total=False):
    """A gauge: how long the oldest waiting job has waited, in seconds."""

    age_seconds: Required[Seconds]
    queue: Name


@with_config(_ATTRIBUTES)
class PublishFailedAttributes(TypedDict, total=False):
    """Publishing or delivering something for the workspace failed once."""

    channel: Name
    error: Text


@with_config(_ATTRIBUTES)
class ErrorReportedAttributes(TypedDict, total=False):
    """A service recorded one error for the workspace."""

    component: Name
    error_class: Name
    message: Text


@with_config(_ATTRIBUTES)
class HeartbeatAttributes(TypedDict, total=False):
    """A component of the workspace is alive."""

    component: Name
    version: Name
