"""The seed policy: which observations fire which rule, at which priority, with which ids."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.policy import SEED_POLICY, SEED_RULES, Escalation, Policy, Rule, decide, decision_events
from tables import windows
from tables.windows import Observation, SourcePosition, WindowConfig
from topics.commands import Action, Priority
from topics.ledger import LedgerKind
from topics.signals import GAUGE_ATTRIBUTE, Signal, SignalType, signal_from

T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200
CONFIG = WindowConfig(grace_seconds=60)
SOURCE = SourcePosition("signals", 2, 77)
RECORDED_AT = datetime(2024, 1, 1, 0, 5, tzinfo=UTC)


def observation(
    signal_type: SignalType = SignalType.FOLLOWUP_DUE,
    *,
    count: int = 1,
    workspace_id: str = "ws-1",
    window_start: int = E0,
    signal_id: str = "sig-1",
    attributes: dict[str, Any] | None = None,
    source: SourcePosition = SOURCE,
) -> Observation:
    return Observation(
        signal_id=signal_id,
        workspace_id=workspace_id,
        signal_type=signal_type,
        occurred_at=window_start + 5,
        attributes=attributes or {},
        window_start=window_start,
        count=count,
        source=source,
    )


def sig(signal_id: str, at: float, signal_type: SignalType, workspace_id: str = "ws-1") -> Signal:
    """A signal `at` seconds after T0; a gauge reads 1."""
    gauge = GAUGE_ATTRIBUTE.get(signal_type)
    return signal_from(
        {
            "id": signal_id,
            "workspace_id": workspace_id,
            "type": signal_type,
            "occurred_at": T0 + timedelta(seconds=at),
            "attributes": {} if gauge is None else {gauge: 1},
        }
    )


def decisions_for(signals: list[Signal], policy: Policy = SEED_POLICY) -> list[Any]:
    """Fold signals per workspace, as the workers do, and apply the policy."""
    states: dict[str, windows.WorkspaceState] = {}
    out = []
    for signal in signals:
        state = states.setdefault(signal.workspace_id, windows.initialize())
        for obs in windows.add(state, [signal], SOURCE, CONFIG).observations:
            out.extend(decide(obs, policy))
    return out


SEED_TABLE = [
    (SignalType.HEALTH_DEGRADED, "seed.health_degraded", Action.RUN_PROVISIONING, Priority.HIGH),
    (
        SignalType.PROVISIONING_NEEDED,
        "seed.provisioning_needed",
        Action.RUN_PROVISIONING,
        Priority.MEDIUM,
    ),
    (SignalType.FOLLOWUP_DUE, "seed.followup_due", Action.SEND_FOLLOWUP, Priority.LOW),
    (SignalType.WEBHOOK_FAILED, "seed.webhook_failed", Action.RETRY_WEBHOOK, Priority.MEDIUM),
    (
        SignalType.INTEGRATION_OFFLINE,
        "seed.integration_offline",
        Action.RESTART_INTEGRATION,
        Priority.HIGH,
    ),
]


@pytest.mark.parametrize(("signal_type", "rule_id", "action", "priority"), SEED_TABLE)
def test_each_seed_rule_fires_on_the_first_signal_of_its_type(
    signal_type: SignalType, rule_id: str, action: Action, priority: Priority
) -> None:
    """Given the first signal of a type in a window, then exactly its seed rule fires with
    the seed action and priority, carrying the signal, window and source."""
    [decision] = decide(observation(signal_type))

    assert decision.rule_id == rule_id
    assert decision.action is action
    assert decision.priority is priority
    assert decision.policy_version == SEED_POLICY.version
    assert decision.workspace_id == "ws-1"
    assert decision.signal_id == "sig-1"
    assert decision.window_start == E0
    assert decision.count == 1
    assert decision.source == SourcePosition("signals", 2, 77)


@pytest.mark.parametrize("signal_type", list(SignalType))
def test_no_seed_rule_fires_on_the_second_signal_in_a_window(signal_type: SignalType) -> None:
    """Given a type's second signal in the same window, then nothing fires."""
    assert decide(observation(signal_type, count=2)) == []


