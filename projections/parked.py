"""Workspaces parked by a dead letter, as the read model `parked_workspaces` holds them: what
`autopilot parked list`, `GET /parked`, the report and the platform view show."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from projections.database import Database


@dataclass(frozen=True, slots=True)
class ParkedWorkspace:
    """A workspace whose commands wait behind a dead letter, until an operator releases them."""

    workspace_id: str
    since: str
    reason: str
    dead_lettered: str
    action: str
    error_class: str
    queued: int

    def as_json(self) -> dict[str, Any]:
        """The workspace as the CLI's --json and the HTTP API give it."""
        return asdict(self)


def parked_workspaces(database: Database, limit: int = 1000) -> list[ParkedWorkspace]:
    """The parked workspaces, parked longest first."""
    rows = database.query(
        "SELECT workspace_id, since, reason, dead_lettered, action, error_class, queued"
        " FROM parked_workspaces ORDER BY since, workspace_id LIMIT ?",
        (limit,),
    )
    return [
        ParkedWorkspace(str(w), str(s), str(r), str(d), str(a), str(e), int(q))
        for w, s, r, d, a, e, q in rows
    ]
