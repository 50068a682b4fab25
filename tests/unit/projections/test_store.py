"""The store folds a ledger into the same rows however it is cut into batches, whether rows come
from its cache or are read back from the database, and copies of an entry count once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from projections.database import Database
from projections.schema import READ_MODELS, rows_of
from projections.store import PositionMovedError, Projection, Record

GOLDEN = Path(__file__).parents[2] / "replay" / "golden.jsonl"


def ledger() -> list[bytes]:
    """The golden ledger three times over (new ids each time), each success preceded by a
    failed first attempt and a second start, then copies of its first 50 records."""
    lines = [line for line in GOLDEN.read_bytes().splitlines() if line.strip()]
    records = []
    for round_ in range(3):
        for line in lines:
            entry = orjson.loads(line)
            entry["entry_id"] = f"{entry['entry_id']}-{round_}"
            if entry["payload"].get("command_id"):
                entry["payload"]["command_id"] += f"-{round_}"
            if entry["kind"] == "action.succeeded":
                records += attempts_before(entry)
                entry["payload"]["attempt"] = 2
            records.append(orjson.dumps(entry))
    return records + records[:50]


def attempts_before(succeeded: dict[str, Any]) -> list[bytes]:
    """action.started (1), action.failed (1, retried), action.started (2) for a success."""
    story = [
        ("action.started", 1, {"worker": "w-1"}),
        ("action.failed", 1, {"error": {"class": "RetryableError", "reason": "503"}}),
        ("action.started", 2, {"worker": "w-2"}),
    ]
    return [
        orjson.dumps(
            {
                **succeeded,
                "entry_id": f"{succeeded['entry_id']}-{n}",
                "kind": kind,
                "payload": {**succeeded["payload"], "attempt": attempt, **details},
            }
        )
        for n, (kind, attempt, details) in enumerate(story)
    ]


def fold(path: Path, batch: int, cold: bool = False) -> dict[str, list[tuple[object, ...]]]:
    database = Database.open(f"sqlite:///{path}")
    projection = Projection(database, "ledger", 60)
    records, position = ledger(), 0
    for start in range(0, len(records), batch):
        chunk = [Record(0, position + i, r) for i, r in enumerate(records[start : start + batch])]
        applied = projection.apply(chunk, {0: (position, position + len(chunk))})
        assert applied.unreadable == 0
        position += len(chunk)
        if cold:
            projection._forget()  # every batch reads its rows back from the database
    models = {table: rows_of(database, table) for table in READ_MODELS}
    database.close()
    return models


def test_batches_and_reads_change_nothing_and_copies_count_once(tmp_path: Path) -> None:
    whole = fold(tmp_path / "whole.sqlite3", 10_000)
    assert fold(tmp_path / "small.sqlite3", 37) == whole
    assert fold(tmp_path / "cold.sqlite3", 53, cold=True) == whole
    # 3 x (265 + 3 x 99) distinct entries, the 50 copies skipped
    assert len(whole["ledger_entries"]) == 3 * (265 + 3 * 99)
    # two attempts per succeeded command, the first failed on another worker
    assert {(row[1], row[2], row[5]) for row in whole["action_attempts"]} == {
        (1, "w-1", "failed"),
        (2, "w-2", "succeeded"),
    }
    # one row per command issued (3 x (61 made + 43 deferred)), 3 x 99 of them succeeded once
    assert len(whole["action_history"]) == 312
    succeeded = [row for row in whole["action_history"] if row[8] == "succeeded"]
    assert len(succeeded) == 297
    assert sum(int(row[12]) for row in whole["workspace_status"]) == 297  # type: ignore[call-overload]
    # and the run metrics count each decision once
    [metrics] = whole["run_metrics"]
    assert metrics[3:6] == (3 * 61, 3 * 43, 3 * 61)


def test_a_position_another_projector_moved_is_refused_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    database = Database.open(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    first, second = (Projection(database, "ledger", 60) for _ in range(2))
    records = [Record(0, i, r) for i, r in enumerate(ledger()[:10])]
    first.apply(records[:5], {0: (0, 5)})
    # the second projector still believes partition 0 is at offset 0
    with pytest.raises(PositionMovedError):
        second.apply(records[:5], {0: (0, 5)})
    assert len(rows_of(database, "ledger_entries")) == 5
    assert first.positions() == {0: 5}
