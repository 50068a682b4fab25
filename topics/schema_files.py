"""The JSON Schema files of the signals, generated from the models for non-Python producers.

One file per signal type (`<type>.v<schema_version>.json`), one for a single-signal record
(`signal.v1.json`) and one for a batch record (`batch.v1.json`), all JSON Schema draft 2020-12.
They describe what a record on the signals topic may hold, so they differ from the models where
the codec does: `id` may be omitted (it is then derived from the content) and a batch is bounded.
Rendering is deterministic, so the committed files diff cleanly and a drift test can compare them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from topics.limits import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES
from topics.signals import SIGNAL, SIGNAL_MODELS, SIGNALS, SignalType

SCHEMA_DIR = Path(__file__).parent / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# An identifier for `$ref` and caches, never fetched: the files travel with the code.
ID_BASE = "https://autopilot.dev/schemas/signals/"
SIGNAL_FILE = "signal.v1.json"
BATCH_FILE = "batch.v1.json"
# Only files named like ours are ours: `write` removes stale ones, `check` reports them.
_FILE_NAME = re.compile(r"[a-z0-9_]+\.v[0-9]+\.json")

# RFC 3339 date-time with a mandatory offset, as a pattern: JSON Schema validators treat `format`
# as an annotation unless told otherwise, and an event time without an offset is refused. The
# ranges are pydantic's (no leap second, no year 0); days past the end of a month still match.
# The form is RFC 3339's, stricter than pydantic's: a `T`, seconds, and `+01:00` not `+0100`.
_YEAR = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})"
_DATE = f"{_YEAR}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]+)?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
AWARE_DATETIME_PATTERN = f"^{_DATE}[Tt]{_TIME}{_OFFSET}$"

_ID_DESCRIPTION = (
    "The producer's id of this signal: signals with the same id are counted once. "
    "When omitted, Autopilot derives it from the signal's content."
)
_RECORD_NOTES = (
    f"A record is at most {MAX_RECORD_BYTES} bytes, and a signal whose occurred_at lies more "
    "than a few minutes after its record's timestamp is refused: neither can be said in JSON "
    "Schema."
)


class _SignalSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, plus a pattern that says what `AwareDatetime` requires."""

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        """A date-time string; with an offset when the model requires an aware datetime."""
        generated = super().datetime_schema(schema)
        if schema.get("tz_constraint") == "aware" and generated.get("type") == "string":
            return {**generated, "pattern": AWARE_DATETIME_PATTERN}
        return generated


def file_name(signal_type: SignalType) -> str:
    """The file of one signal type, e.g. `queue_depth.v1.json`."""
    version = SIGNAL_MODELS[signal_type].model_fields["schema_version"].default
    return f"{signal_type.value}.v{version}.json"


def signal_type_document(signal_type: SignalType) -> dict[str, Any]:
    """The schema of one record holding one signal of the given type."""
    model = SIGNAL_MODELS[signal_type]
    body = _id_optional(
        model.model_json_schema(mode="validation", schema_generator=_SignalSchemaGenerator)
    )
    version = model.model_fields["schema_version"].default
    description = (
        f"{model.__doc__} One `{signal_type.value}` signal (schema_version {version}): a record "
        f"on the signals topic, or one item of a batch record ({BATCH_FILE}). {_RECORD_NOTES}"
    )
    return _document(
        file_name(signal_type),
        f"Autopilot signal: {signal_type.value}, schema_version {version}",
        description,
        body,
    )


def signal_document() -> dict[str, Any]:
    """The schema of a record holding one signal of any type, told apart by `type`."""
    body = SIGNAL.json_schema(mode="validation", schema_generator=_SignalSchemaGenerator)
    body["$defs"] = _defs_id_optional(body["$defs"])
    types = ", ".join(signal_type.value for signal_type in SignalType)
    description = (
        f"One signal, a JSON object, alone in a record on the signals topic. Its `type` is one "
        f"of: {types}; each type's own file says the same for that type. {_RECORD_NOTES}"
    )
    return _document(SIGNAL_FILE, "Autopilot signal record", description, body)


def batch_document() -> dict[str, Any]:
    """The schema of a batch record: a JSON array of signals of any types."""
    body = SIGNALS.json_schema(mode="validation", schema_generator=_SignalSchemaGenerator)
    body["$defs"] = _defs_id_optional(body["$defs"])
    # The codec refuses an empty batch and one over its limit, whole.
    body["minItems"] = 1
    body["maxItems"] = MAX_BATCH_SIGNALS
    description = (
        f"A batch record on the signals topic: a JSON array of 1 to {MAX_BATCH_SIGNALS} signals "
        f"of any types, each as in {SIGNAL_FILE}. An invalid item is refused alone; the other "
        f"items are accepted. {_RECORD_NOTES}"
    )
    return _document(BATCH_FILE, "Autopilot batch record", description, body)


def documents() -> dict[str, dict[str, Any]]:
    """Every schema file's document, by file name."""
    by_name = {
        file_name(signal_type): signal_type_document(signal_type) for signal_type in SignalType
    }
    by_name[SIGNAL_FILE] = signal_document()
    by_name[BATCH_FILE] = batch_document()
    return by_name


def render(document: dict[str, Any]) -> str:
    """The file text of a document: sorted keys, 2-space indent and a trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """Every schema file's text, by file name."""
    return {name: render(document) for name, document in sorted(documents().items())}


def write(directory: Path) -> list[str]:
    """Write every schema file into `directory`, remove stale ones; return the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    files = rendered()
    for name in _ours(directory) - files.keys():
        (directory / name).unlink()
    for name, text in files.items():
        (directory / name).write_bytes(text.encode())
    return list(files)


def check(directory: Path) -> list[str]:
    """The names of the files in `directory` that are missing, stale or extra, sorted."""
    files = rendered()
    drifted = {
        name
        for name, text in files.items()
        if not (directory / name).is_file() or (directory / name).read_bytes() != text.encode()
    }
    return sorted(drifted | (_ours(directory) - files.keys()))


def _document(name: str, title: str, description: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        **body,
        "$schema": DRAFT,
        "$id": ID_BASE + name,
        "title": title,
        "description": description,
    }


def _id_optional(model_schema: dict[str, Any]) -> dict[str, Any]:
    """A signal model's schema with `id` optional on the wire, as the codec treats it."""
    changed = copy.deepcopy(model_schema)
    changed["required"] = [field for field in changed.get("required", []) if field != "id"]
    changed["properties"]["id"]["description"] = _ID_DESCRIPTION
    return changed


def _defs_id_optional(defs: dict[str, Any]) -> dict[str, Any]:
    names = {model.__name__ for model in SIGNAL_MODELS.values()}
    if not names <= defs.keys():
        raise RuntimeError("the union's schema no longer names each signal model in $defs")
    return {name: _id_optional(body) if name in names else body for name, body in defs.items()}


def _ours(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {
        path.name
        for path in directory.iterdir()
        if path.is_file() and _FILE_NAME.fullmatch(path.name)
    }
