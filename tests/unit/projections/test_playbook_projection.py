"""The playbook_runs read model: one row per run, started running in its first step, moved and
counted by each step that ends, ended once by playbook.completed or playbook.failed; copies
folded once; the same rows however the ledger is cut into batches; the report's sections."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from app.report_cli import html_report
from core.projection_fold import Fold, PlaybookRow, Rows
from projections.database import Database
from projections.entries import decode_entry
from projections.playbooks import (
    PlaybookCounts,
    PlaybookRun,
    playbook_counts,
    recent_playbook_runs,
)
from projections.report import read_report
from projections.schema import READ_MODELS, rows_of
from projections.store import Projection, Record
from topics.ledger import LedgerKind, PlaybookEntry, PlaybookKinds, PlaybookPayload

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RECOVERY = "provisioning-recovery"
STARTED: Final = LedgerKind.PLAYBOOK_STARTED
STEP: Final = LedgerKind.PLAYBOOK_STEP_COMPLETED
COMPLETED: Final = LedgerKind.PLAYBOOK_COMPLETED
FAILED: Final = LedgerKind.PLAYBOOK_FAILED


def stamp(seconds: int) -> str:
    return f"{(T + timedelta(seconds=seconds)).isoformat()[:19]}.000000Z"


def playbook_entry(
    kind: PlaybookKinds,
    run_id: str,
    seconds: int,
    step: str | None = None,
    outcome: str | None = None,
    next_step: str | None = None,
    workspace_id: str = "ws-a",
    playbook: str = RECOVERY,
) -> PlaybookEntry:
    """An entry of `run_id` `seconds` after T, as the stage writes it: the ending entries name
    no next step, the run they carry stands on its end."""
    at = T + timedelta(seconds=seconds)
    where = next_step or {COMPLETED: "complete", FAILED: "fail"}.get(kind)
    cause = "decision" if kind is STARTED else "outcome"
    return PlaybookEntry(
        entry_id=f"pb-{run_id}-{seconds}-{kind.value.removeprefix('playbook.')}",
        kind=kind,
        workspace_id=workspace_id,
        correlation_id=f"sig-{run_id}",
        causation_id=f"{cause}-{run_id}-{seconds}",
        policy_version="p-test",
        recorded_at=at,
        payload=PlaybookPayload(
            run_id=run_id,
            playbook=playbook,
            step=step,
            outcome=outcome,
            next=next_step,
            commands=[],
            cause={"kind": cause, "id": f"{cause}-{run_id}", "at": int(at.timestamp())},
            run={
                "step": where,
                "since": int(at.timestamp()),
                "due": None,
                "playbook": playbook,
                "origin": {"decision": run_id, "rule": "provisioning.stuck", "lane": "high"},
            },
        ),
    )


def ledger() -> list[PlaybookEntry]:
    """run-done restarts and verifies, then completes; run-failed times out restarting and
    fails; run-open has restarted and is verifying. Workspaces interleave; each one's entries
    keep their order."""
    done = [
        playbook_entry(STARTED, "run-done", 0, next_step="restart"),
        playbook_entry(STEP, "run-done", 60, "restart", "succeeded", "verify"),
        playbook_entry(STEP, "run-done", 120, "verify", "succeeded", "complete"),
        playbook_entry(COMPLETED, "run-done", 120),
    ]
    failed = [
        playbook_entry(STARTED, "run-failed", 10, next_step="restart", workspace_id="ws-b"),
        playbook_entry(STEP, "run-failed", 70, "restart", "timed_out", "fail", "ws-b"),
        playbook_entry(FAILED, "run-failed", 70, workspace_id="ws-b"),
    ]
    running = [
        playbook_entry(STARTED, "run-open", 20, next_step="restart", workspace_id="ws-c"),
        playbook_entry(STEP, "run-open", 80, "restart", "succeeded", "verify", "ws-c"),
    ]
    stories = [done, failed, running]
    merged: list[PlaybookEntry] = []
    while any(stories):
        for story in stories:
            if story:
                merged.append(story.pop(0))
    return merged


def fold(*entries: PlaybookEntry) -> dict[str, PlaybookRow]:
    folding = Fold(Rows(), 60)
    for entry in entries:
        folding.add(decode_entry(entry.model_dump_json().encode()))
    return folding.rows.playbooks


def project(path: Path, entries: list[PlaybookEntry], batch: int, cold: bool = False) -> Database:
    database = Database.open(f"sqlite:///{path}")
    projection = Projection(database, "ledger", 60)
    records = [entry.model_dump_json().encode() for entry in entries]
    for start in range(0, len(records), batch):
        chunk = [Record(0, start + i, r) for i, r in enumerate(records[start : start + batch])]
        projection.apply(chunk, {0: (start, start + len(chunk))})
        if cold:
            projection._forget()  # every batch reads its rows back from the database
    return database


def models(database: Database) -> dict[str, list[tuple[object, ...]]]:
    """Every read model; of ledger_entries the ids (a copy moves the offsets after it)."""
    found = {table: rows_of(database, table) for table in READ_MODELS}
    found["ledger_entries"] = [row[:1] for row in found["ledger_entries"]]
    database.close()
    return found


def test_a_started_run_is_running_in_its_first_step() -> None:
    """Given a playbook.started, when folded, then its run is running in its first step, with
    its playbook, workspace and rule, started then and not ended."""
    rows = fold(playbook_entry(STARTED, "run-1", 0, next_step="restart"))

    assert rows == {
        "run-1": PlaybookRow(
            run_id="run-1",
            workspace_id="ws-a",
            playbook=RECOVERY,
            rule_id="provisioning.stuck",
            status="running",
            step="restart",
            steps_completed=0,
            last_outcome=None,
            started_at=stamp(0),
            updated_at=stamp(0),
            ended_at=None,
        )
    }


def test_each_step_that_ends_moves_the_run_and_counts() -> None:
    """Given a run started and its first step ended, when folded, then the run is in the next
    step, one step completed, with that step's outcome, still running."""
    rows = fold(
        playbook_entry(STARTED, "run-1", 0, next_step="restart"),
        playbook_entry(STEP, "run-1", 60, "restart", "succeeded", "verify"),
    )

    row = rows["run-1"]
    assert (row.status, row.step, row.steps_completed, row.last_outcome) == (
        "running",
        "verify",
        1,
        "succeeded",
    )
    assert (row.started_at, row.updated_at, row.ended_at) == (stamp(0), stamp(60), None)


