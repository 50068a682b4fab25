"""The eleven signal types: one frozen model each, told apart by `type`, with typed, bounded and
strict attributes (a number is a JSON number, never a numeric string or a boolean)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from topics.signals import (
    GAUGE_ATTRIBUTE,
    SIGNAL,
    SIGNAL_MODELS,
    ErrorReported,
    FollowupDue,
    HealthDegraded,
    Heartbeat,
    IntegrationOffline,
    OldestPendingAge,
    ProvisioningFailed,
    ProvisioningNeeded,
    PublishFailed,
    QueueDepth,
    SignalType,
    WebhookFailed,
    signal_from,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)

# A full, valid example of each type: every attribute it knows, set.
EXAMPLES: dict[SignalType, dict[str, Any]] = {
    SignalType.HEALTH_DEGRADED: {
        "health_score": 42.5,
        "component": "api",
        "reason": "p95 latency over budget",
    },
    SignalType.PROVISIONING_NEEDED: {"resource": "database", "plan": "pro", "reason": "upgrade"},
    SignalType.PROVISIONING_FAILED: {"operation_id": "op-81", "reason": "quota exceeded"},
    SignalType.FOLLOWUP_DUE: {"contact_id": "contact-42", "topic": "renewal", "reason": "trial"},
    SignalType.WEBHOOK_FAILED: {
        "webhook_id": "wh-1",
        "endpoint_id": "ep-9",
        "status": 503,
        "attempt": 3,
        "error": "upstream timed out",
    },
    SignalType.INTEGRATION_OFFLINE: {
        "integration_id": "int-7",
        "provider": "salesforce",
        "reason": "token expired",
    },
    SignalType.QUEUE_DEPTH: {"pending": 51, "queue": "emails"},
    SignalType.OLDEST_PENDING_AGE: {"age_seconds": 1801.5, "queue": "emails"},
    SignalType.PUBLISH_FAILED: {"channel": "email", "error": "smtp 451"},
    SignalType.ERROR_REPORTED: {
        "component": "api",
        "error_class": "TimeoutError",
        "message": "read timed out",
    },
    SignalType.HEARTBEAT: {"component": "agent", "version": "1.4.2"},
}

MODELS = {
    SignalType.HEALTH_DEGRADED: HealthDegraded,
    SignalType.PROVISIONING_NEEDED: ProvisioningNeeded,
    SignalType.PROVISIONING_FAILED: ProvisioningFailed,
    SignalType.FOLLOWUP_DUE: FollowupDue,
    SignalType.WEBHOOK_FAILED: WebhookFailed,
    SignalType.INTEGRATION_OFFLINE: IntegrationOffline,
    SignalType.QUEUE_DEPTH: QueueDepth,
    SignalType.OLDEST_PENDING_AGE: OldestPendingAge,
    SignalType.PUBLISH_FAILED: PublishFailed,
    SignalType.ERROR_REPORTED: ErrorReported,
    SignalType.HEARTBEAT: Heartbeat,
}

ALL_TYPES = list(SignalType)
NON_GAUGES = [t for t in SignalType if t not in GAUGE_ATTRIBUTE]


def fields(signal_type: SignalType | str, **overrides: Any) -> dict[str, Any]:
    """A signal's fields as a producer would send them; `attributes` default to the example."""
    base: dict[str, Any] = {
        "id": "sig-1",
        "workspace_id": "ws-000001",
        "type": str(signal_type),
        "occurred_at": "2024-01-01T00:00:00Z",
        "source": "monitor",
    }
    if signal_type in EXAMPLES:
        base["attributes"] = EXAMPLES[SignalType(signal_type)]
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not ...}


def refusal(value: dict[str, Any]) -> list[tuple[str, str]]:
    """Where and why validation refused the fields: (dotted location, pydantic error type)."""
    with pytest.raises(ValidationError) as raised:
        signal_from(value)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in raised.value.errors()]


# --- accepted ---------------------------------------------------------------------------------


def test_there_are_eleven_signal_types_each_with_its_own_model() -> None:
    """Given the signal types, then there are eleven and each maps to the model that carries it."""
    assert [t.value for t in SignalType] == [
        "health_degraded",
        "provisioning_needed",
        "provisioning_failed",
        "followup_due",
        "webhook_failed",
        "integration_offline",
        "queue_depth",
        "oldest_pending_age",
        "publish_failed",
        "error_reported",
        "heartbeat",
    ]
    assert SIGNAL_MODELS == MODELS


