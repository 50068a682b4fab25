"""What `autopilot report` shows, read from the read models with plain, portable SELECTs.

Reading is a handful of queries; everything after them (the shared timeline, bucketing, the
order of lanes and statuses) is pure over their rows, so the same rows give the same report.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from core.health import HealthStatus
from projections.database import Database
from projections.parked import ParkedWorkspace, parked_workspaces
from projections.playbooks import (
    PlaybookCounts,
    PlaybookRun,
    playbook_counts,
    recent_playbook_runs,
)
from projections.schema import SCHEMA_VERSION, TABLES
from projections.sweeps import SweepRun, recent_sweeps
from topics.commands import Priority
from topics.errors import AutopilotError

# More buckets than this would make bars thinner than a pixel or two in the HTML charts.
MAX_BUCKETS = 60
TERMINAL_STATUSES = ("succeeded", "skipped", "dead_lettered", "rejected")
# Not yet ended, in lifecycle order (the order they appear in tables and legends).
IN_FLIGHT_STATUSES = (
    "decided",
    "deferred",
    "running",
    "retrying",
    "breaker_deferred",
    "awaiting_approval",
    "approved",
    "held",
)
STATUSES = TERMINAL_STATUSES + IN_FLIGHT_STATUSES
PRIORITIES = tuple(priority.value for priority in Priority)
HEALTH_STATUSES = tuple(status.value for status in HealthStatus)


class ProjectionsMissingError(AutopilotError):
    """The database holds no read models (or ones of another schema version)."""


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over every interval of run_metrics; workspaces_affected is counted distinct."""

    intervals: int
    signals_processed: int
    signals_rejected: int
    decisions_made: int
    decisions_deferred: int
    decisions_suppressed: int
    actions_started: int
    actions_succeeded: int
    actions_failed: int
    actions_dead_lettered: int
    errors: int
    workspaces_affected: int


# Totals' other fields are run_metrics' columns of the same name, summed.
_RUN_COUNTS = tuple(f.name for f in fields(Totals))[1:-1]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Buckets of whole intervals from the first interval seen to the last, gaps included."""

    starts: tuple[str, ...]
    interval_seconds: int
    intervals_per_bucket: int
    intervals: int

    def intervals_in(self, index: int) -> int:
        """How many intervals bucket `index` spans (the last one may be short)."""
        return min(self.intervals_per_bucket, self.intervals - index * self.intervals_per_bucket)


@dataclass(frozen=True, slots=True)
class Series:
    """One named value per bucket of the timeline."""

    name: str
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Outcomes:
    """How many commands of one action are in each status."""

    action: str
    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        """Every command of the action."""
        return sum(count for _, count in self.counts)

    def count(self, status: str) -> int:
        """Commands of the action in this status."""
        return dict(self.counts).get(status, 0)


@dataclass(frozen=True, slots=True)
class WorkspaceCommands:
    """A workspace's commands, by how they stand."""

    workspace_id: str
    commands: int
    succeeded: int
    dead_lettered: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class Circuit:
    """One worker's breaker for one provider."""

    worker: str
    provider: str
    state: str
    failures: int
    changed_at: str


@dataclass(frozen=True, slots=True)
class DeadLetteredCommand:
    """A command that ended on the dead-letter topic."""

    command_id: str
    workspace_id: str
    action: str
    priority: str
    rule_id: str
    attempts: int
    finished_at: str | None
    error_class: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Position:
    """The next offset the projector reads from one partition."""

    topic: str
    partition_id: int
    next_offset: int


@dataclass(frozen=True, slots=True)
class Report:
    """Everything `autopilot report` shows."""

    source: str
    positions: tuple[Position, ...]
    totals: Totals
    timeline: Timeline
    decisions: tuple[Series, ...]
    actions: tuple[Series, ...]
    health: tuple[Series, ...]
    outcomes: tuple[Outcomes, ...]
    top_workspaces: tuple[WorkspaceCommands, ...]
    workspaces: int
    open_commands: int
    parked_commands: int
    circuits: tuple[Circuit, ...]
    dead_lettered: tuple[DeadLetteredCommand, ...]
    parked_workspaces: tuple[ParkedWorkspace, ...] = ()
    sweeps: tuple[SweepRun, ...] = ()
    playbooks: tuple[PlaybookCounts, ...] = ()
    playbook_runs: tuple[PlaybookRun, ...] = ()


