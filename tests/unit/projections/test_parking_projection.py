"""The parked_workspaces read model: a dead letter parks a workspace (its row: since, why,
commands held), held commands count and stand as `held`, a release or a drop deletes the row;
the same rows however the ledger is cut into batches, from the cache or read back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from actions.reconciler import TerminalError
from core.ledger_entries import (
    dead_lettered_entry,
    held_entry,
    parked_entry,
    released_entry,
    skipped_entry,
    started_entry,
    succeeded_entry,
)
from core.projection_fold import Fold, ParkedRow, Rows
from projections.database import Database
from projections.entries import decode_entry
from projections.parked import ParkedWorkspace, parked_workspaces
from projections.schema import READ_MODELS, rows_of
from projections.store import Projection, Record
from tests.support import factories
from topics.approvals import ParkingRelease
from topics.commands import Command
from topics.ledger import LedgerEntry

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
REASON = "run_provisioning dead-lettered (TerminalError), command cmd-{ws}-dead"


def at(seconds: int) -> datetime:
    return T + timedelta(seconds=seconds)


def command(workspace: str, n: str) -> Command:
    return factories.command(f"{workspace}-{n}", workspace, rule_id="test.parking")


def release(workspace: str, drop: bool = False) -> ParkingRelease:
    return ParkingRelease(
        request_id=f"req-{workspace}",
        workspace_id=workspace,
        drop=drop,
        by="alice",
        requested_at=T,
    )


def parking(workspace: str, start: int, held: int) -> list[LedgerEntry]:
    """`workspace`'s command `dead` dead-lettered at `start`, parking it; then `held` commands
    held behind it, a second apart."""
    dead = dead_lettered_entry(command(workspace, "dead"), at(start), TerminalError("422"))
    entries: list[LedgerEntry] = [dead, parked_entry(dead, at(start), 86_400, 0, at(start))]
    for n in range(1, held + 1):
        entries.append(
            held_entry(command(workspace, str(n)), dead.payload.command_id, n, at(start + n))
        )
    return entries


def ledger() -> list[LedgerEntry]:
    """ws-kept stays parked holding two commands; ws-released is released and its command
    runs; ws-dropped is dropped and its two commands are skipped; ws-again is released by its
    TTL and parked again by its next command's dead letter."""
    kept = parking("ws-kept", 0, 2)
    released = [
        *parking("ws-released", 1, 1),
        released_entry(
            "ws-released", "cmd-ws-released-dead", at(1), release("ws-released"), 1, at(30)
        ),
        started_entry(command("ws-released", "1"), at(31), at(331), "w-1"),
        succeeded_entry(command("ws-released", "1"), at(32), {}),
    ]
    dropped = [
        *parking("ws-dropped", 2, 2),
        released_entry(
            "ws-dropped", "cmd-ws-dropped-dead", at(2), release("ws-dropped", True), 2, at(40)
        ),
        skipped_entry(command("ws-dropped", "1"), at(40), "dropped by operator"),
        skipped_entry(command("ws-dropped", "2"), at(40), "dropped by operator"),
    ]
    first = dead_lettered_entry(command("ws-again", "dead"), at(3), TerminalError("422"))
    second = dead_lettered_entry(command("ws-again", "1"), at(50), TerminalError("422"))
    again = [
        first,
        parked_entry(first, at(3), 10, 0, at(3)),
        held_entry(command("ws-again", "1"), "cmd-ws-again-dead", 1, at(4)),
        held_entry(command("ws-again", "2"), "cmd-ws-again-dead", 2, at(5)),
        released_entry("ws-again", "cmd-ws-again-dead", at(3), None, 2, at(49)),
        started_entry(command("ws-again", "1"), at(49), at(349), "w-1"),
        second,
        # cmd-ws-again-2 still waits behind the new parking
        parked_entry(second, at(50), 10, 1, at(50)),
    ]
    # Workspaces interleave; each one's entries keep their order.
    stories = [kept, released, dropped, again]
    merged: list[LedgerEntry] = []
    while any(stories):
        for story in stories:
            if story:
                merged.append(story.pop(0))
    return merged