@pytest.mark.parametrize("signal_type", ALL_TYPES)
def test_each_type_accepts_a_full_example_as_its_own_model(signal_type: SignalType) -> None:
    """Given a valid example of a type with every attribute set, when validated, then it is
    an instance of that type's model with every field and attribute kept, schema version 1."""
    signal = signal_from(fields(signal_type))

    assert type(signal) is MODELS[signal_type]
    assert signal.type is signal_type
    assert signal.id == "sig-1"
    assert signal.workspace_id == "ws-000001"
    assert signal.occurred_at == T0
    assert signal.source == "monitor"
    assert signal.attributes == EXAMPLES[signal_type]
    assert signal.schema_version == 1


@pytest.mark.parametrize("signal_type", ALL_TYPES)
def test_each_type_survives_a_json_round_trip(signal_type: SignalType) -> None:
    """Given a valid signal, when written as JSON and read back, then it is the same signal
    (what a producer writes is what a worker reads)."""
    signal = signal_from(fields(signal_type))

    assert SIGNAL.validate_json(SIGNAL.dump_json(signal)) == signal


@pytest.mark.parametrize("signal_type", NON_GAUGES)
def test_a_non_gauge_signal_needs_no_attributes(signal_type: SignalType) -> None:
    """Given only the required envelope fields of a non-gauge type, then its attributes are
    empty, its source is "unknown" and its schema version is 1."""
    signal = signal_from(fields(signal_type, attributes=..., source=...))

    assert signal.attributes == {}
    assert signal.source == "unknown"
    assert signal.schema_version == 1


def test_a_signal_can_be_built_from_its_concrete_class() -> None:
    """Given the concrete model of a type, then it builds the same signal signal_from does."""
    built = QueueDepth(
        id="sig-1",
        workspace_id="ws-000001",
        type=SignalType.QUEUE_DEPTH,
        occurred_at=T0,
        source="monitor",
        attributes={"pending": 51, "queue": "emails"},
    )

    assert built == signal_from(fields(SignalType.QUEUE_DEPTH))


def test_a_concrete_class_refuses_another_types_tag() -> None:
    """Given QueueDepth built with type heartbeat, then it is refused on `type`."""
    with pytest.raises(ValidationError) as raised:
        QueueDepth(
            id="sig-1",
            workspace_id="ws-1",
            type=SignalType.HEARTBEAT,  # type: ignore[arg-type]
            occurred_at=T0,
            attributes={"pending": 1},
        )

    assert [(e["loc"], e["type"]) for e in raised.value.errors()] == [(("type",), "literal_error")]


def test_a_signal_is_immutable() -> None:
    """Given a signal, when a field is assigned, then it is refused and the signal unchanged."""
    signal = signal_from(fields(SignalType.HEARTBEAT))

    with pytest.raises(ValidationError):
        signal.workspace_id = "ws-other"  # type: ignore[misc]
    assert signal.workspace_id == "ws-000001"


@pytest.mark.parametrize(
    ("signal_type", "attributes"),
    [
        (SignalType.HEALTH_DEGRADED, {"health_score": 0}),
        (SignalType.HEALTH_DEGRADED, {"health_score": 100}),
        (SignalType.WEBHOOK_FAILED, {"status": 100, "attempt": 1}),
        (SignalType.WEBHOOK_FAILED, {"status": 599, "attempt": 1000}),
        (SignalType.QUEUE_DEPTH, {"pending": 0}),
        (SignalType.QUEUE_DEPTH, {"pending": 1_000_000_000}),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": 0}),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": 10 * 365 * 86_400}),
        (SignalType.ERROR_REPORTED, {"message": "m" * 256}),
        (SignalType.HEARTBEAT, {"component": "c" * 64}),
        (SignalType.FOLLOWUP_DUE, {"contact_id": "c" * 128}),
    ],
    ids=[
        "score-0",
        "score-100",
        "status-100-attempt-1",
        "status-599-attempt-1000",
        "pending-0",
        "pending-1e9",
        "age-0",
        "age-10-years",
        "text-256",
        "name-64",
        "reference-128",
    ],
)
def test_attributes_at_their_bounds_are_accepted(
    signal_type: SignalType, attributes: dict[str, Any]
) -> None:
    """Given an attribute exactly at its limit, then the signal is accepted with it."""
    signal = signal_from(fields(signal_type, attributes=attributes))

    assert signal.attributes == attributes


