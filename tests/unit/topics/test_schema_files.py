"""The signals' JSON Schema files: committed as generated, and agreeing with what Autopilot accepts.

"Autopilot accepts" is the codec's verdict on the record (topics/codec.decode_signals): pydantic's
`SIGNAL.validate_python` on the parsed JSON, after deriving an omitted `id`. The schemas are
checked as a validator sees them by default in draft 2020-12: `format` is an annotation only.
Where the two verdicts must differ, the case is in KNOWN_DIFFERENCES with both verdicts spelled
out (docs/signals.md, "Signal schemas", lists the same cases for producers).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from core.codec import decode_signals
from topics import schema_files
from topics.limits import MAX_BATCH_SIGNALS
from topics.schema_files import BATCH_FILE, SCHEMA_DIR, SIGNAL_FILE
from topics.signals import SIGNAL_MODELS, SignalType

REPO = Path(__file__).resolve().parents[3]
GENERATED = schema_files.rendered()
FIX = "run `autopilot schemas` (python -m app schemas) and commit topics/schemas/"

# Every attribute of every type with a valid value: the cases below are derived from these.
FULL_ATTRIBUTES: dict[SignalType, dict[str, Any]] = {
    SignalType.HEALTH_DEGRADED: {"health_score": 42.5, "component": "api", "reason": "p99 up"},
    SignalType.PROVISIONING_NEEDED: {"resource": "db", "plan": "pro", "reason": "new seat"},
    SignalType.PROVISIONING_FAILED: {"operation_id": "op-81", "reason": "quota exceeded"},
    SignalType.FOLLOWUP_DUE: {"contact_id": "c-17", "topic": "renewal", "reason": "trial ends"},
    SignalType.WEBHOOK_FAILED: {
        "webhook_id": "wh-1",
        "endpoint_id": "ep-9",
        "status": 503,
        "attempt": 2,
        "error": "upstream timeout",
    },
    SignalType.INTEGRATION_OFFLINE: {"integration_id": "int-3", "provider": "slack", "reason": "x"},
    SignalType.QUEUE_DEPTH: {"pending": 1200, "queue": "default"},
    SignalType.OLDEST_PENDING_AGE: {"age_seconds": 93.5, "queue": "default"},
    SignalType.PUBLISH_FAILED: {"channel": "email", "error": "mailbox full"},
    SignalType.ERROR_REPORTED: {"component": "api", "error_class": "KeyError", "message": "'k'"},
    SignalType.HEARTBEAT: {"component": "worker", "version": "1.4.2"},
}
# The gauges cannot omit their reading; every other type may omit its attributes.
REQUIRED_ATTRIBUTES: dict[SignalType, dict[str, Any]] = {
    SignalType.QUEUE_DEPTH: {"pending": 0},
    SignalType.OLDEST_PENDING_AGE: {"age_seconds": 0},
}


def signal(signal_type: str = "heartbeat", **changes: Any) -> dict[str, Any]:
    """A minimal valid signal as a producer writes it (no id); a change of `...` drops the key."""
    fields: dict[str, Any] = {
        "workspace_id": "ws-acme",
        "type": signal_type,
        "occurred_at": "2024-01-01T00:00:00Z",
    }
    if signal_type in REQUIRED_ATTRIBUTES:
        fields["attributes"] = REQUIRED_ATTRIBUTES[SignalType(signal_type)]
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not ...}


def full(signal_type: SignalType, **attribute_changes: Any) -> dict[str, Any]:
    """A signal with every field and every attribute of its type set."""
    return signal(
        signal_type.value,
        schema_version=1,
        id="billing-api:81723",
        source="billing-api",
        attributes={**FULL_ATTRIBUTES[signal_type], **attribute_changes},
    )


def wrong_json_type(value: Any) -> Any:
    """A string for a number attribute (a numeric one: attributes are strict), else a number."""
    return str(value) if isinstance(value, int | float) else 7


def cases_for_each_type() -> list[Any]:
    cases = []
    for signal_type in SignalType:
        name = signal_type.value
        cases += [
            pytest.param(signal(name), True, id=f"{name}-minimal"),
            pytest.param(full(signal_type), True, id=f"{name}-every-field"),
            pytest.param(full(signal_type, unknown=1), False, id=f"{name}-unknown-attribute"),
            pytest.param(signal(name, attributes=None), False, id=f"{name}-attributes-null"),
            pytest.param(signal(name, schema_version=2), False, id=f"{name}-schema-version-2"),
        ]
        cases += [
            pytest.param(
                full(signal_type, **{key: wrong_json_type(value)}),
                False,
                id=f"{name}-{key}-wrong-json-type",
            )
            for key, value in FULL_ATTRIBUTES[signal_type].items()
        ]
    return cases


LONG = "🙂" * 256  # 256 code points: both sides count characters, not UTF-8 bytes

AGREED = [
    *cases_for_each_type(),
    pytest.param(
        {"workspace_id": "ws-acme", "type": "followup_due", "occurred_at": "2026-11-21T10:00:00Z"},
        True,
        id="readme-example",
    ),
    pytest.param(signal(occurred_at="2024-01-01T01:00:00.123456+01:00"), True, id="offset"),
    pytest.param(signal(occurred_at="2024-01-01t00:00:00z"), True, id="lowercase-t-and-z"),
    pytest.param(signal(occurred_at="2024-02-29T00:00:00-00:00"), True, id="leap-day"),
    pytest.param(signal(workspace_id="w" * 64), True, id="workspace-id-64-chars"),
    pytest.param(signal("error_reported", attributes={"message": LONG}), True, id="text-256"),
    pytest.param(signal("oldest_pending_age", attributes={"age_seconds": 3}), True, id="int-float"),
    pytest.param(signal("queue_depth", attributes={"pending": 10**9}), True, id="pending-max"),
    pytest.param(signal("health_degraded", attributes={"health_score": 100}), True, id="score-100"),
    # Refused by both.
    pytest.param(signal("health_improved"), False, id="unknown-type"),
    pytest.param(signal(type=...), False, id="type-missing"),
    pytest.param(signal(type=7), False, id="type-not-a-string"),
    pytest.param(signal(workspace_id=...), False, id="workspace-id-missing"),
    pytest.param(signal(occurred_at=...), False, id="occurred-at-missing"),
    pytest.param(signal("queue_depth", attributes=...), False, id="gauge-attributes-missing"),
    pytest.param(
        signal("queue_depth", attributes={"queue": "q"}), False, id="gauge-reading-missing"
    ),
    pytest.param(signal(priority="high"), False, id="unknown-envelope-field"),
    pytest.param(signal(schema_version="1"), False, id="schema-version-string"),
    pytest.param(signal(id=""), False, id="empty-id"),
    pytest.param(signal(id="a b"), False, id="id-with-space"),
    pytest.param(signal(source="billing api"), False, id="source-with-space"),
    pytest.param(signal(source=None), False, id="source-null"),
    pytest.param(signal(workspace_id=""), False, id="workspace-id-empty"),
    pytest.param(signal(workspace_id="-acme"), False, id="workspace-id-leading-dash"),
    pytest.param(signal(workspace_id="ws acme"), False, id="workspace-id-space"),
    pytest.param(signal(workspace_id="ws/acme"), False, id="workspace-id-slash"),
    pytest.param(signal(workspace_id="wś-acme"), False, id="workspace-id-not-ascii"),
    pytest.param(signal(workspace_id="w" * 65), False, id="workspace-id-65-chars"),
    pytest.param(signal(workspace_id=17), False, id="workspace-id-number"),
    pytest.param(signal(occurred_at="2024-01-01T00:00:00"), False, id="naive-datetime"),
    pytest.param(signal(occurred_at="2024-01-01"), False, id="date-only"),
    pytest.param(signal(occurred_at="2024-13-01T00:00:00Z"), False, id="month-13"),
    pytest.param(signal(occurred_at="2024-01-01T24:00:00Z"), False, id="hour-24"),
    pytest.param(signal(occurred_at="2016-12-31T23:59:60Z"), False, id="leap-second"),
    pytest.param(signal(occurred_at="0000-01-01T00:00:00Z"), False, id="year-0"),
    pytest.param(signal(occurred_at="2024-01-01T00:00:00+24:00"), False, id="offset-24h"),
    pytest.param(
        signal("error_reported", attributes={"message": LONG + "!"}), False, id="text-257"
    ),
    pytest.param(signal("health_degraded", attributes={"health_score": 100.5}), False, id="score"),
    pytest.param(signal("webhook_failed", attributes={"status": 99}), False, id="status-99"),
    pytest.param(signal("webhook_failed", attributes={"status": 600}), False, id="status-600"),
    pytest.param(signal("webhook_failed", attributes={"attempt": 0}), False, id="attempt-0"),
    pytest.param(signal("webhook_failed", attributes={"status": True}), False, id="status-bool"),
    pytest.param(signal("queue_depth", attributes={"pending": -1}), False, id="pending-negative"),
    pytest.param(signal("queue_depth", attributes={"pending": 10**9 + 1}), False, id="pending-big"),
    pytest.param(signal("oldest_pending_age", attributes={"age_seconds": -1}), False, id="age-neg"),
]

# (schema's verdict, Autopilot's verdict) where they must differ. Schema yes, Autopilot no:
# a producer passing the schema can still be refused, so these are the ones to know.
KNOWN_DIFFERENCES = [
    # JSON Schema's "integer" is a number with no fraction, so 3.0 is one; the attributes are
    # strict and refuse a float. No keyword can tell `3.0` from `3` once parsed.
    pytest.param(signal("queue_depth", attributes={"pending": 3.0}), (True, False), id="3.0"),
    # The pattern checks each field's range, not the calendar; a validator that asserts
    # `format: date-time` refuses this one too.
    pytest.param(signal(occurred_at="2023-02-29T00:00:00Z"), (True, False), id="feb-29-2023"),
    # Python's `re` (which the jsonschema package uses, like Java's java.util.regex) lets `$`
    # match before a final newline; ECMA-262, the dialect JSON Schema names, does not.
    pytest.param(signal(workspace_id="ws-acme\n"), (True, False), id="trailing-newline"),
    # Schema no, Autopilot yes: pydantic parses more forms of a datetime and of the version.
    pytest.param(signal(occurred_at=1704067200), (False, True), id="epoch-seconds"),
    pytest.param(signal(occurred_at="1704067200"), (False, True), id="epoch-seconds-string"),
    pytest.param(signal(occurred_at="2024-01-01 00:00:00Z"), (False, True), id="space-not-t"),
    pytest.param(signal(occurred_at="2024-01-01T00:00Z"), (False, True), id="no-seconds"),
    pytest.param(signal(occurred_at="2024-01-01T00:00:00+0100"), (False, True), id="offset-+0100"),
    pytest.param(signal(schema_version=True), (False, True), id="schema-version-true"),
]


def committed(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))


SIGNAL_VALIDATOR = Draft202012Validator(committed(SIGNAL_FILE))
BATCH_VALIDATOR = Draft202012Validator(committed(BATCH_FILE))
TYPE_VALIDATORS = {
    signal_type.value: Draft202012Validator(committed(schema_files.file_name(signal_type)))
    for signal_type in SignalType
}


def autopilot_accepts(record: Any) -> bool:
    """Whether the signals topic accepts every signal of the record (JSON, as sent)."""
    return not decode_signals(orjson.dumps(record)).rejections


def type_file_accepts(document: dict[str, Any]) -> bool:
    """The verdict of the record's own type file; for an unknown type, of any type file."""
    validator = TYPE_VALIDATORS.get(str(document.get("type")))
    if validator is None:
        return any(each.is_valid(document) for each in TYPE_VALIDATORS.values())
    return validator.is_valid(document)


