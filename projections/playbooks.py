"""Playbook runs, as the read model `playbook_runs` holds them: one row per run, read back as
the latest runs and as counts per playbook for the report and the platform view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.database import Database


@dataclass(frozen=True, slots=True)
class PlaybookRun:
    """One run of a playbook: where it stands, and since when."""

    run_id: str
    workspace_id: str
    playbook: str
    rule_id: str | None
    status: str
    # The step the run is in, or the end it reached ("complete", "fail").
    step: str | None
    steps_completed: int
    last_outcome: str | None
    started_at: str
    updated_at: str
    ended_at: str | None


@dataclass(frozen=True, slots=True)
class PlaybookCounts:
    """How many runs of one playbook are running, completed and failed."""

    playbook: str
    running: int
    completed: int
    failed: int


def recent_playbook_runs(database: Database, limit: int = 20) -> list[PlaybookRun]:
    """The latest playbook runs, newest start first."""
    rows = database.query(
        "SELECT run_id, workspace_id, playbook, rule_id, status, step, steps_completed,"
        " last_outcome, started_at, updated_at, ended_at"
        " FROM playbook_runs ORDER BY started_at DESC, run_id LIMIT ?",
        (limit,),
    )
    return [_run(row) for row in rows]


def playbook_counts(database: Database) -> list[PlaybookCounts]:
    """Runs per playbook and status, by playbook id."""
    rows = database.query(
        "SELECT playbook,"
        " SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END)"
        " FROM playbook_runs GROUP BY playbook ORDER BY playbook"
    )
    return [PlaybookCounts(str(p), *(int(n) for n in counts)) for p, *counts in rows]


def _run(row: tuple[Any, ...]) -> PlaybookRun:
    run_id, workspace, playbook, rule, status, step, steps, outcome, *times = row
    started, updated, ended = times
    return PlaybookRun(
        str(run_id), str(workspace), str(playbook), _text(rule), str(status), _text(step),
        int(steps), _text(outcome), str(started), str(updated), _text(ended),
    )  # fmt: skip


def _text(value: object) -> str | None:
    return None if value is None else str(value)
