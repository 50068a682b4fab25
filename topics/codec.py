"""Decoding records from the signals topic: one signal (a JSON object) or a batch (a JSON array).

Pure: bytes in, accepted signals and per-item rejections out. Nothing here raises on bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from topics.ids import stable_id
from topics.signals import Signal

MAX_RECORD_BYTES = 1024 * 1024
MAX_BATCH_SIGNALS = 10_000
MAX_REASON_CHARS = 400

_BATCH: TypeAdapter[list[Signal]] = TypeAdapter(list[Signal])
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,39}")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one input (a whole record when index is None, else one batch item) was refused."""

    reason: str
    raw: bytes
    index: int | None = None


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """What one record on the signals topic held: inputs in == accepted + rejected."""

    signals: list[Signal]
    rejections: list[Rejection]


def decode_signals(raw: bytes | None) -> DecodedRecord:
    """Decode one record; every input ends either accepted or rejected with a reason."""
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
    try:
        # Fast path: one call validates the whole batch inside pydantic-core.
        return DecodedRecord(_BATCH.validate_python(prepared), [])
    except ValidationError:
        pass
    signals: list[Signal] = []
    rejections: list[Rejection] = []
    single = isinstance(parsed, dict)
    for index, (item, ready) in enumerate(zip(items, prepared, strict=True)):
        try:
            signals.append(Signal.model_validate(ready))
        except ValidationError as exc:
            rejections.append(
                Rejection(
                    reason=describe(exc),
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
        location = ".".join(_safe_part(part) for part in error["loc"]) or "signal"
        parts.append(f"{location}: {error['msg']}")
    return ("invalid: " + "; ".join(parts))[:MAX_REASON_CHARS]


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
