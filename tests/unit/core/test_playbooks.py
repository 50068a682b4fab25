"""Playbooks as data, and how a run moves on: fan-out, fan-in, deadlines, waits, compensation
and the replay of a recorded transition."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from core.playbooks import (
    COMPLETE,
    FAIL,
    Advance,
    Origin,
    Playbook,
    on_due,
    on_outcome,
    on_signal,
    replay_transition,
    start,
)
from core.rules import PolicyError, parse_policy, seed_policy
from topics.commands import Action, Priority

ORIGIN = Origin("dec-1", "rule.x", Priority.HIGH, "sig-1", dry_run=False)


def playbook(*steps: dict[str, Any]) -> Playbook:
    return Playbook.model_validate({"id": "pb", "steps": list(steps)})


def kinds(advance: Advance) -> list[tuple[str, str | None, str | None, str | None]]:
    return [(m.kind.value, m.step, m.outcome, m.next) for m in advance.moves]


RECOVERY = playbook(
    {
        "id": "provision",
        "action": "run_provisioning",
        "on_success": "verify",
        "on_failure": "again",
        "compensate": "trigger_reconciliation",
    },
    {"id": "verify", "action": "verify_health", "on_success": "notify", "on_failure": "again"},
    {"id": "again", "action": "run_provisioning"},
    {"id": "notify", "action": "send_followup"},
)


def test_a_run_starts_on_its_decisions_command_and_follows_success() -> None:
    started = start(RECOVERY, "run-1", "ws-1", ORIGIN, "cmd-first", 1000)
    assert kinds(started) == [("playbook.started", None, None, "provision")]
    assert [c.command_id for c in started.commands] == ["cmd-first"]
    assert started.run["pending"] == {"cmd-first": ""}

    verified = on_outcome(RECOVERY, started.run, "cmd-first", True, (), 1010)
    assert verified is not None
    assert kinds(verified) == [("playbook.step_completed", "provision", "succeeded", "verify")]
    (verify,) = verified.commands
    assert (verify.action, verify.step, verify.target) == (Action.VERIFY_HEALTH, "verify", None)

    notified = on_outcome(RECOVERY, verified.run, verify.command_id, True, (), 1020)
    assert notified is not None
    (notify,) = notified.commands
    done = on_outcome(RECOVERY, notified.run, notify.command_id, True, (), 1030)
    assert done is not None and done.ended
    assert kinds(done) == [
        ("playbook.step_completed", "notify", "succeeded", COMPLETE),
        ("playbook.completed", None, None, None),
    ]
    assert done.commands == []


def test_a_failure_takes_the_failure_branch_and_a_failed_run_compensates() -> None:
    started = start(RECOVERY, "run-1", "ws-1", ORIGIN, "cmd-first", 1000)
    verified = on_outcome(RECOVERY, started.run, "cmd-first", True, (), 1010)
    assert verified is not None
    again = on_outcome(RECOVERY, verified.run, verified.commands[0].command_id, False, (), 1020)
    assert again is not None
    assert kinds(again) == [("playbook.step_completed", "verify", "failed", "again")]
    failed = on_outcome(RECOVERY, again.run, again.commands[0].command_id, False, (), 1030)
    assert failed is not None and failed.ended and failed.run["step"] == FAIL
    assert kinds(failed)[-1] == ("playbook.failed", None, None, None)
    # The provisioning that succeeded is compensated; the failed steps are not.
    assert [(c.step, c.action) for c in failed.commands] == [
        ("provision", Action.TRIGGER_RECONCILIATION)
    ]


def test_copies_and_unknown_commands_move_nothing() -> None:
    started = start(RECOVERY, "run-1", "ws-1", ORIGIN, "cmd-first", 1000)
    moved = on_outcome(RECOVERY, started.run, "cmd-first", True, (), 1010)
    assert moved is not None
    assert on_outcome(RECOVERY, moved.run, "cmd-first", True, (), 1011) is None
    assert on_outcome(RECOVERY, started.run, "cmd-other", True, (), 1011) is None


SWEEP = playbook(
    {"id": "list", "action": "check_integrations", "on_success": "restart"},
    {
        "id": "restart",
        "action": "restart_integration",
        "for_each": "list",
        "deadline_seconds": 900,
        "on_success": "report",
        "on_failure": "fail",
    },
    {"id": "report", "action": "send_followup"},
)


def listed(items: tuple[str, ...]) -> Advance:
    started = start(SWEEP, "run-2", "ws-2", ORIGIN, "cmd-list", 1000)
    fanned = on_outcome(SWEEP, started.run, "cmd-list", True, items, 1010)
    assert fanned is not None
    return fanned


def test_fan_out_one_command_per_item_and_fan_in_waits_for_all() -> None:
    fanned = listed(("crm", "mail"))
    restarts = fanned.commands
    assert [(c.action, c.target) for c in restarts] == [
        (Action.RESTART_INTEGRATION, "crm"),
        (Action.RESTART_INTEGRATION, "mail"),
    ]
    assert len({c.command_id for c in restarts}) == 2
    assert fanned.run["due"] == 1010 + 900
    first = on_outcome(SWEEP, fanned.run, restarts[0].command_id, True, (), 1020)
    assert first is not None and first.moves == () and first.run["step"] == "restart"
    both = on_outcome(SWEEP, first.run, restarts[1].command_id, True, (), 1030)
    assert both is not None
    assert kinds(both) == [("playbook.step_completed", "restart", "succeeded", "report")]


def test_fan_in_fails_on_its_deadline_and_on_a_lost_branch() -> None:
    fanned = listed(("crm", "mail"))
    one = on_outcome(SWEEP, fanned.run, fanned.commands[0].command_id, True, (), 1020)
    assert one is not None
    assert on_due(SWEEP, one.run, 1909) is None  # not yet
    late = on_due(SWEEP, one.run, 1910)
    assert late is not None and late.ended
    assert kinds(late)[0] == ("playbook.step_completed", "restart", "timed_out", FAIL)
    # The straggler after the step ended moves nothing.
    assert on_outcome(SWEEP, late.run, fanned.commands[1].command_id, True, (), 1920) is None

    lost = on_outcome(SWEEP, fanned.run, fanned.commands[0].command_id, False, (), 1020)
    assert lost is not None and lost.ended and kinds(lost)[0][2] == "failed"


def test_a_fan_out_over_nothing_succeeds_at_once() -> None:
    fanned = listed(())
    assert kinds(fanned) == [
        ("playbook.step_completed", "list", "succeeded", "restart"),
        ("playbook.step_completed", "restart", "succeeded", "report"),
    ]
    assert [c.action for c in fanned.commands] == [Action.SEND_FOLLOWUP]


def test_need_n_of_a_fan_out() -> None:
    some = playbook(
        {"id": "list", "action": "check_integrations", "on_success": "restart"},
        {"id": "restart", "action": "restart_integration", "for_each": "list", "need": 1},
    )
    started = start(some, "run-3", "ws-3", ORIGIN, "cmd-list", 1000)
    fanned = on_outcome(some, started.run, "cmd-list", True, ("a", "b"), 1010)
    assert fanned is not None
    failed_one = on_outcome(some, fanned.run, fanned.commands[0].command_id, False, (), 1011)
    assert failed_one is not None and failed_one.moves == ()
    ok = on_outcome(some, failed_one.run, fanned.commands[1].command_id, True, (), 1012)
    assert ok is not None and ok.ended and ok.run["step"] == COMPLETE


def test_waits_for_time_or_for_a_signal() -> None:
    waits = playbook(
        {"id": "provision", "action": "run_provisioning", "on_success": "settle"},
        {"id": "settle", "wait_seconds": 300, "on_success": "watch"},
        {"id": "watch", "wait_seconds": 600, "until": ["heartbeat"], "on_failure": "fail"},
    )
    started = start(waits, "run-4", "ws-4", ORIGIN, "cmd-1", 1000)
    settling = on_outcome(waits, started.run, "cmd-1", True, (), 1000)
    assert settling is not None and settling.commands == [] and settling.run["due"] == 1300
    assert on_signal(waits, settling.run, "heartbeat", 1100) is None  # not what it waits for
    watching = on_due(waits, settling.run, 1300)
    assert watching is not None
    assert kinds(watching) == [("playbook.step_completed", "settle", "succeeded", "watch")]
    assert on_signal(waits, watching.run, "heartbeat", 1299) is None  # older than the wait
    heard = on_signal(waits, watching.run, "heartbeat", 1400)
    assert heard is not None and heard.run["step"] == COMPLETE
    silent = on_due(waits, watching.run, 1900)
    assert silent is not None and kinds(silent)[0][2] == "timed_out"
    assert silent.run["step"] == FAIL


def test_a_recorded_fan_in_replays_from_the_run_before_it() -> None:
    fanned = listed(("crm", "mail"))
    first, second = fanned.commands
    partial = on_outcome(SWEEP, fanned.run, first.command_id, True, (), 1020)
    assert partial is not None
    live = on_outcome(SWEEP, partial.run, second.command_id, True, (), 1030)
    assert live is not None
    cause = {
        "kind": "outcome",
        "id": second.command_id,
        "at": 1030,
        "succeeded": True,
        "earlier": [[first.command_id, True]],
    }
    replayed = replay_transition(SWEEP, fanned.run, cause)
    assert replayed is not None
    assert (replayed.run, replayed.moves) == (live.run, live.moves)
    # The same cause with the earlier branch failed is not what was recorded.
    cause["earlier"] = [[first.command_id, False]]
    assert replay_transition(SWEEP, fanned.run, cause) is None


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([{"id": "a", "action": "run_provisioning", "on_success": "a"}], "branch forward"),
        ([{"id": "a", "action": "run_provisioning", "on_success": "nowhere"}], "branch forward"),
        ([{"id": "a", "wait_seconds": 5}], "first step must be a single action"),
        (
            [
                {"id": "a", "action": "run_provisioning", "on_success": "b"},
                {"id": "b", "action": "restart_integration", "for_each": "c"},
            ],
            "not an earlier single-action step",
        ),
        ([{"id": "a", "action": "run_provisioning", "wait_seconds": 3}], "either `action`"),
        ([{"id": "complete", "action": "run_provisioning"}], "reserved"),
    ],
)
def test_malformed_playbooks_are_refused_with_the_reason(
    steps: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        playbook(*steps)


RULES = """
[[rules]]
id = "r.start"
on = ["provisioning_failed"]
playbook = "pb"
priority = 9
cooldown_seconds = 60