def require_projections(database: Database) -> None:
    """Refuse a database without the read models, saying how to build them."""
    if database.dialect == "postgresql":
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
    missing = sorted(set(TABLES) - {str(name) for (name,) in database.query(sql)})
    if missing:
        which = "" if len(missing) == len(TABLES) else f" (missing: {', '.join(missing)})"
        raise ProjectionsMissingError(
            f"the projections database {database.where} has no read models{which}: build them "
            "from the ledger with `autopilot replay`, or start a worker (`autopilot worker`) so "
            "its projector fills them in"
        )
    version = dict(database.query("SELECT key, value FROM projection_meta")).get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise ProjectionsMissingError(
            f"the projections database {database.where} has schema version {version}, not "
            f"{SCHEMA_VERSION}: rebuild it with `autopilot replay` into a fresh database"
        )


def read_report(
    database: Database, top: int = 10, recent: int = 10, max_buckets: int = MAX_BUCKETS
) -> Report:
    """Read the report from a database that holds the read models."""
    meta = dict(database.query("SELECT key, value FROM projection_meta"))
    interval = int(meta.get("interval_seconds", 60))
    sums = ", ".join(f"COALESCE(SUM({name}), 0)" for name in _RUN_COUNTS)
    (run,) = database.query(f"SELECT COUNT(*), {sums} FROM run_metrics")
    (affected,) = database.query(
        "SELECT COUNT(DISTINCT workspace_id) FROM interval_workspaces WHERE affected <> 0"
    )
    lanes = database.query(
        "SELECT interval_start, priority, decisions, actions FROM priority_metrics"
    )
    health = database.query(
        "SELECT interval_start, health_status, COUNT(*) FROM interval_workspaces"
        " WHERE health_status IS NOT NULL GROUP BY interval_start, health_status"
    )
    outcomes = database.query(
        "SELECT action, status, COUNT(*) FROM action_history GROUP BY action, status"
    )
    terminal = ", ".join("?" for _ in TERMINAL_STATUSES)
    workspaces = database.query(
        "SELECT workspace_id, COUNT(*),"
        " SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END),"
        " SUM(CASE WHEN status = 'dead_lettered' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN status IN ({terminal}) THEN 0 ELSE 1 END)"
        " FROM action_history GROUP BY workspace_id ORDER BY 2 DESC, 1 LIMIT ?",
        (*TERMINAL_STATUSES, top),
    )
    (status,) = database.query(
        "SELECT COUNT(*), COALESCE(SUM(open_commands), 0), COALESCE(SUM(parked_commands), 0)"
        " FROM workspace_status"
    )
    circuits = database.query(
        "SELECT worker, provider, state, failures, changed_at FROM circuit_states"
        " ORDER BY worker, provider"
    )
    # COALESCE: PostgreSQL sorts NULLs first in DESC order and SQLite last; neither is wanted.
    dead = database.query(
        "SELECT command_id, workspace_id, action, priority, rule_id, attempts, finished_at,"
        " last_error_class, last_error FROM action_history WHERE status = 'dead_lettered'"
        " ORDER BY COALESCE(finished_at, '') DESC, command_id LIMIT ?",
        (recent,),
    )
    positions = database.query(
        "SELECT topic, partition_id, next_offset FROM projection_positions"
        " ORDER BY topic, partition_id"
    )
    timeline = timeline_of([row[0] for row in lanes + health], interval, max_buckets)
    return Report(
        source=database.where,
        positions=tuple(Position(str(t), int(p), int(o)) for t, p, o in positions),
        totals=Totals(
            intervals=int(run[0]),
            **{name: int(value) for name, value in zip(_RUN_COUNTS, run[1:], strict=True)},
            workspaces_affected=int(affected[0]),
        ),
        timeline=timeline,
        decisions=bucketed(timeline, ((at, lane, n) for at, lane, n, _ in lanes), PRIORITIES),
        actions=bucketed(timeline, ((at, lane, n) for at, lane, _, n in lanes), PRIORITIES),
        health=bucketed(timeline, health, HEALTH_STATUSES, mean=True),
        outcomes=outcome_mix(outcomes),
        top_workspaces=tuple(
            WorkspaceCommands(str(ws), *(int(n) for n in counts)) for ws, *counts in workspaces
        ),
        workspaces=int(status[0]),
        open_commands=int(status[1]),
        parked_commands=int(status[2]),
        circuits=tuple(
            Circuit(str(w), str(p), str(s), int(f), str(c)) for w, p, s, f, c in circuits
        ),
        dead_lettered=tuple(_dead_lettered(row) for row in dead),
        parked_workspaces=tuple(parked_workspaces(database, 100)),
        sweeps=tuple(recent_sweeps(database, 20)),
        playbooks=tuple(playbook_counts(database)),
        playbook_runs=tuple(recent_playbook_runs(database, 20)),
    )


