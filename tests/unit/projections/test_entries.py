"""The projection's fast decoding of ledger records agrees with the ledger's models on what an
entry is: the same fields for every golden entry, and a refusal (with a reason) wherever the
models refuse one."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from projections.entries import UnreadableEntryError, decode_entry
from topics.ledger import parse_entry

GOLDEN = Path(__file__).parents[2] / "replay" / "golden.jsonl"
LINES = [line for line in GOLDEN.read_bytes().splitlines() if line.strip()]
GOOD = orjson.loads(LINES[0])


def test_every_golden_entry_decodes_to_the_fields_pydantic_reads() -> None:
    for line in LINES:
        fast, model = decode_entry(line), parse_entry(line)
        assert (
            fast.entry_id,
            fast.kind,
            fast.workspace_id,
            fast.correlation_id,
            fast.causation_id,
            fast.policy_version,
            fast.recorded_at,
            fast.payload,
        ) == (
            model.entry_id,
            model.kind,
            model.workspace_id,
            model.correlation_id,
            model.causation_id,
            model.policy_version,
            model.recorded_at,
            model.payload.model_dump(mode="json"),
        )


BAD = {
    "not json": b"{nope",
    "an array": b"[1, 2]",
    "no kind": orjson.dumps({k: v for k, v in GOOD.items() if k != "kind"}),
    "unknown kind": orjson.dumps({**GOOD, "kind": "decision.guessed"}),
    "extra field": orjson.dumps({**GOOD, "note": "x"}),
    "bad entry id": orjson.dumps({**GOOD, "entry_id": "has space"}),
    "numeric correlation id": orjson.dumps({**GOOD, "correlation_id": 7}),
    "bad workspace": orjson.dumps({**GOOD, "workspace_id": "ws/1"}),
    "naive time": orjson.dumps({**GOOD, "recorded_at": "2026-11-21T12:00:00"}),
    "not a time": orjson.dumps({**GOOD, "recorded_at": "yesterday"}),
    "time as a list": orjson.dumps({**GOOD, "recorded_at": [2026]}),
    "payload a list": orjson.dumps({**GOOD, "payload": []}),
    "schema 4": orjson.dumps({**GOOD, "schema_version": 4}),
    "hash a number": orjson.dumps({**GOOD, "hash": 12}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_what_pydantic_refuses_is_unreadable_with_a_reason(case: str) -> None:
    raw = BAD[case]
    with pytest.raises(ValidationError):
        parse_entry(raw)
    with pytest.raises(UnreadableEntryError) as refused:
        decode_entry(raw)
    assert str(refused.value)
    assert "has space" not in str(refused.value)  # the reason names, never echoes
