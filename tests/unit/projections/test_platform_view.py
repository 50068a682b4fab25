"""The platform view `/snapshot` and the console read: commands per status (the seed's queue and
pending gauges), dead letters, parked workspaces, the latest sweep runs and playbook runs, from a
projection of a real ledger's entries into SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from actions.reconciler import TerminalError
from core.ledger_entries import (
    dead_lettered_entry,
    held_entry,
    parked_entry,
    started_entry,
    succeeded_entry,
    sweep_entry,
)
from core.sweeps import SweepRun as Run
from projections.database import Database
from projections.platform_view import platform_view
from projections.playbooks import PlaybookCounts
from projections.store import Projection, Record
from projections.sweeps import SweepRun
from tests.support import factories
from tests.unit.projections.test_playbook_projection import playbook_entry
from topics.commands import Command
from topics.ledger import LedgerEntry, LedgerKind

T = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def command(workspace: str, n: int) -> Command:
    return factories.command(f"{workspace}-{n}", workspace, rule_id="test.view")


def ledger() -> list[LedgerEntry]:
    """ws-ok: one command succeeds, one runs; ws-bad: one dead-lettered parks it and one is
    held behind it; then a daily sweep ran on two shards; a playbook run started on ws-bad."""
    ok, running = command("ws-ok", 1), command("ws-ok", 2)
    dead, later = command("ws-bad", 1), command("ws-bad", 2)
    lettered = dead_lettered_entry(dead, T, TerminalError("422"))
    run = Run("daily", "tick-d", int(T.timestamp()), 0, 40, 3, 3, 2, 2, 0, 2, 0, 13, 7)
    return [
        started_entry(ok, T, T + timedelta(minutes=5), "w-1"),
        succeeded_entry(ok, T, {}),
        started_entry(running, T, T + timedelta(minutes=5), "w-1"),
        lettered,
        parked_entry(lettered, T, 86_400, 0, T),
        held_entry(later, dead.command_id, 1, T),
        sweep_entry(run, None, T),
        sweep_entry(replace(run, partition=1, workspaces=35, actions=1), None, T),
        playbook_entry(
            LedgerKind.PLAYBOOK_STARTED, "run-bad", 0, next_step="restart", workspace_id="ws-bad"
        ),
    ]


def test_the_view_counts_commands_per_status_and_shows_parkings_sweeps_and_playbooks(
    tmp_path: Path,
) -> None:
    """Given that ledger projected, then the view counts one command per status, one dead
    letter, ws-bad parked holding one command, the sweep's two shards as one run, and ws-bad's
    playbook run running in its first step."""
    database = Database.open(f"sqlite:///{tmp_path / 'p.sqlite3'}")
    records = [Record(0, n, e.model_dump_json().encode()) for n, e in enumerate(ledger())]
    Projection(database, "ledger", 60).apply(records, {0: (0, len(records))})

    view = platform_view(database)

    assert view.commands == {"dead_lettered": 1, "held": 1, "running": 1, "succeeded": 1}
    assert view.dead_lettered == 1
    assert [(p.workspace_id, p.queued) for p in view.parked_workspaces] == [("ws-bad", 1)]
    assert view.sweeps == [
        SweepRun("daily", "2026-12-07T10:00:00.000000Z", None, 2, 75, 6, 4, 3, 4, 0)
    ]
    assert view.as_json()["sweeps"][0]["actions"] == 3
    assert view.playbooks == [PlaybookCounts("provisioning-recovery", 1, 0, 0)]
    assert [(r.workspace_id, r.status, r.step) for r in view.playbook_runs] == [
        ("ws-bad", "running", "restart")
    ]
    assert view.as_json()["playbook_runs"][0]["run_id"] == "run-bad"
    database.close()
