"""The sweep_runs read model: each shard's run of a sweep once (copies folded once), read back
one line per tick with its shards summed, newest first, as the report shows them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from app.report_cli import html_report
from core.ledger_entries import sweep_entry
from core.sweeps import SweepRun as Run
from projections.database import Database
from projections.report import read_report
from projections.store import Projection, Record
from projections.sweeps import SweepRun, recent_sweeps

AT = datetime(2026, 12, 7, 10, 0, 2, tzinfo=UTC)
DAILY = Run(
    schedule="daily",
    tick_id="tick-daily",
    at=int(datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()),
    partition=0,
    workspaces=100,
    candidates=4,
    evaluated=4,
    decisions=3,
    actions=2,
    suppressed=1,
    affected=3,
    skipped=0,
    max_workspaces=25,
    max_actions=13,
)


def project(path: Path) -> Database:
    runs = [
        sweep_entry(DAILY, None, AT),
        sweep_entry(replace(DAILY, partition=1, workspaces=120, skipped=2), None, AT),
        # A copy of shard 0's entry (its tick acted on again after a crash): folded once.
        sweep_entry(DAILY, None, AT),
        sweep_entry(
            replace(DAILY, tick_id="run-1", at=DAILY.at + 4000, partition=1, actions=0),
            "alice",
            AT,
        ),
    ]
    database = Database.open(f"sqlite:///{path}")
    records = [Record(0, n, e.model_dump_json().encode()) for n, e in enumerate(runs)]
    Projection(database, "ledger", 60).apply(records, {0: (0, len(records))})
    return database


def test_sweep_runs_are_summed_per_tick_newest_first_and_reported(tmp_path: Path) -> None:
    """Given two shards' runs of the daily sweep (one entry twice) and an operator's run on
    one shard, when projected, then the operator's run comes first and the daily run sums its
    two shards once each; the HTML report lists both."""
    database = project(tmp_path / "p.sqlite3")

    assert recent_sweeps(database) == [
        SweepRun("daily", "2026-12-07T11:06:40.000000Z", "alice", 1, 100, 4, 3, 0, 3, 0),
        SweepRun("daily", "2026-12-07T10:00:00.000000Z", None, 2, 220, 8, 6, 4, 6, 2),
    ]
    html = html_report(read_report(database))
    assert "Recent sweep runs" in html
    assert "<td>alice</td>" in html
    database.close()