def test_an_integer_is_accepted_where_seconds_are_a_float() -> None:
    """Given age_seconds as a JSON integer, then it is accepted (a number is a number)."""
    signal = signal_from(fields(SignalType.OLDEST_PENDING_AGE, attributes={"age_seconds": 60}))

    assert signal.attributes == {"age_seconds": 60.0}


# --- refused: attributes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal_type", "attributes", "error"),
    [
        (SignalType.HEALTH_DEGRADED, {"health_score": "42"}, "float_type"),
        (SignalType.HEALTH_DEGRADED, {"health_score": True}, "float_type"),
        (SignalType.HEALTH_DEGRADED, {"component": 7}, "string_type"),
        (SignalType.PROVISIONING_NEEDED, {"plan": ["pro"]}, "string_type"),
        (SignalType.FOLLOWUP_DUE, {"contact_id": 42}, "string_type"),
        (SignalType.WEBHOOK_FAILED, {"status": "503"}, "int_type"),
        (SignalType.WEBHOOK_FAILED, {"status": True}, "int_type"),
        (SignalType.WEBHOOK_FAILED, {"status": 503.0}, "int_type"),
        (SignalType.WEBHOOK_FAILED, {"attempt": "1"}, "int_type"),
        (SignalType.INTEGRATION_OFFLINE, {"reason": None}, "string_type"),
        (SignalType.QUEUE_DEPTH, {"pending": "51"}, "int_type"),
        (SignalType.QUEUE_DEPTH, {"pending": True}, "int_type"),
        (SignalType.QUEUE_DEPTH, {"pending": 51.0}, "int_type"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": "1801"}, "float_type"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": False}, "float_type"),
        (SignalType.PUBLISH_FAILED, {"error": {"code": 451}}, "string_type"),
        (SignalType.ERROR_REPORTED, {"message": 3}, "string_type"),
        (SignalType.HEARTBEAT, {"version": 1.4}, "string_type"),
    ],
    ids=[
        "score-numeric-string",
        "score-boolean",
        "component-number",
        "plan-list",
        "contact-number",
        "status-numeric-string",
        "status-boolean",
        "status-float",
        "attempt-numeric-string",
        "reason-null",
        "pending-numeric-string",
        "pending-boolean",
        "pending-float",
        "age-numeric-string",
        "age-boolean",
        "error-object",
        "message-number",
        "version-number",
    ],
)
def test_an_attribute_of_the_wrong_type_is_refused(
    signal_type: SignalType, attributes: dict[str, Any], error: str
) -> None:
    """Given an attribute of the wrong JSON type (strict: no numeric strings, no booleans for
    numbers), then the signal is refused at exactly that attribute."""
    value = fields(signal_type, attributes={**EXAMPLES[signal_type], **attributes})
    [key] = attributes

    assert refusal(value) == [(f"{signal_type}.attributes.{key}", error)]


@pytest.mark.parametrize(
    ("signal_type", "attributes", "error"),
    [
        (SignalType.HEALTH_DEGRADED, {"health_score": -0.5}, "greater_than_equal"),
        (SignalType.HEALTH_DEGRADED, {"health_score": 100.5}, "less_than_equal"),
        (SignalType.WEBHOOK_FAILED, {"status": 99}, "greater_than_equal"),
        (SignalType.WEBHOOK_FAILED, {"status": 600}, "less_than_equal"),
        (SignalType.WEBHOOK_FAILED, {"attempt": 0}, "greater_than_equal"),
        (SignalType.WEBHOOK_FAILED, {"attempt": 1001}, "less_than_equal"),
        (SignalType.QUEUE_DEPTH, {"pending": -1}, "greater_than_equal"),
        (SignalType.QUEUE_DEPTH, {"pending": 1_000_000_001}, "less_than_equal"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": -1}, "greater_than_equal"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": 10 * 365 * 86_400 + 1}, "less_than_equal"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": float("inf")}, "finite_number"),
        (SignalType.OLDEST_PENDING_AGE, {"age_seconds": float("nan")}, "finite_number"),
    ],
    ids=[
        "score-below-0",
        "score-above-100",
        "status-99",
        "status-600",
        "attempt-0",
        "attempt-1001",
        "pending-negative",
        "pending-over-1e9",
        "age-negative",
        "age-over-10-years",
        "age-infinite",
        "age-nan",
    ],
)
def test_a_number_out_of_its_range_is_refused(
    signal_type: SignalType, attributes: dict[str, Any], error: str
) -> None:
    """Given a numeric attribute one step past its bound, then it is refused there."""
    value = fields(signal_type, attributes={**EXAMPLES[signal_type], **attributes})
    [key] = attributes

    assert refusal(value) == [(f"{signal_type}.attributes.{key}", error)]