def project(path: Path, batch: int, cold: bool = False) -> Database:
    database = Database.open(f"sqlite:///{path}")
    projection = Projection(database, "ledger", 60)
    records = [entry.model_dump_json().encode() for entry in ledger()]
    position = 0
    for start in range(0, len(records), batch):
        chunk = [Record(0, position + i, r) for i, r in enumerate(records[start : start + batch])]
        projection.apply(chunk, {0: (position, position + len(chunk))})
        position += len(chunk)
        if cold:
            projection._forget()  # every batch reads its rows back from the database
    return database


def test_the_parked_workspaces_are_those_not_released_with_their_held_commands(
    tmp_path: Path,
) -> None:
    """Given four workspaces' parkings, when projected, then only ws-kept (two held) and
    ws-again (parked again, one still held) are parked, longest first, with why and since."""
    database = project(tmp_path / "p.sqlite3", 1000)

    assert parked_workspaces(database) == [
        ParkedWorkspace(
            "ws-kept",
            "2026-12-07T09:00:00.000000Z",
            REASON.format(ws="ws-kept"),
            "cmd-ws-kept-dead",
            "run_provisioning",
            "TerminalError",
            2,
        ),
        ParkedWorkspace(
            "ws-again",
            "2026-12-07T09:00:50.000000Z",
            "run_provisioning dead-lettered (TerminalError), command cmd-ws-again-1",
            "cmd-ws-again-1",
            "run_provisioning",
            "TerminalError",
            1,
        ),
    ]
    status = dict(
        database.query(
            "SELECT command_id, status FROM action_history WHERE workspace_id = ?", ("ws-dropped",)
        )
    )
    assert status == {
        "cmd-ws-dropped-dead": "dead_lettered",
        "cmd-ws-dropped-1": "skipped",
        "cmd-ws-dropped-2": "skipped",
    }
    held = database.query("SELECT command_id FROM action_history WHERE status = 'held'")
    assert sorted(c for (c,) in held) == ["cmd-ws-again-2", "cmd-ws-kept-1", "cmd-ws-kept-2"]
    database.close()


def test_batches_and_reads_give_the_same_read_models(tmp_path: Path) -> None:
    """Given the parkings' ledger, when projected at once, in batches of 3, and in batches of 4
    each read back from the database, then every read model is the same."""

    def models(database: Database) -> dict[str, list[tuple[object, ...]]]:
        found = {table: rows_of(database, table) for table in READ_MODELS}
        database.close()
        return found

    whole = models(project(tmp_path / "whole.sqlite3", 1000))

    assert models(project(tmp_path / "small.sqlite3", 3)) == whole
    assert models(project(tmp_path / "cold.sqlite3", 4, cold=True)) == whole
    assert len(whole["parked_workspaces"]) == 2


def test_an_odd_parking_payload_is_folded_as_far_as_it_makes_sense() -> None:
    """Given a workspace.parked entry whose `since` is not a timestamp, and an action.parked for
    a workspace with no parking row, when folded, then the row's since is the entry's time and
    the stray held command only changes its own status."""
    dead = dead_lettered_entry(command("ws-odd", "dead"), at(0), TerminalError("422"))
    entry = parked_entry(dead, at(0), 0, 0, at(7)).model_dump(mode="json")
    entry["payload"]["since"] = "yesterday"
    stray = held_entry(command("ws-stray", "1"), "cmd-x", 1, at(8))
    fold = Fold(Rows(), 60)

    fold.add(decode_entry(orjson.dumps(entry)))
    fold.add(decode_entry(stray.model_dump_json().encode()))

    assert fold.rows.parked == {
        "ws-odd": ParkedRow(
            "ws-odd",
            "2026-12-07T09:00:07.000000Z",
            REASON.format(ws="ws-odd"),
            "cmd-ws-odd-dead",
            "run_provisioning",
            "TerminalError",
            0,
        )
    }
    assert fold.rows.actions["cmd-ws-stray-1"].status == "held"
