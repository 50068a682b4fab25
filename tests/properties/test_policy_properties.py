"""Properties of the policy engine over any signals: a replay is deterministic, the cut into
records never changes a verdict, every decision is derived again from the inputs it recorded,
and the daily budget and the platform cap hold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import windows
from core.decide import decide_signals, forget_old_slots, initial_quota
from core.ledger_entries import decision_payload
from core.policy import DAY_SECONDS, Decision, DecisionKind, Inputs, Mode, evaluate
from core.replay import replay_decisions
from core.rules import Policy, parse_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from tests.support.factories import SEED_POLICY
from topics.shards import shard_of
from topics.signals import Signal, SignalType, signal_from

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONFIG = WindowConfig(grace_seconds=30)
SOURCE = SourcePosition("signals", 0, 0)
DAY = DAY_SECONDS
MODEST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A tight policy, so that streams of a few dozen signals spend budgets, fill the cap, defer,
# suppress and meet exempt lanes; the seed policy exercises the shipped rules.
TIGHT = parse_policy(
    """
[limits]
workspace_daily_budget = 4
platform_cap_per_interval = 3
interval_seconds = 60
defer_max_intervals = 2

[[rules]]
id = "retry"
on = ["webhook_failed", "publish_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 0

[[rules]]
id = "page"
on = ["integration_offline"]
action = "restart_integration"
priority = 10
cooldown_seconds = 30

[[rules]]
id = "errors"
on = ["error_reported"]
when = [{ fact = "hour.error_reported", op = ">=", value = 2 }]
action = "trigger_reconciliation"
priority = 3
cooldown_seconds = 60

[[rules]]
id = "provision"
on = ["health_degraded", "queue_depth"]
when = [{ fact = "health.score", op = "<", value = 100 }]
action = "run_provisioning"
priority = 8
cooldown_seconds = 0
""",
    "tight.toml",
)
POLICIES = st.sampled_from([SEED_POLICY, TIGHT])
MODES = st.sampled_from([Mode(), Mode(), Mode(dry_run=True), Mode(paused=True)])

# --- strategies -------------------------------------------------------------------------------


def attributes_for(signal_type: SignalType) -> st.SearchStrategy[dict[str, Any]]:
    """Attributes around the seed rules' thresholds."""
    if signal_type is SignalType.QUEUE_DEPTH:
        return st.builds(lambda n: {"pending": n}, st.sampled_from([0, 50, 51, 120]))
    if signal_type is SignalType.OLDEST_PENDING_AGE:
        ages = st.sampled_from([0, 1800, 1800.5, 3600, 3600.5])
        return st.builds(lambda s: {"age_seconds": s}, ages)
    if signal_type is SignalType.HEALTH_DEGRADED:
        scores: list[dict[str, Any]] = [
            {},
            {"health_score": 10},
            {"health_score": 49.9},
            {"health_score": 50},
        ]
        return st.sampled_from(scores)
    return st.just({})


# Event times: within ten minutes (cooldowns, caps and duplicates meet), over three hours
# (cooldowns pass, slots and issues are forgotten), or across a UTC midnight (budgets reset).
OFFSETS = st.integers(0, 600) | st.integers(0, 3 * 3600) | st.integers(DAY - 300, DAY + 300)


@st.composite
def signals(draw: st.DrawFn, offsets: st.SearchStrategy[int] = OFFSETS) -> Signal:
    signal_type = draw(st.sampled_from(list(SignalType)))
    return signal_from(
        {
            "id": draw(st.sampled_from("abcd")),
            "workspace_id": draw(st.sampled_from(["ws-1", "ws-2", "ws-3", "ws-c"])),
            "type": signal_type,
            "occurred_at": T0 + timedelta(seconds=draw(offsets)),
            "attributes": draw(attributes_for(signal_type)),
        }
    )


signal_streams = st.lists(signals(), max_size=40)


def ids_per_bucket(signals: list[Signal]) -> list[Signal]:
    """Each id made unique to its 5-minute bucket: a resent copy still meets its first copy,
    but no id is reused for a new signal in a later bucket (a known defect: such a signal is
    decided under the first one's decision id, see tests/unit/test_decide.py)."""
    return [
        s.model_copy(update={"id": f"{s.id}-{windows.step_start(int(s.occurred_at.timestamp()))}"})
        for s in signals
    ]


def decide_in_records(
    signals: list[Signal], cuts: list[int], policy: Policy, share: int, mode: Mode
) -> list[Decision]:
    """One shard deciding the signals record by record (cut at `cuts`), as its worker does:
    states and slots carried over, old slots dropped after each record."""
    states: dict[str, WorkspaceState] = {}
    quota = initial_quota()
    bounds = [0, *sorted(cuts), len(signals)]
    decisions = []
    for start, end in pairwise(bounds):
        decided = decide_signals(
            lambda w: states.setdefault(w, windows.initialize()),
            signals[start:end],
            SOURCE,
            CONFIG,
            policy,
            quota,
            share,
            mode,
        )
        forget_old_slots(quota, policy)
        decisions.extend(decided.decisions)
    return decisions


def recorded(decision: Decision, policy: Policy) -> dict[str, Any]:
    """The decision's ledger payload, with the issues it recorded that no rule of the policy
    can still be cooling down on left out: when they are forgotten depends on where records
    end (see the xfail in tests/unit/test_decide.py), and they cannot change a verdict."""
    payload = decision_payload(decision).model_dump()
    at = decision.inputs.at
    horizon = policy.max_cooldown_seconds
    issued = payload["input"]["issued"]
    payload["input"]["issued"] = {a: t for a, t in issued.items() if at - t <= horizon}
    return {**payload, "kind": decision.kind.value, "version": decision.policy_version}


def slot_of(decision: Decision, policy: Policy) -> int:
    at = decision.inputs.at
    if decision.not_before is not None:
        return decision.not_before
    return at - at % policy.limits.interval_seconds


# --- determinism ------------------------------------------------------------------------------


@MODEST
@given(signal_streams, POLICIES, st.sampled_from([1, 2, 8]), MODES)
def test_replaying_the_same_signals_twice_gives_the_same_decisions(
    signals: list[Signal], policy: Policy, partitions: int, mode: Mode
) -> None:
    """Given any signals, policy, partition count and operator mode, when replayed twice,
    then the decisions are identical, ids, command ids and recorded inputs included."""
    first = replay_decisions(signals, CONFIG, policy, partitions, mode)
    second = replay_decisions(list(signals), CONFIG, policy, partitions, mode)

    assert [(d.decision_id, d.command_id) for d in first] == [
        (d.decision_id, d.command_id) for d in second
    ]
    assert [decision_payload(d).model_dump() for d in first] == [
        decision_payload(d).model_dump() for d in second
    ]
    assert first == second


@MODEST
@given(st.data(), POLICIES, st.sampled_from([1, 2, 50]), MODES)
def test_cutting_a_shards_signals_into_records_never_changes_a_decision(
    data: st.DataObject, policy: Policy, share: int, mode: Mode
) -> None:
    """Given one shard's signals in order, when decided as one record or cut into records
    anywhere (old slots dropped after each, as live), then the same decisions come out:
    verdicts, ids, commands and every recorded input a rule could still read."""
    signals = data.draw(signal_streams)
    cuts = data.draw(st.lists(st.integers(0, len(signals)), max_size=8))

    whole = decide_in_records(signals, [], policy, share, mode)
    split = decide_in_records(signals, cuts, policy, share, mode)

    assert [recorded(d, policy) for d in split] == [recorded(d, policy) for d in whole]


@MODEST
@given(signal_streams, POLICIES, st.sampled_from([1, 2, 8]), MODES)
def test_every_decision_is_derived_again_from_the_inputs_it_recorded(
    signals: list[Signal], policy: Policy, partitions: int, mode: Mode
) -> None:
    """Given any signals (an id reused only within its bucket), then each signal's decisions
    are exactly what evaluating its recorded input, read back from JSON, gives."""
    decisions = replay_decisions(ids_per_bucket(signals), CONFIG, policy, partitions, mode)

    per_signal: dict[tuple[str, str], list[Decision]] = {}
    for decision in decisions:
        per_signal.setdefault((decision.workspace_id, decision.inputs.signal_id), []).append(
            decision
        )
    for made in per_signal.values():
        payload = orjson.loads(orjson.dumps(decision_payload(made[0]).model_dump()))
        assert evaluate(policy, Inputs.from_json(payload["input"])) == made


# --- limits -----------------------------------------------------------------------------------


@MODEST
@given(signal_streams, st.sampled_from([1, 2, 8]))
def test_no_workspace_gets_more_non_exempt_actions_a_day_than_its_budget(
    signals: list[Signal], partitions: int
) -> None:
    """Given any signals under the tight policy, then per workspace and UTC day at most the
    budget's number of non-exempt decisions issue a command, and a non-exempt decision is
    suppressed by the budget only once the day's count (exempt ones included) reached it."""
    decisions = replay_decisions(signals, CONFIG, TIGHT, partitions)
    exempt = TIGHT.limits.exempt_lanes
    budget = TIGHT.limits.workspace_daily_budget

    issued = Counter(
        (d.workspace_id, d.inputs.at // DAY)
        for d in decisions
        if d.command_id is not None and d.lane not in exempt
    )
    assert all(n <= budget for n in issued.values())
    for decision in decisions:
        if (decision.reason or "").startswith("workspace daily budget spent"):
            assert decision.inputs.day_used >= budget
            assert decision.lane not in exempt


@MODEST
@given(st.lists(signals(st.integers(0, 600)), max_size=40), st.sampled_from([1, 2, 8]))
def test_within_the_hour_no_interval_takes_more_non_exempt_actions_than_the_shards_share(
    signals: list[Signal], partitions: int
) -> None:
    """Given signals within ten minutes under the tight policy (an id reused only within its
    bucket), then on every shard no interval holds more non-exempt commands than the
    shard's share, and a deferred command always waits for a later interval than its
    decision's own."""
    decisions = replay_decisions(ids_per_bucket(signals), CONFIG, TIGHT, partitions)
    exempt = TIGHT.limits.exempt_lanes

    per_interval = Counter(
        (shard_of(d.workspace_id, partitions), slot_of(d, TIGHT))
        for d in decisions
        if d.command_id is not None and d.lane not in exempt
    )
    shares = {(shard_of(d.workspace_id, partitions)): d.inputs.quota_share for d in decisions}
    assert all(n <= shares[shard] for (shard, _), n in per_interval.items())
    for decision in decisions:
        if decision.kind is DecisionKind.DEFERRED:
            assert decision.not_before is not None
            assert decision.not_before > decision.inputs.at