@pytest.mark.parametrize("signal_type", ALL_TYPES)
def test_an_unknown_attribute_key_is_refused(signal_type: SignalType) -> None:
    """Given a valid example plus an attribute its type does not define, then it is refused
    naming that key (attributes are closed per type)."""
    value = fields(signal_type, attributes={**EXAMPLES[signal_type], "note": "hello"})

    assert refusal(value) == [(f"{signal_type}.attributes.note", "extra_forbidden")]


def test_another_types_attribute_is_refused() -> None:
    """Given a heartbeat carrying a queue depth's `pending`, then it is refused: an attribute
    belongs to its type."""
    value = fields(SignalType.HEARTBEAT, attributes={"pending": 3})

    assert refusal(value) == [("heartbeat.attributes.pending", "extra_forbidden")]


TEXT_ATTRIBUTES = [
    (SignalType.HEALTH_DEGRADED, "reason"),
    (SignalType.PROVISIONING_NEEDED, "reason"),
    (SignalType.PROVISIONING_FAILED, "reason"),
    (SignalType.FOLLOWUP_DUE, "reason"),
    (SignalType.WEBHOOK_FAILED, "error"),
    (SignalType.INTEGRATION_OFFLINE, "reason"),
    (SignalType.PUBLISH_FAILED, "error"),
    (SignalType.ERROR_REPORTED, "message"),
]


@pytest.mark.parametrize(("signal_type", "key"), TEXT_ATTRIBUTES)
def test_free_text_over_256_characters_is_refused(signal_type: SignalType, key: str) -> None:
    """Given a free-text attribute of 257 characters, then it is refused (256 is the limit)."""
    value = fields(signal_type, attributes={key: "x" * 257})

    assert refusal(value) == [(f"{signal_type}.attributes.{key}", "string_too_long")]


NAME_ATTRIBUTES = [
    (SignalType.HEALTH_DEGRADED, "component"),
    (SignalType.PROVISIONING_NEEDED, "resource"),
    (SignalType.PROVISIONING_NEEDED, "plan"),
    (SignalType.FOLLOWUP_DUE, "topic"),
    (SignalType.INTEGRATION_OFFLINE, "provider"),
    (SignalType.QUEUE_DEPTH, "queue"),
    (SignalType.OLDEST_PENDING_AGE, "queue"),
    (SignalType.PUBLISH_FAILED, "channel"),
    (SignalType.ERROR_REPORTED, "component"),
    (SignalType.ERROR_REPORTED, "error_class"),
    (SignalType.HEARTBEAT, "component"),
    (SignalType.HEARTBEAT, "version"),
]


@pytest.mark.parametrize(("signal_type", "key"), NAME_ATTRIBUTES)
@pytest.mark.parametrize("name", ["n" * 65, "has space", "-leading-dash", ""])
def test_a_name_that_is_too_long_or_free_text_is_refused(
    signal_type: SignalType, key: str, name: str
) -> None:
    """Given a name attribute (a queue, component, provider...) longer than 64 characters or
    outside the name alphabet, then it is refused."""
    value = fields(signal_type, attributes={**EXAMPLES[signal_type], key: name})

    assert refusal(value) == [(f"{signal_type}.attributes.{key}", "string_pattern_mismatch")]


@pytest.mark.parametrize(
    ("signal_type", "key"),
    [
        (SignalType.PROVISIONING_FAILED, "operation_id"),
        (SignalType.FOLLOWUP_DUE, "contact_id"),
        (SignalType.WEBHOOK_FAILED, "webhook_id"),
        (SignalType.WEBHOOK_FAILED, "endpoint_id"),
        (SignalType.INTEGRATION_OFFLINE, "integration_id"),
    ],
)
def test_a_reference_over_128_characters_is_refused(signal_type: SignalType, key: str) -> None:
    """Given a reference to another object 129 characters long, then it is refused."""
    value = fields(signal_type, attributes={key: "r" * 129})

    assert refusal(value) == [(f"{signal_type}.attributes.{key}", "string_pattern_mismatch")]


