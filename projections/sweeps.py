"""Sweep runs, as the read model `sweep_runs` holds them: one row per shard and tick, read back
one line per tick (its shards summed) for the report."""

from __future__ import annotations

from dataclasses import dataclass

from projections.database import Database


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One tick of a sweep across the shards that ran it."""

    schedule: str
    at: str
    requested_by: str | None
    shards: int
    workspaces: int
    evaluated: int
    decisions: int
    actions: int
    affected: int
    skipped: int


def recent_sweeps(database: Database, limit: int = 20) -> list[SweepRun]:
    """The latest sweep runs, newest first."""
    rows = database.query(
        "SELECT schedule, at, requested_by, COUNT(*), SUM(workspaces), SUM(evaluated),"
        " SUM(decisions), SUM(actions), SUM(affected), SUM(skipped)"
        " FROM sweep_runs GROUP BY tick_id, schedule, at, requested_by"
        " ORDER BY at DESC, schedule LIMIT ?",
        (limit,),
    )
    return [
        SweepRun(str(s), str(a), None if r is None else str(r), *(int(n) for n in numbers))
        for s, a, r, *numbers in rows
    ]