# --- the committed files are what the models generate -----------------------------------------


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_the_committed_file_is_what_the_models_generate(name: str) -> None:
    """Given the models as they are now, then each committed file is byte for byte what they
    generate, so a model change cannot ship without its schema."""
    path = SCHEMA_DIR / name
    assert path.is_file(), f"topics/schemas/{name} is missing: {FIX}"

    assert path.read_text(encoding="utf-8") == GENERATED[name], (
        f"topics/schemas/{name} is stale, the models have changed: {FIX}"
    )


def test_no_file_of_a_removed_type_is_left_committed() -> None:
    """Given the committed directory, then check finds nothing missing, stale or extra."""
    assert schema_files.check(SCHEMA_DIR) == [], f"drifted schema files: {FIX}"


def test_there_is_one_file_per_type_plus_the_record_and_the_batch() -> None:
    """Then the files are named by type and schema_version, with stable ids."""
    names = set(GENERATED)

    assert names == {f"{t.value}.v1.json" for t in SignalType} | {SIGNAL_FILE, BATCH_FILE}
    for name in names:
        document = committed(name)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$id"] == f"https://autopilot.dev/schemas/signals/{name}"
        assert document["title"]
        assert document["description"]


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_file_is_a_valid_draft_2020_12_schema(name: str) -> None:
    """Then each file passes the draft 2020-12 meta-schema, so any validator can load it."""
    Draft202012Validator.check_schema(committed(name))