@pytest.mark.parametrize(
    ("signal_type", "key"),
    [(SignalType.QUEUE_DEPTH, "pending"), (SignalType.OLDEST_PENDING_AGE, "age_seconds")],
)
def test_a_gauge_without_its_value_is_refused(signal_type: SignalType, key: str) -> None:
    """Given a gauge signal whose attributes lack its reading, or that has no attributes at
    all, then it is refused: a gauge without a value says nothing."""
    assert GAUGE_ATTRIBUTE[signal_type] == key
    assert refusal(fields(signal_type, attributes={"queue": "emails"})) == [
        (f"{signal_type}.attributes.{key}", "missing")
    ]
    assert refusal(fields(signal_type, attributes=...)) == [
        (f"{signal_type}.attributes", "missing")
    ]


@pytest.mark.parametrize("signal_type", ALL_TYPES)
@pytest.mark.parametrize("attributes", [None, [], "pending=3"], ids=["null", "list", "string"])
def test_attributes_that_are_not_an_object_are_refused(
    signal_type: SignalType, attributes: Any
) -> None:
    """Given attributes that are not a JSON object, then the signal is refused there."""
    [(location, _)] = refusal(fields(signal_type, attributes=attributes))

    assert location == f"{signal_type}.attributes"


# --- refused: envelope ------------------------------------------------------------------------


@pytest.mark.parametrize("signal_type", ALL_TYPES)
@pytest.mark.parametrize(
    ("override", "location", "error"),
    [
        ({"workspace_id": "../etc"}, "workspace_id", "string_pattern_mismatch"),
        ({"workspace_id": "ws 1"}, "workspace_id", "string_pattern_mismatch"),
        ({"workspace_id": "a" * 65}, "workspace_id", "string_pattern_mismatch"),
        ({"workspace_id": ""}, "workspace_id", "string_pattern_mismatch"),
        ({"workspace_id": 7}, "workspace_id", "string_type"),
        ({"workspace_id": ...}, "workspace_id", "missing"),
        ({"occurred_at": "2024-01-01T00:00:00"}, "occurred_at", "timezone_aware"),
        ({"occurred_at": datetime(2024, 1, 1)}, "occurred_at", "timezone_aware"),
        ({"occurred_at": "soon"}, "occurred_at", "datetime_from_date_parsing"),
        ({"id": "has space"}, "id", "string_pattern_mismatch"),
        ({"source": "evil source!"}, "source", "string_pattern_mismatch"),
        ({"schema_version": 2}, "schema_version", "literal_error"),
        ({"role": "admin"}, "role", "extra_forbidden"),
    ],
    ids=[
        "ws-path",
        "ws-space",
        "ws-65-chars",
        "ws-empty",
        "ws-number",
        "ws-missing",
        "naive-string",
        "naive-datetime",
        "not-a-time",
        "bad-id",
        "bad-source",
        "schema-version-2",
        "extra-field",
    ],
)
def test_a_bad_envelope_field_is_refused_for_every_type(
    signal_type: SignalType, override: dict[str, Any], location: str, error: str
) -> None:
    """Given an otherwise valid signal of any type with one bad envelope field, then it is
    refused at that field."""
    assert refusal(fields(signal_type, **override)) == [(f"{signal_type}.{location}", error)]


@pytest.mark.parametrize("signal_type", ALL_TYPES)
def test_a_64_character_workspace_id_is_accepted(signal_type: SignalType) -> None:
    """Given a workspace id at the length limit, then the signal is accepted."""
    assert signal_from(fields(signal_type, workspace_id="a" * 64)).workspace_id == "a" * 64


@pytest.mark.parametrize(
    ("signal_type", "error"),
    [
        ("drop_tables", "union_tag_invalid"),
        ("QUEUE_DEPTH", "union_tag_invalid"),
        ("heartbeat ", "union_tag_invalid"),
        ("", "union_tag_invalid"),
        (..., "union_tag_not_found"),
    ],
    ids=["unknown", "wrong-case", "trailing-space", "empty", "missing"],
)
def test_an_unknown_or_missing_type_is_refused(signal_type: Any, error: str) -> None:
    """Given a type that is not one of the eleven (or none), then the signal is refused as a
    whole: without a known type there is no model to check it against."""
    value = fields(SignalType.HEARTBEAT, type=signal_type)

    assert refusal(value) == [("", error)]
