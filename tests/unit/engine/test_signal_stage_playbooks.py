"""Playbook runs through the signal stage (real RocksDB store): a rule starts a run on its
decision's command, outcomes on the control partition move it on (a copy does nothing), a
fan-out issues one command per item and a tick past its deadline takes the failure branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from core.rules import parse_policy
from tests.support.stage_shard import CONTROL, Shard
from topics.approvals import ParkingRequest
from topics.control import StepOutcome
from topics.ledger import DecisionEntry, PlaybookEntry

T = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)

POLICY = """
[timing]
tick_seconds = 10

[[rules]]
id = "recover"
on = ["provisioning_failed"]
playbook = "recovery"
priority = 9
cooldown_seconds = 0

[[rules]]
id = "sweep-integrations"
on = ["integration_offline"]
playbook = "sweep"
priority = 7
cooldown_seconds = 0

"""

PLAYBOOKS = """
[[playbooks]]
id = "recovery"
[[playbooks.steps]]
id = "provision"
action = "run_provisioning"
on_success = "verify"
[[playbooks.steps]]
id = "verify"
action = "verify_health"

[[playbooks]]
id = "sweep"
[[playbooks.steps]]
id = "list"
action = "check_integrations"
on_success = "restart"
[[playbooks.steps]]
id = "restart"
action = "restart_integration"
for_each = "list"
deadline_seconds = 600
"""


def shard(tmp_path: Path) -> Shard:
    return Shard(tmp_path, parse_policy(POLICY + PLAYBOOKS, "test"))


def outcome(command: dict[str, Any], succeeded: bool, at: datetime, *items: str) -> bytes:
    return (
        StepOutcome(
            run_id=command["playbook_run"],
            command_id=command["command_id"],
            workspace_id=command["workspace_id"],
            ended="action.succeeded" if succeeded else "action.dead_lettered",
            succeeded=succeeded,
            items=items,
            at=at,
        )
        .model_dump_json()
        .encode()
    )


def entries(out: list[Any]) -> list[tuple[str, str | None, str | None, str | None]]:
    return [
        (e.kind.value, e.payload.step, e.payload.outcome, e.payload.next)
        for e in out
        if isinstance(e, PlaybookEntry)
    ]


def commands(out: list[Any]) -> list[dict[str, Any]]:
    return [o for o in out if isinstance(o, dict)]


def test_a_run_starts_on_the_decisions_command_and_moves_once_per_outcome(
    tmp_path: Path,
) -> None:
    stage = shard(tmp_path)
    out = stage.signal("provisioning_failed", T, T, workspace_id="ws-a")
    (decision,) = [e for e in out if isinstance(e, DecisionEntry)]
    assert entries(out) == [("playbook.started", None, None, "provision")]
    (first,) = commands(out)
    assert first["command_id"] == decision.payload.command_id
    assert first["playbook_run"] == decision.payload.decision_id
    assert first["action"] == "run_provisioning"

    later = T + timedelta(seconds=30)
    moved = stage.feed(CONTROL, outcome(first, True, later), later)
    assert entries(moved) == [("playbook.step_completed", "provision", "succeeded", "verify")]
    (verify,) = commands(moved)
    assert (verify["action"], verify["playbook_run"]) == ("verify_health", first["playbook_run"])
    (step,) = [e for e in moved if isinstance(e, PlaybookEntry)]
    assert step.payload.commands == [verify["command_id"]]
    assert step.payload.cause["kind"] == "outcome"
    assert step.payload.cause["id"] == first["command_id"]

    # The executor wrote the outcome again (a crash before its table was written): nothing.
    assert stage.feed(CONTROL, outcome(first, True, later), later) == []

    done = stage.feed(CONTROL, outcome(verify, True, later), later)
    assert entries(done) == [
        ("playbook.step_completed", "verify", "succeeded", "complete"),
        ("playbook.completed", None, None, None),
    ]
    assert commands(done) == []
    state = stage.stage.workspace_state(stage.store, "ws-a")
    assert state is not None and "playbooks" not in state
    # Counted for the metrics (autopilot_playbook_runs, autopilot_playbook_inputs_ignored)
    totals = stage.stage.totals
    assert (
        totals["playbook", "recovery", "started"],
        totals["playbook", "recovery", "completed"],
    ) == (1, 1)
    assert totals["playbook_ignored", "copy"] == 1


def test_a_fan_out_waits_for_every_branch_and_fails_on_its_deadline(tmp_path: Path) -> None:
    stage = shard(tmp_path)
    out = stage.signal("integration_offline", T, T, workspace_id="ws-b", integration_id="crm")
    (listing,) = commands(out)
    fanned = stage.feed(CONTROL, outcome(listing, True, T, "crm", "mail"), T)
    restarts = commands(fanned)
    assert [(c["action"], c["target"]) for c in restarts] == [
        ("restart_integration", "crm"),
        ("restart_integration", "mail"),
    ]
    # One branch ends: the fan-in keeps waiting, and records nothing.
    assert stage.feed(CONTROL, outcome(restarts[0], True, T), T) == []
    # The timer tick before the deadline does nothing; the one at it fails the step.
    assert entries(stage.tick("timers", T + timedelta(seconds=590))) == []
    late = stage.tick("timers", T + timedelta(seconds=600))
    assert entries(late) == [
        ("playbook.step_completed", "restart", "timed_out", "fail"),
        ("playbook.failed", None, None, None),
    ]
    # And the failed run asks the shard's executor, in the same transaction, to park it
    (request,) = [o for o in late if isinstance(o, ParkingRequest)]
    assert (request.workspace_id, request.playbook, request.step, request.outcome) == (
        "ws-b",
        "sweep",
        "restart",
        "timed_out",
    )
    assert (request.run_id, request.command_id) == (listing["playbook_run"],) * 2
    # The straggler arrives after the run failed: nothing.
    assert stage.feed(CONTROL, outcome(restarts[1], True, T), T) == []


def test_a_fan_in_of_every_branch_succeeds_before_its_deadline(tmp_path: Path) -> None:
    stage = shard(tmp_path)
    out = stage.signal("integration_offline", T, T, workspace_id="ws-c", integration_id="crm")
    (listing,) = commands(out)
    first, second = commands(stage.feed(CONTROL, outcome(listing, True, T, "crm", "mail"), T))
    stage.feed(CONTROL, outcome(second, True, T), T)
    done = stage.feed(CONTROL, outcome(first, True, T), T)
    assert entries(done) == [
        ("playbook.step_completed", "restart", "succeeded", "complete"),
        ("playbook.completed", None, None, None),
    ]
    (step, _) = [e for e in done if isinstance(e, PlaybookEntry)]
    assert step.payload.cause["earlier"] == [[second["command_id"], True]]
    # Its deadline then finds nothing to do.
    assert entries(stage.tick("timers", T + timedelta(seconds=600))) == []


def test_an_outcome_for_a_run_this_shard_does_not_have_is_counted_not_acted_on(
    tmp_path: Path,
) -> None:
    stage = shard(tmp_path)
    stray = {"playbook_run": "run-x", "command_id": "cmd-x", "workspace_id": "ws-z"}
    assert stage.feed(CONTROL, outcome(stray, True, T), T) == []
    assert stage.stage.totals[("playbook_ignored", "unknown_run")] == 1
    assert orjson.loads(outcome(stray, True, T))["run_id"] == "run-x"


def test_a_failed_run_parks_nothing_when_the_policy_says_so(tmp_path: Path) -> None:
    policy = parse_policy("[parking]\nplaybooks = false\n" + POLICY + PLAYBOOKS, "test")
    stage = Shard(tmp_path, policy)
    out = stage.signal("provisioning_failed", T, T, workspace_id="ws-d")
    (first,) = commands(out)
    failed = stage.feed(CONTROL, outcome(first, False, T), T)
    assert entries(failed)[-1] == ("playbook.failed", None, None, None)
    assert [o for o in failed if isinstance(o, ParkingRequest)] == []
