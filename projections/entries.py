"""Reading ledger records fast: the envelope checked by hand, the payload left as JSON gave it.

pydantic's full validation was a third of a replay's time; a replay reads every entry ever
written. The envelope gets `LedgerEntry`'s checks (fields, kinds, the entry's and workspace's id
patterns, an aware `recorded_at`), except that correlation and causation ids are only checked to
be text of an id's length; the payload is any JSON object, and the fold reads it defensively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import WORKSPACE_ID_PATTERN

_KINDS = {kind.value: kind for kind in LedgerKind}
_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_WORKSPACE_ID = re.compile(WORKSPACE_ID_PATTERN.removeprefix("^").removesuffix("$"))
_REQUIRED = frozenset(
    {"entry_id", "kind", "workspace_id", "correlation_id", "causation_id", "recorded_at", "payload"}
)
_FIELDS = frozenset(LedgerEntry.model_fields)


class UnreadableEntryError(ValueError):
    """A ledger record that is not a ledger entry; the message says why (never the content)."""


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """A ledger entry as the projection reads it (the fields of `LedgerEntry` it folds)."""

    entry_id: str
    kind: LedgerKind
    workspace_id: str | None
    correlation_id: str
    causation_id: str
    policy_version: str | None
    recorded_at: datetime
    payload: dict[str, Any]


def decode_entry(raw: bytes | None) -> DecodedEntry:
    """The entry a ledger record holds; UnreadableEntryError when it holds none."""
    try:
        document = orjson.loads(raw or b"")
    except orjson.JSONDecodeError:
        raise UnreadableEntryError("not JSON") from None
    if not isinstance(document, dict):
        raise UnreadableEntryError("not a JSON object")
    fields = document.keys()
    if not (_REQUIRED <= fields <= _FIELDS):
        missing, unknown = _REQUIRED - fields, fields - _FIELDS
        raise UnreadableEntryError(
            f"missing {', '.join(sorted(missing))}"
            if missing
            else f"unknown {', '.join(sorted(unknown))}"
        )
    kind = _KINDS.get(document["kind"])
    if kind is None:
        raise UnreadableEntryError("unknown kind")
    if document.get("schema_version", 2) not in (1, 2, 3):
        raise UnreadableEntryError("unknown schema_version")
    entry_id = document["entry_id"]
    # Matched directly: entry ids never repeat, so a memo would only cost.
    if not isinstance(entry_id, str) or _EVENT_ID.fullmatch(entry_id) is None:
        raise UnreadableEntryError("entry_id is not a valid id")
    # Links to other entries or signals: text of an id's length (their pattern is the
    # writer's; a replay reads every entry, so only the entry's own id is matched).
    for name in ("correlation_id", "causation_id"):
        value = document[name]
        if not isinstance(value, str) or not 0 < len(value) <= 128:
            raise UnreadableEntryError(f"{name} is not a valid id")
    workspace_id = document["workspace_id"]
    if workspace_id is not None and not _workspace_id(workspace_id):
        raise UnreadableEntryError("workspace_id is not a valid id")
    if not isinstance(document["payload"], dict):
        raise UnreadableEntryError("payload is not an object")
    if not isinstance(document["recorded_at"], str):
        raise UnreadableEntryError("recorded_at is not a timestamp")
    for name in ("policy_version", "prev_hash", "hash"):
        if not isinstance(document.get(name), str | None):
            raise UnreadableEntryError(f"{name} is not text")
    return DecodedEntry(
        document["entry_id"],
        kind,
        workspace_id,
        document["correlation_id"],
        document["causation_id"],
        document.get("policy_version"),
        _aware(document["recorded_at"]),
        document["payload"],
    )


# Workspaces repeat across entries: each is checked once.
@lru_cache(maxsize=65_536)
def _checked(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def _workspace_id(value: Any) -> bool:
    return isinstance(value, str) and _checked(_WORKSPACE_ID, value)


# Entries written together share their recorded_at: parsed once.
@lru_cache(maxsize=65_536)
def _aware(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise UnreadableEntryError("recorded_at is not a timestamp") from None
    if moment.tzinfo is None:
        raise UnreadableEntryError("recorded_at has no timezone")
    return moment