def test_a_rule_fires_once_per_workspace_per_window_and_again_in_the_next() -> None:
    """Given three webhook failures for ws-1 in one window, one for ws-2, and one more for
    ws-1 in the next window, then ws-1 gets one decision per window and ws-2 one."""
    webhook = SignalType.WEBHOOK_FAILED
    decisions = decisions_for(
        [
            sig("a", 0, webhook),
            sig("b", 10, webhook),
            sig("c", 20, webhook, workspace_id="ws-2"),
            sig("d", 30, webhook),
            sig("e", 300, webhook),
        ]
    )

    assert [(d.workspace_id, d.window_start, d.signal_id) for d in decisions] == [
        ("ws-1", E0, "a"),
        ("ws-2", E0, "c"),
        ("ws-1", E0 + 300, "e"),
    ]
    assert len({d.decision_id for d in decisions}) == 3
    assert len({d.command_id for d in decisions}) == 3


def test_a_redelivered_signal_never_fires_twice() -> None:
    """Given a signal delivered twice (de-duplicated by the window), then one decision."""
    signal = sig("a", 0, SignalType.INTEGRATION_OFFLINE)

    assert [d.rule_id for d in decisions_for([signal, signal])] == ["seed.integration_offline"]


def test_different_types_in_one_window_fire_their_own_rules() -> None:
    """Given one signal of each of the ten types in a window, then each seed rule fires once
    and the monitoring types (gauges, errors, heartbeats) fire nothing."""
    decisions = decisions_for([sig(t.value, n, t) for n, t in enumerate(SignalType)])

    assert [d.rule_id for d in decisions] == [
        "seed.health_degraded",
        "seed.provisioning_needed",
        "seed.followup_due",
        "seed.webhook_failed",
        "seed.integration_offline",
    ]


MONITORING_TYPES = [
    SignalType.QUEUE_DEPTH,
    SignalType.OLDEST_PENDING_AGE,
    SignalType.PUBLISH_FAILED,
    SignalType.ERROR_REPORTED,
    SignalType.HEARTBEAT,
]


@pytest.mark.parametrize("signal_type", MONITORING_TYPES)
def test_no_seed_rule_fires_on_a_monitoring_signal(signal_type: SignalType) -> None:
    """Given the first monitoring signal of its type in a window, then the seed policy
    decides nothing: those signals feed the health score, not commands."""
    assert decide(observation(signal_type, attributes={"pending": 500})) == []


# --- escalation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "priority"),
    [
        ({"health_score": 49}, Priority.CRITICAL),
        ({"health_score": 49.99}, Priority.CRITICAL),
        ({"health_score": 0}, Priority.CRITICAL),
        ({"health_score": -5}, Priority.CRITICAL),
        ({"health_score": 50}, Priority.HIGH),
        ({"health_score": 50.0}, Priority.HIGH),
        ({"health_score": 80}, Priority.HIGH),
        ({}, Priority.HIGH),
        ({"health_score": None}, Priority.HIGH),
        ({"health_score": True}, Priority.HIGH),
        ({"health_score": False}, Priority.HIGH),
        ({"health_score": "10"}, Priority.HIGH),
        ({"other_score": 10}, Priority.HIGH),
    ],
    ids=[
        "49",
        "49.99",
        "0",
        "negative",
        "50",
        "50.0",
        "80",
        "missing",
        "none",
        "true",
        "false-is-not-zero",
        "string",
        "other-attribute",
    ],
)
def test_health_degraded_escalates_to_critical_below_a_score_of_50(
    attributes: dict[str, Any], priority: Priority
) -> None:
    """Given a health_degraded observation, then it is critical only when health_score is a
    real number below 50, else high."""
    [decision] = decide(observation(SignalType.HEALTH_DEGRADED, attributes=attributes))

    assert decision.rule_id == "seed.health_degraded"
    assert decision.priority is priority


def test_escalation_only_applies_to_its_own_rule() -> None:
    """Given a low health_score on a followup_due signal, then its priority stays low."""
    [decision] = decide(observation(SignalType.FOLLOWUP_DUE, attributes={"health_score": 1}))

    assert decision.priority is Priority.LOW


# --- thresholds and custom policies -----------------------------------------------------------


