"""One evaluation of the policy: cooldowns, the daily budget, the platform cap with deferral,
exempt lanes, the operator's switches, the decision's ids, and re-deriving a decision from the
inputs it recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import pytest

from core import windows
from core.decide import command_of, decide_signals, initial_quota
from core.ledger_entries import decision_payload
from core.policy import (
    Decision,
    DecisionKind,
    Inputs,
    Mode,
    command_id_of,
    decision_id_of,
    evaluate,
    may_fire,
    quota_window,
    shard_share,
)
from core.rules import Policy, parse_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from tests.support.factories import E0, SEED_POLICY, signal_at
from topics.commands import Action, Priority
from topics.signals import Signal, SignalType

DAY = 86_400
CONFIG = WindowConfig(grace_seconds=60)
SOURCE = SourcePosition("signals", 2, 40)
WEBHOOK = SignalType.WEBHOOK_FAILED
OFFLINE = SignalType.INTEGRATION_OFFLINE
MADE, DEFERRED, SUPPRESSED = DecisionKind.MADE, DecisionKind.DEFERRED, DecisionKind.SUPPRESSED

# A tight policy: "retry" (medium lane) may repeat at once; "page" is in the exempt lane.
TIGHT = parse_policy(
    """
[limits]
workspace_daily_budget = 3
platform_cap_per_interval = 2
interval_seconds = 60
defer_max_intervals = 2