# --- the schemas agree with Autopilot ---------------------------------------------------------


def test_the_examples_cover_every_type_and_attribute() -> None:
    """Given the example table, then it sets every attribute of every type, so a new
    attribute or type cannot go untested here."""
    assert FULL_ATTRIBUTES.keys() == set(SignalType)
    for signal_type, model in SIGNAL_MODELS.items():
        attributes: Any = model.model_fields["attributes"].annotation  # a TypedDict class
        declared = attributes.__required_keys__ | attributes.__optional_keys__
        assert set(FULL_ATTRIBUTES[signal_type]) == declared, signal_type


@pytest.mark.parametrize(("document", "accepted"), AGREED)
def test_the_schemas_and_autopilot_give_the_same_verdict(
    document: dict[str, Any], accepted: bool
) -> None:
    """Given a record, then signal.v1.json, the type's own file and Autopilot all give the
    expected verdict."""
    assert autopilot_accepts(document) is accepted
    assert SIGNAL_VALIDATOR.is_valid(document) is accepted
    assert type_file_accepts(document) is accepted
    assert BATCH_VALIDATOR.is_valid([signal(), document]) is accepted


@pytest.mark.parametrize(("document", "verdicts"), KNOWN_DIFFERENCES)
def test_where_the_schemas_and_autopilot_must_differ(
    document: dict[str, Any], verdicts: tuple[bool, bool]
) -> None:
    """Given a record JSON Schema cannot judge as pydantic does, then the verdicts differ
    exactly as documented (docs/signals.md, "Signal schemas")."""
    schema_verdict, autopilot_verdict = verdicts

    assert SIGNAL_VALIDATOR.is_valid(document) is schema_verdict
    assert type_file_accepts(document) is schema_verdict
    assert autopilot_accepts(document) is autopilot_verdict