def test_a_rule_with_a_threshold_fires_when_the_count_reaches_it_only() -> None:
    """Given a threshold of 3, then the rule fires on the third signal and on no other."""
    rule = Rule(
        "ops.flaky_webhooks",
        SignalType.WEBHOOK_FAILED,
        Action.RETRY_WEBHOOK,
        Priority.HIGH,
        threshold=3,
    )
    policy = Policy.of([rule])

    fired = {
        count: decide(observation(SignalType.WEBHOOK_FAILED, count=count), policy)
        for count in range(1, 6)
    }

    assert {count: [d.rule_id for d in ds] for count, ds in fired.items()} == {
        1: [],
        2: [],
        3: ["ops.flaky_webhooks"],
        4: [],
        5: [],
    }


def test_rules_fire_in_rule_table_order() -> None:
    """Given two rules on one type, then both fire, in the order of the table."""
    policy = Policy.of(
        [
            Rule("b.second", SignalType.FOLLOWUP_DUE, Action.SEND_FOLLOWUP, Priority.LOW),
            Rule("a.first", SignalType.FOLLOWUP_DUE, Action.RUN_PROVISIONING, Priority.HIGH),
        ]
    )

    decisions = decide(observation(SignalType.FOLLOWUP_DUE), policy)

    assert [(d.rule_id, d.action) for d in decisions] == [
        ("b.second", Action.SEND_FOLLOWUP),
        ("a.first", Action.RUN_PROVISIONING),
    ]
    assert decisions[0].decision_id != decisions[1].decision_id


def test_an_empty_policy_decides_nothing() -> None:
    """Given a policy with no rules, then no observation fires anything."""
    assert decide(observation(SignalType.HEALTH_DEGRADED), Policy.of([])) == []


# --- policy version ---------------------------------------------------------------------------


def test_the_policy_version_is_stable_across_calls() -> None:
    """Given the same rules, then Policy.of gives the same version every time."""
    assert Policy.of(SEED_RULES).version == SEED_POLICY.version
    assert Policy.of(list(SEED_RULES)).version == SEED_POLICY.version
    assert SEED_POLICY.version.startswith("p-")
    assert len(SEED_POLICY.version) == len("p-") + 12


HEALTH = SEED_RULES[0]
CHANGES = {
    "rule_id": dataclasses.replace(HEALTH, rule_id="seed.health_degraded.v2"),
    "signal_type": dataclasses.replace(HEALTH, signal_type=SignalType.FOLLOWUP_DUE),
    "action": dataclasses.replace(HEALTH, action=Action.RESTART_INTEGRATION),
    "priority": dataclasses.replace(HEALTH, priority=Priority.MEDIUM),
    "threshold": dataclasses.replace(HEALTH, threshold=2),
    "escalation.attribute": dataclasses.replace(
        HEALTH, escalation=Escalation("score", 50, Priority.CRITICAL)
    ),
    "escalation.below": dataclasses.replace(
        HEALTH, escalation=Escalation("health_score", 40, Priority.CRITICAL)
    ),
    "escalation.priority": dataclasses.replace(
        HEALTH, escalation=Escalation("health_score", 50, Priority.HIGH)
    ),
    "escalation.removed": dataclasses.replace(HEALTH, escalation=None),
}


@pytest.mark.parametrize("changed", list(CHANGES.values()), ids=list(CHANGES))
def test_the_policy_version_changes_when_any_rule_parameter_changes(changed: Rule) -> None:
    """Given the seed rules with one parameter of one rule changed, then the version differs."""
    rules = (changed, *SEED_RULES[1:])

    assert Policy.of(rules).version != SEED_POLICY.version


def test_the_policy_version_changes_when_a_rule_is_removed_or_reordered() -> None:
    """Given the seed table with a rule dropped or the order changed, then versions differ."""
    versions = {
        SEED_POLICY.version,
        Policy.of(SEED_RULES[1:]).version,
        Policy.of(tuple(reversed(SEED_RULES))).version,
    }

    assert len(versions) == 3


# --- ids --------------------------------------------------------------------------------------


