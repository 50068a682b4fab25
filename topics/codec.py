"""Decoding records from the signals topic: one signal (a JSON object) or a batch (a JSON array).

Pure: bytes in, accepted signals and per-item rejections out. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from topics.ids import stable_id
from topics.signals import SIGNAL, SIGNALS, Signal, SignalType

MAX_RECORD_BYTES = 1024 * 1024
MAX_BATCH_SIGNALS = 10_000
MAX_REASON_CHARS = 400
# How far past the time its record was written a signal's event time may lie (clock skew).
DEFAULT_MAX_FUTURE_SECONDS = 300

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")
_TYPE_TAGS = frozenset(SignalType)
# pydantic's own messages for these echo the input; a producer needs the list of what is known.
_TYPE_ERROR = "unknown or missing signal type, expected one of: " + ", ".join(SignalType)
_TYPE_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})


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
) -> DecodedRecord:
    """Decode one record; every input ends either accepted or rejected with a reason.

    `written_at` (epoch seconds, the record's own timestamp, so a replay decides the same) bounds
    event time: a signal more than `max_future_seconds` after it is refused.
    """
    if raw is None:
        return _whole("undecodable: empty record (no value)", b"")
    if len(raw) > MAX_RECORD_BYTES:
        return _whole(f"oversize: record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}", raw)
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _whole("undecodable: not UTF-8 JSON", raw)
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
            if limit is not None and signal.occurred_at.timestamp() > limit:
                reason = (
                    "invalid: occurred_at: more than "
                    f"{max_future_seconds} s after the record was written"
                )
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


def describe(exc: ValidationError) -> str:
    """A short reason naming the fields and rules, never echoing the input values.

    Locations can hold input too (an attribute's key, an unknown field's name): a part that
    is not a plain identifier is shown as `<redacted>`, since reasons reach the ledger.
    """
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        if error["type"] in _TYPE_ERRORS:
            parts.append(f"type: {_TYPE_ERROR}")
            continue
        location = ".".join(_safe_part(part) for part in _without_tag(error["loc"])) or "signal"
        parts.append(f"{location}: {error['msg']}")
    return ("invalid: " + "; ".join(parts))[:MAX_REASON_CHARS]


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