@pytest.mark.parametrize("count", [0, 1, MAX_BATCH_SIGNALS, MAX_BATCH_SIGNALS + 1])
def test_the_batch_schema_bounds_a_batch_as_the_codec_does(count: int) -> None:
    """Given a batch of `count` signals, then the schema's bounds and the codec agree: at
    least one signal, at most MAX_BATCH_SIGNALS."""
    # Checking 10,000 items against the full schema takes seconds; the bounds alone do not.
    bounds = {key: value for key, value in committed(BATCH_FILE).items() if key != "items"}
    batch = [signal()] * count

    assert Draft202012Validator(bounds).is_valid(batch) is (0 < count <= MAX_BATCH_SIGNALS)
    assert autopilot_accepts(batch) is (0 < count <= MAX_BATCH_SIGNALS)


def test_a_batch_with_one_bad_item_fails_the_schema_but_only_that_item_is_refused() -> None:
    """Given a batch whose second item is naive, then the schema refuses the batch while
    Autopilot refuses that item alone and accepts the others."""
    batch = [signal(), signal(occurred_at="2024-01-01T00:00:00"), signal()]

    decoded = decode_signals(orjson.dumps(batch))

    assert not BATCH_VALIDATOR.is_valid(batch)
    assert len(decoded.signals) == 2
    assert [rejection.index for rejection in decoded.rejections] == [1]


# --- check and write ------------------------------------------------------------------------


def test_check_names_missing_stale_and_extra_files_and_write_repairs_them(tmp_path: Path) -> None:
    """Given a copy with one file missing, one altered and one of a removed type, then check
    names those three (and not an unrelated file), and write leaves nothing to report."""
    shutil.copytree(SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    (tmp_path / "heartbeat.v1.json").unlink()
    (tmp_path / "queue_depth.v1.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "health_improved.v1.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "notes.json").write_text("{}\n", encoding="utf-8")

    assert schema_files.check(tmp_path) == [
        "health_improved.v1.json",
        "heartbeat.v1.json",
        "queue_depth.v1.json",
    ]

    schema_files.write(tmp_path)

    assert schema_files.check(tmp_path) == []
    assert not (tmp_path / "health_improved.v1.json").exists()
    assert (tmp_path / "notes.json").exists()


def run_schemas(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m app schemas ...` as a user runs it, from the repository, with no broker."""
    return subprocess.run(
        [sys.executable, "-m", "app", "schemas", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_schemas_check_passes_on_the_committed_files() -> None:
    """When `autopilot schemas --check` runs on the committed tree, then it exits 0."""
    result = run_schemas("--check")

    assert result.returncode == 0, result.stderr


def test_schemas_check_fails_on_an_altered_file_and_says_how_to_fix_it(tmp_path: Path) -> None:
    """Given a copy with one altered file, when `--check --dir` runs, then it exits 1 naming
    only that file and the command that regenerates it, which does."""
    shutil.copytree(SCHEMA_DIR, tmp_path, dirs_exist_ok=True)
    altered = tmp_path / "webhook_failed.v1.json"
    altered.write_text(altered.read_text(encoding="utf-8").replace("599", "600"), "utf-8")

    result = run_schemas("--check", "--dir", str(tmp_path))

    assert result.returncode == 1
    assert f"out of date in {tmp_path}: webhook_failed.v1.json." in result.stderr
    assert f"Run `autopilot schemas --dir {tmp_path}` to regenerate them." in result.stderr
    assert run_schemas("--dir", str(tmp_path)).returncode == 0
    assert run_schemas("--check", "--dir", str(tmp_path)).returncode == 0