def test_completed_and_failed_end_their_runs_once() -> None:
    """Given one run completed and one failed, then each ends on its end with its time, its
    steps counted and the last step's outcome; an entry after the end changes nothing."""
    rows = fold(*ledger(), playbook_entry(STEP, "run-failed", 90, "late", "succeeded", "verify"))

    done, failed = rows["run-done"], rows["run-failed"]
    assert (done.status, done.step, done.steps_completed, done.last_outcome, done.ended_at) == (
        "completed",
        "complete",
        2,
        "succeeded",
        stamp(120),
    )
    assert (failed.status, failed.step, failed.steps_completed, failed.last_outcome) == (
        "failed",
        "fail",
        1,
        "timed_out",
    )
    assert (failed.updated_at, failed.ended_at) == (stamp(70), stamp(70))


def test_a_copy_of_an_entry_changes_nothing(tmp_path: Path) -> None:
    """Given the ledger with copies of a step's entry (in the same batch and in later batches,
    read back from the database), when projected, then every read model is as without them."""
    entries = ledger()
    step = entries[3]  # run-done's restart ended
    assert step.kind is STEP and step.payload.run_id == "run-done"
    copied = [*entries[:4], step, *entries[4:], step]

    whole = models(project(tmp_path / "whole.sqlite3", entries, 1000))

    assert models(project(tmp_path / "copies.sqlite3", copied, 1000)) == whole
    assert models(project(tmp_path / "cold.sqlite3", copied, 2, cold=True)) == whole
    assert [row[6] for row in whole["playbook_runs"]] == [2, 1, 1]


def test_batches_and_reads_give_the_same_rows_and_the_report_lists_the_runs(
    tmp_path: Path,
) -> None:
    """Given the three runs, when projected at once and in batches of 2 read back from the
    database, then the rows are the same: counts per playbook and the latest runs first."""
    whole = project(tmp_path / "whole.sqlite3", ledger(), 1000)
    cold = project(tmp_path / "cold.sqlite3", ledger(), 2, cold=True)

    assert playbook_counts(whole) == [PlaybookCounts(RECOVERY, 1, 1, 1)]
    runs = recent_playbook_runs(whole)
    assert [(r.run_id, r.status, r.step, r.ended_at) for r in runs] == [
        ("run-open", "running", "verify", None),
        ("run-failed", "failed", "fail", stamp(70)),
        ("run-done", "completed", "complete", stamp(120)),
    ]
    assert runs[0] == PlaybookRun(
        "run-open", "ws-c", RECOVERY, "provisioning.stuck", "running", "verify", 1,
        "succeeded", stamp(20), stamp(80), None,
    )  # fmt: skip
    assert recent_playbook_runs(cold) == runs
    assert models(cold) == models(whole)


def test_the_report_shows_the_playbooks_escaped(tmp_path: Path) -> None:
    """Given the runs and one of a playbook whose id holds markup, when reported as HTML, then
    the Playbooks sections count the runs per playbook and list the latest, text escaped."""
    odd = playbook_entry(
        STARTED, "run-odd", 30, next_step="<b>", workspace_id="ws-d", playbook="<i>"
    )
    database = project(tmp_path / "p.sqlite3", [*ledger(), odd], 1000)

    page = html_report(read_report(database))
    database.close()

    assert "<h2>Playbooks</h2>" in page and "<h2>Recent playbook runs</h2>" in page
    counts = re.search(r"<h2>Playbooks</h2><table>.*?</table>", page)
    assert counts is not None
    assert (
        f"<tr><td>{RECOVERY}</td>"
        '<td class="num">1</td><td class="num">1</td><td class="num">1</td></tr>'
    ) in counts.group()
    assert (
        f"<tr><td>ws-b</td><td>{RECOVERY}</td><td>failed</td><td>fail</td>"
        f"<td>{stamp(10)}</td><td>{stamp(70)}</td></tr>"
    ) in page
    assert "<td>ws-d</td><td>&lt;i&gt;</td><td>running</td><td>&lt;b&gt;</td>" in page
    assert "<i>" not in page and "<b>" not in page