[[playbooks]]
id = "pb"
[[playbooks.steps]]
id = "first"
action = "run_provisioning"
"""


def test_a_rule_that_starts_a_playbook_asks_for_its_first_action() -> None:
    policy = parse_policy(RULES, "test")
    (rule,) = policy.spec.rules
    assert (rule.action, rule.playbook) == (Action.RUN_PROVISIONING, "pb")
    assert policy.playbook_of["r.start"].id == "pb"
    with pytest.raises(PolicyError, match="which no \\[\\[playbooks\\]\\] entry defines"):
        parse_policy(RULES.replace('playbook = "pb"', 'playbook = "other"'), "test")
    with pytest.raises(PolicyError, match="its action is the playbook's first step's"):
        parse_policy(
            RULES.replace('playbook = "pb"', 'playbook = "pb"\naction = "retry_failed"'), "t"
        )
    # Playbooks are part of the version.
    changed = parse_policy(RULES.replace('id = "first"', 'id = "second"'), "test")
    assert changed.version != policy.version


def test_the_seed_ships_both_playbooks() -> None:
    policy = seed_policy()
    assert set(policy.playbooks) == {"provisioning-recovery", "integration-sweep"}
    assert policy.playbook_of["playbook.provisioning_failed"].id == "provisioning-recovery"
