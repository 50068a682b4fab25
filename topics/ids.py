"""Deterministic ids: the same inputs always give the same id, so ids double as idempotency keys."""

from __future__ import annotations

import hashlib


def stable_id(prefix: str, *parts: object) -> str:
    """A short id derived from the parts (32 hex chars of BLAKE2b after a readable prefix)."""
    text = "\x1f".join(str(part) for part in parts)
    return f"{prefix}-{hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}"
