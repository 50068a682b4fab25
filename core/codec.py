"""Decoding records from the signals topic: one signal (a JSON object) or a batch (a JSON array).

Pure: bytes in, accepted signals and per-item rejections out. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from topics.ids import stable_id
from topics.limits import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES
from topics.signals import SIGNAL, SIGNAL_MODELS, SIGNALS, Signal, SignalType

MAX_REASON_CHARS = 400
# How far past the time its record was written a signal's event time may lie (clock skew).
DEFAULT_MAX_FUTURE_SECONDS = 300

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
_TYPE_TAGS = frozenset(SignalType)
# pydantic's own messages for these echo the input; a producer needs the list of what is known.
_TYPE_ERROR = "unknown or missing signal type, expected one of: " + ", ".join(SignalType)
_TYPE_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})

# orjson reads integers from -2**63 to 2**64 - 1 as int; a longer one comes back as a float, which
# the strict attributes refuse as "not a valid integer": true of the float, misleading to the
# producer, who wrote a whole number that is simply too large. Rounding can land such a float on
# -2**63 itself (-2**63 - 1 does), so that end of the range counts as beyond it.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1

# Why orjson refused a record, for the cases a producer can act on. orjson reports these as fixed
# texts (its messages never quote the input) and `pos` in characters of the decoded text.
_JSON_WHITESPACE = " \t\n\r"
_CONTROL_IN_STRING = "unexpected control character in string"
_DEPTH_EXCEEDED = "depth limit exceeded"
_LONE_SURROGATE = frozenset(
    {
        "no low surrogate in string",
        "invalid low surrogate in string",
        "invalid high surrogate in string",
    }
)
# orjson's nesting limit (arrays and objects together): 1024 levels parse, 1025 do not.
_MAX_DEPTH = 1024
# A bound on orjson's own message in a reason, should a future version make one long.
_MAX_PARSER_MESSAGE_CHARS = 80


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one input (a whole record when index is None, else one batch item) was refused."""

    reason: str
    raw: bytes
    index: int | None = None

    @property
    def kind(self) -> str:
        """What went wrong, in one word: undecodable, oversize or invalid (the reason's prefix)."""
        return self.reason.partition(":")[0]


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """What one record on the signals topic held: inputs in == accepted + rejected."""

    signals: list[Signal]
    rejections: list[Rejection]


def decode_signals(
    raw: bytes | None,
    written_at: float | None = None,
    max_future_seconds: int = DEFAULT_MAX_FUTURE_SECONDS,
    held: Mapping[str, int] | None = None,
) -> DecodedRecord:
    """Decode one record; every input ends either accepted or rejected with a reason.

    `written_at` (epoch seconds, the record's own timestamp, so a replay decides the same) bounds
    event time: a signal more than `max_future_seconds` after it is refused, or more than
    `held[its type]` for the types held until they are due (core/schedules.py).
    """
    if raw is None:
        return _whole("undecodable: null record (no value)", b"")
    if len(raw) > MAX_RECORD_BYTES:
        return _whole(f"oversize: record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}", raw)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # Only refused bytes are looked at again: valid input costs one orjson.loads, no more.
        return _whole(_undecodable_reason(raw, exc), raw)
    if isinstance(parsed, dict):
        items = [parsed]
    elif isinstance(parsed, list):
        if not parsed:
            return _whole("invalid: empty batch", raw)
        if len(parsed) > MAX_BATCH_SIGNALS:
            return _whole(f"oversize: batch of {len(parsed)}, limit {MAX_BATCH_SIGNALS}", raw)
        items = parsed
    else:
        return _whole("invalid: expected a JSON object (a signal) or array (a batch)", raw)

    prepared = [
        {**item, "id": derive_signal_id(item)}
        if isinstance(item, dict) and "id" not in item
        else item
        for item in items
    ]
    limit = None if written_at is None else written_at + max_future_seconds
    try:
        # Fast path: one call validates the whole batch inside pydantic-core.
        signals = SIGNALS.validate_python(prepared)
        if limit is None or all(s.occurred_at.timestamp() <= limit for s in signals):
            return DecodedRecord(signals, [])
    except ValidationError:
        pass
    signals = []
    rejections: list[Rejection] = []
    single = isinstance(parsed, dict)
    for index, (item, ready) in enumerate(zip(items, prepared, strict=True)):
        reason = None
        try:
            signal = SIGNAL.validate_python(ready)
        except ValidationError as exc:
            reason = describe(exc)
        else:
            ahead = max_future_seconds
            if held is not None:
                ahead = held.get(signal.type, max_future_seconds)
            if written_at is not None and signal.occurred_at.timestamp() > written_at + ahead:
                reason = f"invalid: occurred_at: more than {ahead} s after the record was written"
            else:
                signals.append(signal)
        if reason is not None:
            rejections.append(
                Rejection(
                    reason=reason,
                    raw=raw if single else _item_bytes(item, raw),
                    index=None if single else index,
                )
            )
    return DecodedRecord(signals, rejections)