[[rules]]
id = "retry"
on = ["webhook_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 0

[[rules]]
id = "page"
on = ["integration_offline"]
action = "restart_integration"
priority = 10
cooldown_seconds = 0
""",
    "tight.toml",
)
BUDGET_SPENT = "workspace daily budget spent: {} of 3 actions on day 19723"
CAP_REACHED = (
    "platform cap reached: this shard's 2 actions per 60 s are taken for the next 3 intervals"
)


def inputs(signal_type: SignalType = WEBHOOK, **overrides: Any) -> Inputs:
    """The inputs of an evaluation at E0 of one signal of ws-1, nothing issued or used."""
    fields: dict[str, Any] = {
        "workspace_id": "ws-1",
        "signal_id": "s1",
        "signal_type": signal_type.value,
        "signal_at": E0,
        "source": SOURCE,
        "at": E0,
        "facts": {"signal.type": signal_type.value},
        "issued": {},
        "held": {},
        "day_used": 0,
        "quota_share": 2,
        "quota_used": {},
        "mode": Mode(),
    }
    fields.update(overrides)
    return Inputs(**fields)


def verdicts(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    """Per decision: kind, rule, whether it issues a command, not_before, reason."""
    return [
        (d.kind, d.rule_id, d.command_id is not None, d.not_before, d.reason) for d in decisions
    ]


def sig(
    signal_id: str, at: float, signal_type: SignalType = WEBHOOK, workspace_id: str = "ws-1"
) -> Signal:
    return signal_at(signal_id, at, signal_type, workspace_id)


def a_shard(
    policy: Policy = TIGHT, share: int = 100
) -> Callable[[list[Signal], Mode], list[Decision]]:
    """A shard's decide step: each call decides one record on the shard's states and slots."""
    states: dict[str, WorkspaceState] = {}
    quota = initial_quota()

    def record(signals: list[Signal], mode: Mode) -> list[Decision]:
        state_of = partial(lambda s, w: s.setdefault(w, windows.initialize()), states)
        decided = decide_signals(state_of, signals, SOURCE, CONFIG, policy, quota, share, mode)
        return decided.decisions

    return record


def run(
    signals: list[Signal], policy: Policy = TIGHT, share: int = 100, mode: Mode | None = None
) -> list[Decision]:
    """The decisions of a new shard on these signals, as one record."""
    return a_shard(policy, share)(signals, mode or Mode())


def kinds(decisions: list[Decision]) -> list[tuple[str, str, DecisionKind]]:
    return [(d.inputs.signal_id, d.workspace_id, d.kind) for d in decisions]


# --- cooldowns --------------------------------------------------------------------------------


def test_an_action_is_issued_again_exactly_when_its_cooldown_has_passed() -> None:
    """Given retry_webhook issued 300 s ago (the seed rule's cooldown), then a webhook failure
    retries again; issued 299 s ago, then no rule fires at all."""
    due = inputs(issued={"retry_webhook": E0 - 300})
    cooling = inputs(issued={"retry_webhook": E0 - 299})

    assert verdicts(evaluate(SEED_POLICY, due)) == [(MADE, "seed.webhook_failed", True, None, None)]
    assert evaluate(SEED_POLICY, cooling) == []


def test_another_action_cooling_down_does_not_hold_this_one() -> None:
    """Given every other action issued a second ago, then a webhook failure still retries."""
    others = {action.value: E0 - 1 for action in Action if action is not Action.RETRY_WEBHOOK}

    assert verdicts(evaluate(SEED_POLICY, inputs(issued=others))) == [
        (MADE, "seed.webhook_failed", True, None, None)
    ]


def test_the_cooldown_counts_from_the_last_issue_whatever_rule_issued_it() -> None:
    """Given run_provisioning issued 899 s ago and 900 s ago (cooldown 900), when a
    health_degraded signal arrives, then it provisions only in the second case."""
    facts = {"signal.type": "health_degraded"}
    health = partial(inputs, SignalType.HEALTH_DEGRADED, facts=facts)

    assert evaluate(SEED_POLICY, health(issued={"run_provisioning": E0 - 899})) == []
    assert verdicts(evaluate(SEED_POLICY, health(issued={"run_provisioning": E0 - 900}))) == [
        (MADE, "seed.health_degraded", True, None, None)
    ]


def test_cooldowns_are_kept_per_workspace_and_per_action_through_a_stream() -> None:
    """Given webhook failures of ws-1 at 0, 299 and 300 s, of ws-2 at 1 s, and an
    integration going offline for ws-1 at 2 s, then ws-1 retries at 0 and 300 s only, and
    ws-2 and the restart are not held by ws-1's retry."""
    signals = [
        sig("a", 0),
        sig("b", 1, workspace_id="ws-2"),
        sig("c", 2, OFFLINE),
        sig("d", 299),
        sig("e", 300),
    ]

    assert [(d.inputs.signal_id, d.workspace_id, d.rule_id) for d in run(signals, SEED_POLICY)] == [
        ("a", "ws-1", "seed.webhook_failed"),
        ("b", "ws-2", "seed.webhook_failed"),
        ("c", "ws-1", "seed.integration_offline"),
        ("e", "ws-1", "seed.webhook_failed"),
    ]


def test_a_rule_whose_action_is_cooling_down_is_skipped_but_the_next_rule_still_fires() -> None:
    """Given a health_degraded signal reporting 10, then of the two rules that would provision
    only the emergency one does (it comes first and starts the cooldown)."""
    facts = {"signal.type": "health_degraded", "signal.health_score": 10, "health.score": 100}

    decisions = evaluate(SEED_POLICY, inputs(SignalType.HEALTH_DEGRADED, facts=facts))

    assert [(d.rule_id, d.lane, d.priority) for d in decisions] == [
        ("emergency.reported_critical", Priority.CRITICAL, 10)
    ]


def test_may_fire_says_whether_some_rule_is_out_of_its_cooldown_and_its_checks_hold() -> None:
    """Given retry_webhook issued 299 or 300 s ago, then a webhook rule may fire only at 300;
    a heartbeat (no rule watches it) never; a queue depth of 50 fires no rule, of 51 the
    saturation rule (when its own cooldown is over, whatever another action's is)."""
    webhook = {"signal.type": "webhook_failed"}
    assert may_fire(SEED_POLICY, WEBHOOK, E0, {"retry_webhook": E0 - 299}, webhook) is False
    assert may_fire(SEED_POLICY, WEBHOOK, E0, {"retry_webhook": E0 - 300}, webhook) is True
    assert may_fire(SEED_POLICY, SignalType.HEARTBEAT, E0, {}, {}) is False
    depth = SignalType.QUEUE_DEPTH
    healthy = {"signal.type": "queue_depth", "health.score": 80}
    assert may_fire(SEED_POLICY, depth, E0, {}, {**healthy, "queue.pending": 50}) is False
    saturated = {**healthy, "queue.pending": 51}
    assert may_fire(SEED_POLICY, depth, E0, {}, saturated) is True
    assert may_fire(SEED_POLICY, depth, E0, {"rebalance_queue": E0 - 10}, saturated) is False
    assert may_fire(SEED_POLICY, depth, E0, {"run_provisioning": E0 - 10}, saturated) is True


# --- the workspace's daily budget -------------------------------------------------------------


def test_the_last_action_of_the_budget_is_made_and_the_next_is_suppressed() -> None:
    """Given a budget of 3 with 2 used, then the action is made; with 3 used, it is
    suppressed, issues no command, and the reason names the spent budget and the day."""
    assert verdicts(evaluate(TIGHT, inputs(day_used=2))) == [(MADE, "retry", True, None, None)]
    assert verdicts(evaluate(TIGHT, inputs(day_used=3))) == [
        (SUPPRESSED, "retry", False, None, BUDGET_SPENT.format(3))
    ]


def test_the_budget_allows_n_actions_a_utc_day_and_starts_again_the_next_day() -> None:
    """Given four webhook failures of one workspace on one day (budget 3), one in its last
    second and one at the next midnight, then three are made, the rest of the day is
    suppressed, and the next day starts a new budget."""
    at = [0, 1, 2, 3, DAY - 1, DAY]
    decisions = run([sig(f"s{n}", t) for n, t in enumerate(at)])

    assert [(d.inputs.signal_id, d.kind, d.inputs.day_used) for d in decisions] == [
        ("s0", MADE, 0),
        ("s1", MADE, 1),
        ("s2", MADE, 2),
        ("s3", SUPPRESSED, 3),
        ("s4", SUPPRESSED, 3),
        ("s5", MADE, 0),
    ]
    assert decisions[4].reason == BUDGET_SPENT.format(3)


def test_the_budget_is_kept_per_workspace() -> None:
    """Given ws-1 has spent its budget, then ws-2's first action of the day is made."""
    signals = [*(sig(f"s{n}", n) for n in range(4)), sig("t", 5, workspace_id="ws-2")]

    assert kinds(run(signals))[-2:] == [("s3", "ws-1", SUPPRESSED), ("t", "ws-2", MADE)]


def test_the_exempt_lane_is_not_suppressed_by_the_budget_but_counts_towards_it() -> None:
    """Given two retries, a critical restart, a retry, another restart and a last retry
    (budget 3), then the third retry is suppressed (the restart used the budget's last
    action), the second restart is made all the same, and it counts: the last retry sees
    four actions used."""
    signals = [
        sig("r1", 0),
        sig("r2", 1),
        sig("p1", 2, OFFLINE),
        sig("r3", 3),
        sig("p2", 4, OFFLINE),
        sig("r4", 5),
    ]

    decisions = run(signals)

    assert [(d.inputs.signal_id, d.lane, d.kind, d.inputs.day_used) for d in decisions] == [
        ("r1", Priority.MEDIUM, MADE, 0),
        ("r2", Priority.MEDIUM, MADE, 1),
        ("p1", Priority.CRITICAL, MADE, 2),
        ("r3", Priority.MEDIUM, SUPPRESSED, 3),
        ("p2", Priority.CRITICAL, MADE, 3),
        ("r4", Priority.MEDIUM, SUPPRESSED, 4),
    ]
    assert decisions[-1].reason == BUDGET_SPENT.format(4)


def test_a_suppressed_decision_does_not_use_the_budget() -> None:
    """Given a retry suppressed while paused, then once resumed the workspace still has its
    whole budget of 3 for the day."""
    record = a_shard()

    paused = record([sig("s0", 0)], Mode(paused=True))
    resumed = record([sig(f"s{n}", n) for n in range(1, 5)], Mode())

    assert kinds(paused) == [("s0", "ws-1", SUPPRESSED)]
    assert [d.kind for d in resumed] == [MADE, MADE, MADE, SUPPRESSED]


# --- the platform cap -------------------------------------------------------------------------


@pytest.mark.parametrize("cap", [1, 7, 50, 1000])
@pytest.mark.parametrize("partitions", [1, 2, 3, 8, 12, 64])
def test_the_shards_shares_add_up_to_the_cap_exactly(cap: int, partitions: int) -> None:
    """Given a cap and a partition count, then the shards' shares sum to the cap and differ
    by at most one, the lower shards taking the remainder."""
    shares = [shard_share(cap, partitions, p) for p in range(partitions)]

    assert sum(shares) == cap
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_more_shards_than_the_cap_leave_some_shards_a_share_of_zero() -> None:
    """Given a cap of 5 over 8 shards, then shards 0-4 may act once per interval, 5-7 not."""
    assert [shard_share(5, 8, p) for p in range(8)] == [1, 1, 1, 1, 1, 0, 0, 0]


def test_the_intervals_a_decision_may_take_start_with_its_own() -> None:
    """Given a decision 59 s into an interval, then it may take its own interval or one of
    the next two (defer_max_intervals 2); the seed policy allows the next ten."""
    assert quota_window(TIGHT, E0 + 59) == [E0, E0 + 60, E0 + 120]
    assert quota_window(SEED_POLICY, E0 + 60) == [E0 + 60 * k for k in range(1, 12)]


@pytest.mark.parametrize(
    ("used", "expected"),
    [
        ({}, (MADE, "retry", True, None, None)),
        ({E0: 1, E0 + 60: 2}, (MADE, "retry", True, None, None)),
        (
            {E0: 2},
            (
                DEFERRED,
                "retry",
                True,
                E0 + 60,
                f"platform cap reached for interval {E0}: deferred to the interval starting "
                f"{E0 + 60}",
            ),
        ),
        (
            {E0: 2, E0 + 60: 2},
            (
                DEFERRED,
                "retry",
                True,
                E0 + 120,
                f"platform cap reached for interval {E0}: deferred to the interval starting "
                f"{E0 + 120}",
            ),
        ),
        ({E0: 2, E0 + 60: 2, E0 + 120: 2}, (SUPPRESSED, "retry", False, None, CAP_REACHED)),
    ],
    ids=["free", "room now", "deferred once", "deferred twice", "all full"],
)
def test_over_the_cap_a_decision_waits_for_the_next_interval_with_room(
    used: dict[int, int], expected: tuple[Any, ...]
) -> None:
    """Given a shard share of 2 per 60 s and the slots already taken, then the action is made
    in its own interval if it has room, else deferred to the first of the next two with room,
    else suppressed."""
    assert verdicts(evaluate(TIGHT, inputs(at=E0 + 30, quota_used=used))) == [expected]


def test_the_exempt_lane_takes_its_own_interval_even_when_the_cap_is_reached() -> None:
    """Given every interval full, or a share of 0, then a critical restart is still made in
    its own interval."""
    full = {E0: 2, E0 + 60: 2, E0 + 120: 2}

    assert verdicts(evaluate(TIGHT, inputs(OFFLINE, quota_used=full))) == [
        (MADE, "page", True, None, None)
    ]
    assert verdicts(evaluate(TIGHT, inputs(OFFLINE, quota_share=0))) == [
        (MADE, "page", True, None, None)
    ]
    assert verdicts(evaluate(TIGHT, inputs(quota_share=0))) == [
        (SUPPRESSED, "retry", False, None, CAP_REACHED.replace("2 actions", "0 actions"))
    ]


def test_a_stream_over_the_cap_fills_the_next_intervals_then_is_suppressed() -> None:
    """Given seven workspaces' webhook failures in one minute on a shard with 2 slots per
    minute, then two are made, four wait two by two for the next two minutes (their commands
    not before then), the seventh is suppressed without a command; a failure in the next
    minute waits for the first minute with room."""
    signals = [sig(f"s{n}", 10 + n, workspace_id=f"ws-{n}") for n in range(7)]
    signals.append(sig("late", 60, workspace_id="ws-7"))

    decisions = run(signals, share=2)

    assert [(d.inputs.signal_id, d.kind, d.not_before) for d in decisions] == [
        ("s0", MADE, None),
        ("s1", MADE, None),
        ("s2", DEFERRED, E0 + 60),
        ("s3", DEFERRED, E0 + 60),
        ("s4", DEFERRED, E0 + 120),
        ("s5", DEFERRED, E0 + 120),
        ("s6", SUPPRESSED, None),
        ("late", DEFERRED, E0 + 180),
    ]
    commands = [command_of(d) for d in decisions]
    assert [c.not_before if c else "no command" for c in commands] == [
        None,
        None,
        datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 2, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 2, tzinfo=UTC),
        "no command",
        datetime(2024, 1, 1, 0, 3, tzinfo=UTC),
    ]


def test_a_decision_that_already_holds_a_slot_keeps_it_when_evaluated_again() -> None:
    """Given a decision deferred to E0+60 where it took the last slot, when the same signal
    is evaluated again with that slot counted (redelivered), then with `admitted` it keeps
    the same slot and verdict; without it, it would be pushed one interval further."""
    first = evaluate(TIGHT, inputs(quota_used={E0: 2, E0 + 60: 1}))
    again = inputs(quota_used={E0: 2, E0 + 60: 2})

    assert verdicts(first)[0][:4] == (DEFERRED, "retry", True, E0 + 60)
    assert evaluate(TIGHT, again, {first[0].decision_id: E0 + 60}) == [
        replace(first[0], inputs=again)
    ]
    assert evaluate(TIGHT, again)[0].not_before == E0 + 120


# --- the operator's switches ------------------------------------------------------------------


def test_paused_decisions_are_suppressed_without_a_command_in_every_lane() -> None:
    """Given the operator paused decisions, then a retry and even a critical restart are
    suppressed with the pause as the reason, and issue no command."""
    paused = Mode(paused=True)
    reason = "operator paused autonomous decisions"

    for signal_type, rule_id in [(WEBHOOK, "retry"), (OFFLINE, "page")]:
        [decision] = evaluate(TIGHT, inputs(signal_type, mode=paused))
        assert verdicts([decision]) == [(SUPPRESSED, rule_id, False, None, reason)]
        assert command_of(decision) is None


def test_a_paused_decision_is_recorded_once_per_cooldown_and_does_not_delay_the_resume() -> None:
    """Given a webhook failure suppressed while paused, then another one 299 s later, still
    paused, is not recorded again (one entry per cooldown, not one per signal) and one 300 s
    later is; when decisions resume, the next failure is retried at once: the suppressed
    decisions did not start the action's cooldown."""
    record = a_shard(SEED_POLICY)

    paused = record([sig("a", 0)], Mode(paused=True))
    quiet = record([sig("b", 299)], Mode(paused=True))
    again = record([sig("c", 300)], Mode(paused=True))
    resumed = record([sig("d", 301)], Mode())

    assert kinds(paused) == [("a", "ws-1", SUPPRESSED)]
    assert quiet == []
    assert kinds(again) == [("c", "ws-1", SUPPRESSED)]
    assert kinds(resumed) == [("d", "ws-1", MADE)]


def test_dry_run_decisions_are_made_and_their_commands_are_marked_dry_run() -> None:
    """Given dry-run mode, then the decision is made as usual, marked dry-run, and so is its
    command; it uses the budget like any other."""
    decisions = run([sig(f"s{n}", n) for n in range(4)], mode=Mode(dry_run=True))

    assert [(d.kind, d.dry_run) for d in decisions] == [
        (MADE, True),
        (MADE, True),
        (MADE, True),
        (SUPPRESSED, True),
    ]
    command = command_of(decisions[0])
    assert command is not None
    assert command.dry_run is True


# --- ids --------------------------------------------------------------------------------------


def test_ids_derive_from_the_rule_the_workspace_and_the_signal_only() -> None:
    """Given a decision, then its id is decision_id_of(rule, workspace, signal id, signal
    time) and its command id command_id_of(decision id); the same rule id under another
    policy version gives the same ids, another signal (id or time) or workspace other ids."""
    [decision] = evaluate(TIGHT, inputs())
    looser = parse_policy(
        '[[rules]]\nid = "retry"\non = ["webhook_failed"]\naction = "retry_webhook"\n'
        "priority = 6\ncooldown_seconds = 60\n",
        "loose.toml",
    )
    [same] = evaluate(looser, inputs())

    assert decision.decision_id == decision_id_of("retry", "ws-1", "s1", E0)
    assert decision.command_id == command_id_of(decision.decision_id)
    assert decision.decision_id.startswith("dec-")
    assert decision.command_id.startswith("cmd-")
    assert looser.version != TIGHT.version
    assert (same.decision_id, same.command_id) == (decision.decision_id, decision.command_id)
    assert (
        len(
            {
                decision_id_of("retry", "ws-1", "s1", E0),
                decision_id_of("retry", "ws-1", "s2", E0),
                decision_id_of("retry", "ws-2", "s1", E0),
                decision_id_of("page", "ws-1", "s1", E0),
                decision_id_of("retry", "ws-1", "s1", E0 + 600),
            }
        )
        == 5
    )


# --- the recorded inputs ----------------------------------------------------------------------


def test_inputs_are_recorded_as_json_in_a_fixed_shape() -> None:
    """Given inputs, then their JSON shape holds the signal and its source, the time, the
    facts, the cooldowns, the budget, the slots (interval starts as text) and the mode."""
    recorded = inputs(
        facts={"signal.type": "webhook_failed", "signal.status": 503, "health.score": 95},
        issued={"send_followup": E0 - 10},
        day_used=2,
        quota_used={E0: 1},
        mode=Mode(dry_run=True),
    )

    assert recorded.as_json() == {
        "workspace_id": "ws-1",
        "signal": {"id": "s1", "type": "webhook_failed", "at": E0, "source": ["signals", 2, 40]},
        "at": E0,
        "facts": {"signal.type": "webhook_failed", "signal.status": 503, "health.score": 95},
        "issued": {"send_followup": E0 - 10},
        "held": {},
        "day_used": 2,
        "quota": {"share": 2, "used": {str(E0): 1}},
        "mode": {"paused": False, "dry_run": True},
    }


def test_inputs_read_back_from_json_are_the_same_inputs() -> None:
    """Given inputs with float facts, cooldowns and slots, when written as JSON bytes and
    read back, then they equal the original."""
    original = inputs(
        facts={"queue.oldest_pending_age_seconds": 3600.5, "health.status": "healthy"},
        issued={"retry_webhook": E0 - 1, "run_provisioning": E0 - 900},
        day_used=7,
        quota_used={E0: 2, E0 + 60: 1},
        mode=Mode(paused=True, dry_run=True),
    )

    assert Inputs.from_json(orjson.loads(orjson.dumps(original.as_json()))) == original


@pytest.mark.parametrize(
    ("recorded", "policy"),
    [
        pytest.param(inputs(), TIGHT, id="made"),
        pytest.param(inputs(quota_used={E0: 2, E0 + 60: 1}), TIGHT, id="deferred"),
        pytest.param(inputs(day_used=3), TIGHT, id="suppressed by budget"),
        pytest.param(inputs(mode=Mode(paused=True)), TIGHT, id="paused"),
        pytest.param(
            inputs(
                SignalType.HEALTH_DEGRADED,
                facts={"signal.type": "health_degraded", "health.score": 40},
                issued={"send_followup": E0},
            ),
            SEED_POLICY,
            id="emergency",
        ),
    ],
)
def test_a_decision_is_derived_again_from_the_inputs_it_recorded(
    recorded: Inputs, policy: Policy
) -> None:
    """Given decisions made, deferred or suppressed, when their ledger payload goes through
    JSON and its input is evaluated again, then the very same decisions come out."""
    decisions = evaluate(policy, recorded)
    payload = orjson.loads(orjson.dumps(decision_payload(decisions[0]).model_dump()))

    assert decisions != []
    assert evaluate(policy, Inputs.from_json(payload["input"])) == decisions