def timeline_of(starts: Iterable[str], interval_seconds: int, max_buckets: int) -> Timeline:
    """Every interval from the first start to the last, grouped into at most max_buckets."""
    seconds = sorted({_epoch(start) for start in starts})
    if not seconds:
        return Timeline((), interval_seconds, 1, 0)
    intervals = (seconds[-1] - seconds[0]) // interval_seconds + 1
    per_bucket = math.ceil(intervals / max_buckets)
    step = per_bucket * interval_seconds
    buckets = math.ceil(intervals / per_bucket)
    return Timeline(
        tuple(_iso(seconds[0] + index * step) for index in range(buckets)),
        interval_seconds,
        per_bucket,
        intervals,
    )


def bucketed(
    timeline: Timeline,
    rows: Iterable[Sequence[Any]],
    order: Sequence[str],
    mean: bool = False,
) -> tuple[Series, ...]:
    """(interval_start, name, count) rows summed per bucket; mean: per interval of the bucket."""
    if not timeline.starts:
        return ()
    first = _epoch(timeline.starts[0])
    step = timeline.interval_seconds * timeline.intervals_per_bucket
    totals: dict[str, list[float]] = {}
    for start, name, count in rows:
        values = totals.setdefault(str(name), [0] * len(timeline.starts))
        values[(_epoch(start) - first) // step] += int(count)
    if mean:
        # A snapshot per interval: averaging keeps "workspaces per interval" as the unit.
        for values in totals.values():
            for index in range(len(values)):
                values[index] /= timeline.intervals_in(index)
    return tuple(Series(name, tuple(totals[name])) for name in _ordered(totals, order))


def outcome_mix(rows: Iterable[Sequence[Any]]) -> tuple[Outcomes, ...]:
    """(action, status, count) rows as each action's counts, statuses in lifecycle order."""
    per_action: dict[str, dict[str, int]] = {}
    for action, status, count in rows:
        per_action.setdefault(str(action), {})[str(status)] = int(count)
    return tuple(
        Outcomes(
            action,
            tuple((s, per_action[action][s]) for s in _ordered(per_action[action], STATUSES)),
        )
        for action in sorted(per_action)
    )


def _dead_lettered(row: Sequence[Any]) -> DeadLetteredCommand:
    command_id, workspace_id, action, priority, rule_id, attempts, *finished_and_error = row
    finished_at, error_class, error = finished_and_error
    return DeadLetteredCommand(
        str(command_id), str(workspace_id), str(action), str(priority), str(rule_id),
        int(attempts), finished_at, error_class, error,
    )  # fmt: skip


def _ordered(names: Iterable[str], order: Sequence[str]) -> list[str]:
    present = set(names)
    return [name for name in order if name in present] + sorted(present - set(order))


def _epoch(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp)
    # The tables hold UTC; a stamp without its `Z` must not be read as local time.
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