def derive_signal_id(item: dict[str, Any]) -> str:
    """An id for a signal whose producer gave none: the same content gives the same id."""
    try:
        canonical = orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()
    except (TypeError, RecursionError):  # e.g. nested too deep: validation rejects it anyway
        canonical = "unserialisable"
    return stable_id("d", canonical)


def _undecodable_reason(raw: bytes, error: orjson.JSONDecodeError) -> str:
    """Why orjson refused these bytes, with the byte offset of the first bad one where known."""
    if not raw:
        return "undecodable: empty value (0 bytes): send a JSON object or array"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        # orjson reports invalid UTF-8 at position 0 wherever it is; Python's decoder says where.
        return f"undecodable: invalid UTF-8 at byte {bad.start}: send JSON encoded as UTF-8"
    if text.startswith("\ufeff"):
        return "undecodable: starts with a UTF-8 byte order mark: send JSON without a BOM"
    if not text.strip(_JSON_WHITESPACE):
        return "undecodable: only whitespace: send a JSON object or array"
    if error.pos >= len(text):
        return f"undecodable: truncated: the JSON ends early, after {len(raw)} bytes"
    at = _byte_offset(text, error.pos)
    if error.msg == _CONTROL_IN_STRING:
        return (
            f"undecodable: raw control character in a string at byte {at}: "
            "escape it (\\n, \\t, \\u0000 to \\u001f)"
        )
    if error.msg == _DEPTH_EXCEEDED:
        # orjson points just past the bracket that went one level too deep.
        return (
            f"undecodable: nested deeper than {_MAX_DEPTH} levels at byte "
            f"{_byte_offset(text, error.pos - 1)}"
        )
    if error.msg in _LONE_SURROGATE:
        return (
            f"undecodable: lone surrogate escape at byte {at}: \\ud800 to \\udfff "
            "must come as a high-low pair"
        )
    return f"undecodable: not JSON: {error.msg[:_MAX_PARSER_MESSAGE_CHARS]} at byte {at}"


def _byte_offset(text: str, chars: int) -> int:
    return len(text[:chars].encode("utf-8"))


def describe(exc: ValidationError) -> str:
    """A short reason naming the fields and rules, never echoing the input values.

    Locations can hold input too (an attribute's key, an unknown field's name): a part that
    is not a plain identifier is shown as `<redacted>`, since reasons reach the ledger.
    """
    parts = []
    # The input is read only to tell an integer too large for orjson; it never enters a reason.
    for error in exc.errors(include_url=False):
        if error["type"] in _TYPE_ERRORS:
            parts.append(f"type: {_TYPE_ERROR}")
            continue
        location = ".".join(_safe_part(part) for part in _without_tag(error["loc"])) or "signal"
        parts.append(f"{location}: {_rule(error)}")
    return ("invalid: " + "; ".join(parts))[:MAX_REASON_CHARS]


def _rule(error: ErrorDetails) -> str:
    value = error.get("input")
    if (
        error["type"] == "int_type"
        and isinstance(value, float)
        and value.is_integer()
        and not _INT_MIN < value <= _INT_MAX
    ):
        low, high = _integer_bounds(error["loc"])
        return f"out of range: must be a whole number from {low} to {high}"
    return error["msg"]


def _integer_bounds(loc: tuple[str | int, ...]) -> tuple[int, int]:
    """An integer field's bounds: an attribute's own, else the range orjson reads as integers."""
    at = 1 if loc and isinstance(loc[0], int) else 0
    match loc[at:]:
        case (str(tag), "attributes", str(field)) if tag in _TYPE_TAGS:
            return _attribute_bounds(tag, field)
    return _INT_MIN, _INT_MAX


@cache
def _attribute_bounds(tag: str, field: str) -> tuple[int, int]:
    # As the published JSON Schema states them (topics/schemas/ is generated from the same models).
    attributes = SIGNAL_MODELS[SignalType(tag)].model_fields["attributes"].annotation
    schema = {} if attributes is None else TypeAdapter(attributes).json_schema()
    rules = schema.get("properties", {}).get(field, {})
    return int(rules.get("minimum", _INT_MIN)), int(rules.get("maximum", _INT_MAX))


def _without_tag(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # The union's tag (`queue_depth`) leads every location, after a batch item's index: the
    # type is known, drop it, and only it (a field may share a type's name).
    at = 1 if loc and isinstance(loc[0], int) else 0
    if len(loc) > at and loc[at] in _TYPE_TAGS:
        return loc[:at] + loc[at + 1 :]
    return loc


def _safe_part(part: str | int) -> str:
    if isinstance(part, int) or part == "[key]" or _IDENTIFIER.fullmatch(part):
        return str(part)
    return "<redacted>"


def _item_bytes(item: object, record: bytes) -> bytes:
    """The refused item's own JSON, or the whole record when it cannot be re-serialised."""
    try:
        return orjson.dumps(item)
    except (TypeError, RecursionError):  # orjson's writer stops at ~255 levels of nesting
        return record


def _whole(reason: str, raw: bytes) -> DecodedRecord:
    return DecodedRecord([], [Rejection(reason=reason, raw=raw)])
