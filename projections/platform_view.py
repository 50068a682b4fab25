"""The platform as an operator watches it live, read from the projections' read models: health
per status and the worst workspaces, decisions and actions per interval by priority, dead
letters, the commands waiting for an operator's approval, the workspaces parked by a dead
letter, commands per status, the latest sweep runs and playbook runs (with counts per
playbook).

What `GET /console/data`, `GET /snapshot` and `GET /approvals` answer (app/console_views.py).
Every worker's projector folds the whole ledger, so any worker answers for the platform.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from core.projection_fold import AWAITING_APPROVAL, FINAL_STATUSES
from projections.database import Database
from projections.parked import ParkedWorkspace, parked_workspaces
from projections.playbooks import (
    PlaybookCounts,
    PlaybookRun,
    playbook_counts,
    recent_playbook_runs,
)
from projections.report import HEALTH_STATUSES, PRIORITIES
from projections.sweeps import SweepRun, recent_sweeps

# The intervals of per-interval counts a view carries (the console's sparkline, newest last).
RECENT_INTERVALS = 15


@dataclass(frozen=True, slots=True)
class WaitingCommand:
    """A command parked until an operator approves or rejects it."""

    command_id: str
    workspace_id: str
    action: str
    priority: str
    rule_id: str
    decided_at: str | None


@dataclass(frozen=True, slots=True)
class WorkspaceHealth:
    workspace_id: str
    health_score: int
    health_status: str
    health_at: str | None


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Decisions that issued a command, and terminal action outcomes, in one interval."""

    interval_start: str
    decisions: dict[str, int]
    actions: dict[str, int]


@dataclass(frozen=True, slots=True)
class PlatformView:
    workspaces: int
    health: dict[str, int]
    mean_health_score: float | None
    worst: list[WorkspaceHealth]
    recent: list[IntervalCounts]
    open_commands: int
    dead_lettered: int
    awaiting_approval: list[WaitingCommand]
    interval_seconds: int
    parked_workspaces: list[ParkedWorkspace]
    # Commands per status (the seed's queue and pending gauges), and the latest sweep runs.
    commands: dict[str, int]
    sweeps: list[SweepRun]
    # Runs per playbook and status, and the latest runs.
    playbooks: list[PlaybookCounts]
    playbook_runs: list[PlaybookRun]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def awaiting_approval(database: Database, limit: int = 100) -> list[WaitingCommand]:
    """The commands waiting for an operator's verdict, oldest decision first."""
    rows = database.query(
        "SELECT command_id, workspace_id, action, priority, rule_id, decided_at"
        " FROM action_history WHERE status = ? ORDER BY COALESCE(decided_at, ''), command_id"
        " LIMIT ?",
        (AWAITING_APPROVAL, limit),
    )
    return [
        WaitingCommand(str(c), str(w), str(a), str(p), str(r), None if d is None else str(d))
        for c, w, a, p, r, d in rows
    ]


@dataclass(frozen=True, slots=True)
class FinishedCommand:
    """A command that reached a terminal status."""

    command_id: str
    workspace_id: str
    action: str
    status: str
    finished_at: str


def recent_outcomes(database: Database, limit: int = 10) -> list[FinishedCommand]:
    """The commands that finished last, newest first."""
    marks = ", ".join("?" for _ in FINAL_STATUSES)
    rows = database.query(
        "SELECT command_id, workspace_id, action, status, finished_at FROM action_history"
        f" WHERE status IN ({marks}) AND finished_at IS NOT NULL"
        " ORDER BY finished_at DESC, command_id LIMIT ?",
        (*sorted(FINAL_STATUSES), limit),
    )
    return [FinishedCommand(*(str(value) for value in row)) for row in rows]


def command_counts(database: Database) -> dict[str, int]:
    """How many commands stand in each status (awaiting_approval, running, dead_lettered, ...)."""
    return {
        str(status): int(count)
        for status, count in database.query(
            "SELECT status, COUNT(*) FROM action_history WHERE status <> '' GROUP BY status"
        )
    }


def platform_view(database: Database, worst: int = 10) -> PlatformView:
    """The whole view, in a handful of queries."""
    meta = dict(database.query("SELECT key, value FROM projection_meta"))
    health = dict.fromkeys(HEALTH_STATUSES, 0)
    for status, count in database.query(
        "SELECT health_status, COUNT(*) FROM workspace_status"
        " WHERE health_status IS NOT NULL GROUP BY health_status"
    ):
        health[str(status)] = int(count)
    ((workspaces, mean, open_commands),) = database.query(
        "SELECT COUNT(*), AVG(health_score), COALESCE(SUM(open_commands), 0) FROM workspace_status"
    )
    worst_rows = database.query(
        "SELECT workspace_id, health_score, health_status, health_at FROM workspace_status"
        " WHERE health_score IS NOT NULL ORDER BY health_score, workspace_id LIMIT ?",
        (worst,),
    )
    ((dead,),) = database.query(
        "SELECT COUNT(*) FROM action_history WHERE status = 'dead_lettered'"
    )
    return PlatformView(
        workspaces=int(workspaces),
        health=health,
        mean_health_score=None if mean is None else round(float(mean), 1),
        worst=[
            WorkspaceHealth(str(w), int(s), str(h), None if a is None else str(a))
            for w, s, h, a in worst_rows
        ],
        recent=_recent(database),
        open_commands=int(open_commands),
        dead_lettered=int(dead),
        awaiting_approval=awaiting_approval(database),
        interval_seconds=int(meta.get("interval_seconds", 60)),
        parked_workspaces=parked_workspaces(database, 100),
        commands=command_counts(database),
        sweeps=recent_sweeps(database, 5),
        playbooks=playbook_counts(database),
        playbook_runs=recent_playbook_runs(database, 5),
    )


def _recent(database: Database) -> list[IntervalCounts]:
    starts = [
        str(start)
        for (start,) in database.query(
            "SELECT DISTINCT interval_start FROM priority_metrics"
            " ORDER BY interval_start DESC LIMIT ?",
            (RECENT_INTERVALS,),
        )
    ]
    if not starts:
        return []
    marks = ", ".join("?" for _ in starts)
    counts = {
        start: IntervalCounts(start, dict.fromkeys(PRIORITIES, 0), dict.fromkeys(PRIORITIES, 0))
        for start in starts
    }
    for start, priority, decisions, actions in database.query(
        "SELECT interval_start, priority, decisions, actions FROM priority_metrics"
        f" WHERE interval_start IN ({marks})",
        starts,
    ):
        counts[str(start)].decisions[str(priority)] = int(decisions)
        counts[str(start)].actions[str(priority)] = int(actions)
    return [counts[start] for start in sorted(starts)]