def test_decision_and_command_ids_are_deterministic() -> None:
    """Given the same observation decided twice, then the ids are identical."""
    [first] = decide(observation(SignalType.WEBHOOK_FAILED))
    [second] = decide(observation(SignalType.WEBHOOK_FAILED))

    assert first == second
    assert first.decision_id.startswith("dec-")
    assert first.command_id.startswith("cmd-")
    assert first.command_id != first.decision_id


def test_ids_do_not_depend_on_which_signal_fired_or_where_it_was_read() -> None:
    """Given a replay where another signal, read at another offset, is first in the same
    window, then the decision and command ids are the same (downstream de-duplicates)."""
    [live] = decide(observation(SignalType.WEBHOOK_FAILED, signal_id="a"))
    replayed_source = SourcePosition("signals", 2, 5)
    [replayed] = decide(
        observation(SignalType.WEBHOOK_FAILED, signal_id="b", source=replayed_source)
    )

    assert (replayed.decision_id, replayed.command_id) == (live.decision_id, live.command_id)


@pytest.mark.parametrize(
    "other",
    [
        {"workspace_id": "ws-2"},
        {"window_start": E0 + 300},
        {"signal_type": SignalType.FOLLOWUP_DUE},
    ],
    ids=["workspace", "window", "rule"],
)
def test_ids_differ_per_workspace_window_and_rule(other: dict[str, Any]) -> None:
    """Given another workspace, window or rule, then the decision and command ids differ."""
    [base] = decide(observation(SignalType.WEBHOOK_FAILED))
    signal_type = other.pop("signal_type", SignalType.WEBHOOK_FAILED)
    [changed] = decide(observation(signal_type, **other))

    assert changed.decision_id != base.decision_id
    assert changed.command_id != base.command_id


def test_ids_differ_per_policy_version() -> None:
    """Given the same rule under a changed policy, then its decision id differs."""
    changed_policy = Policy.of((*SEED_RULES, CHANGES["threshold"]))
    [base] = decide(observation(SignalType.WEBHOOK_FAILED))
    [changed] = decide(observation(SignalType.WEBHOOK_FAILED), changed_policy)

    assert changed.rule_id == base.rule_id
    assert changed.decision_id != base.decision_id


# --- decision events --------------------------------------------------------------------------


def test_a_decision_becomes_a_ledger_entry_and_a_command() -> None:
    """Given a decision, then decision_events gives the decision.made entry and the command
    that carry the same ids, the policy version and the provenance."""
    [decision] = decide(
        observation(SignalType.HEALTH_DEGRADED, signal_id="sig-7", attributes={"health_score": 12})
    )

    entry, command = decision_events(decision, RECORDED_AT)

    assert entry.kind is LedgerKind.DECISION_MADE
    assert entry.entry_id == decision.decision_id
    assert entry.workspace_id == "ws-1"
    assert entry.correlation_id == "sig-7"
    assert entry.causation_id == "sig-7"
    assert entry.policy_version == SEED_POLICY.version
    assert entry.recorded_at == RECORDED_AT
    assert entry.payload == {
        "rule_id": "seed.health_degraded",
        "action": "run_provisioning",
        "priority": "critical",
        "command_id": decision.command_id,
        "window_start": E0,
        "count": 1,
        "source": {"topic": "signals", "partition": 2, "offset": 77},
    }
    assert command.command_id == decision.command_id
    assert command.decision_id == decision.decision_id
    assert command.workspace_id == "ws-1"
    assert command.action is Action.RUN_PROVISIONING
    assert command.priority is Priority.CRITICAL
    assert command.rule_id == "seed.health_degraded"
    assert command.policy_version == SEED_POLICY.version
    assert command.signal_ids == ("sig-7",)
    assert command.correlation_id == "sig-7"
    assert command.attempt == 1
    assert command.dry_run is False
    assert command.not_before is None
    assert command.deadline is None


def test_decision_events_are_json_round_trippable() -> None:
    """Given a decision's events, then they survive JSON as they would on their topics."""
    [decision] = decide(observation(SignalType.FOLLOWUP_DUE))
    entry, command = decision_events(decision, RECORDED_AT)

    assert type(entry).model_validate_json(entry.model_dump_json()) == entry
    assert type(command).model_validate_json(command.model_dump_json()) == command
