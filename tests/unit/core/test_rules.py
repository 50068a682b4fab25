"""The policy as data: every shipped seed rule on the signals it watches (and just past its
thresholds), the order rules fire in, lanes, the policy version, and refused policy files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from core.policy import Decision
from core.replay import replay_decisions
from core.rules import (
    SEED_POLICY_FILE,
    Check,
    PolicyError,
    lane_of,
    load_policy,
    parse_policy,
)
from core.windows import WindowConfig
from tests.support.factories import SEED_POLICY, signal_at
from topics.commands import Action, Priority
from topics.signals import Signal, SignalType

CONFIG = WindowConfig(grace_seconds=60)
HEALTH = SignalType.HEALTH_DEGRADED
ERROR = SignalType.ERROR_REPORTED
PUBLISH = SignalType.PUBLISH_FAILED

Fired = tuple[str, str, Action, Priority, int]


sig = signal_at


def depth(pending: int, at: float = 0) -> Signal:
    return sig(f"q{at}", at, SignalType.QUEUE_DEPTH, pending=pending)


def oldest(age_seconds: float, at: float = 0) -> Signal:
    return sig(f"o{at}", at, SignalType.OLDEST_PENDING_AGE, age_seconds=age_seconds)


def several(signal_type: SignalType, count: int, at: float = 0) -> list[Signal]:
    """`count` distinct signals of one type, one second apart from `at`."""
    return [sig(f"{signal_type.value}-{n}", at + n, signal_type) for n in range(count)]


def decided(signals: list[Signal]) -> list[Decision]:
    """The seed policy's decisions on ws-1's signals, in order (one shard: the whole cap)."""
    return replay_decisions(signals, CONFIG, SEED_POLICY, partitions=1)


def fired(signals: list[Signal]) -> list[Fired]:
    """Per decision: the signal it was made on, the rule, the action, the lane, the rank."""
    return [(d.inputs.signal_id, d.rule_id, d.action, d.lane, d.priority) for d in decided(signals)]


# --- which rules watch which signals ----------------------------------------------------------

EMERGENCY = "emergency.health_critical"


def test_the_seed_policy_ships_fourteen_rules_watching_their_triggers() -> None:
    """Given the seed policy, then each signal type, its daily sweep and its heartbeat timer
    are watched by exactly these rules, highest priority first (file order among equals), and
    heartbeats themselves by none (they arm the timer)."""
    assert {t: [r.id for r in rules] for t, rules in SEED_POLICY.rules_for.items()} == {
        HEALTH: [EMERGENCY, "emergency.reported_critical", "seed.health_degraded"],
        SignalType.PROVISIONING_NEEDED: ["seed.provisioning_needed"],
        SignalType.PROVISIONING_FAILED: ["playbook.provisioning_failed"],
        SignalType.FOLLOWUP_DUE: ["seed.followup_due"],
        SignalType.WEBHOOK_FAILED: ["seed.webhook_failed"],
        SignalType.INTEGRATION_OFFLINE: [
            "seed.integration_offline",
            "playbook.integrations_offline",
        ],
        SignalType.QUEUE_DEPTH: [EMERGENCY, "monitor.queue_saturated"],
        SignalType.OLDEST_PENDING_AGE: [EMERGENCY, "monitor.oldest_pending"],
        PUBLISH: [EMERGENCY, "monitor.recent_failures"],
        ERROR: [EMERGENCY, "monitor.errors_high"],
        SignalType.HEARTBEAT: [],
        "sweep:daily": [
            EMERGENCY,
            "monitor.queue_saturated",
            "monitor.oldest_pending",
            "monitor.errors_high",
        ],
        "timer:heartbeat-missing": ["seed.heartbeat_missing"],
    }
    assert len(SEED_POLICY.spec.rules) == 14
    assert [(s.id, s.cron, s.max_workspaces, s.max_actions) for s in SEED_POLICY.schedules] == [
        ("daily", "0 10 * * *", 100, 50)
    ]
    assert [t.value for t in SEED_POLICY.timing.hold_until_due] == ["followup_due"]
    assert SEED_POLICY.limits.model_dump() == {
        "workspace_daily_budget": 24,
        "platform_cap_per_interval": 50,
        "interval_seconds": 60,
        "defer_max_intervals": 10,
        "exempt_lanes": (Priority.CRITICAL,),
    }


# --- each seed rule fires on its signal -------------------------------------------------------

FIRING = [
    pytest.param(
        [sig("h", 0, HEALTH)],
        [("h", "seed.health_degraded", Action.RUN_PROVISIONING, Priority.HIGH, 8)],
        id="seed.health_degraded",
    ),
    pytest.param(
        [sig("p", 0, SignalType.PROVISIONING_NEEDED)],
        [("p", "seed.provisioning_needed", Action.RUN_PROVISIONING, Priority.MEDIUM, 6)],
        id="seed.provisioning_needed",
    ),
    pytest.param(
        [sig("f", 0, SignalType.FOLLOWUP_DUE)],
        [("f", "seed.followup_due", Action.SEND_FOLLOWUP, Priority.LOW, 3)],
        id="seed.followup_due",
    ),
    pytest.param(
        [sig("w", 0, SignalType.WEBHOOK_FAILED)],
        [("w", "seed.webhook_failed", Action.RETRY_WEBHOOK, Priority.MEDIUM, 6)],
        id="seed.webhook_failed",
    ),
    pytest.param(
        [sig("i", 0, SignalType.INTEGRATION_OFFLINE)],
        [("i", "seed.integration_offline", Action.RESTART_INTEGRATION, Priority.HIGH, 8)],
        id="seed.integration_offline",
    ),
    pytest.param(
        [sig("pf", 0, SignalType.PROVISIONING_FAILED)],
        [("pf", "playbook.provisioning_failed", Action.RUN_PROVISIONING, Priority.HIGH, 9)],
        id="playbook.provisioning_failed: its playbook's first step",
    ),
    pytest.param(
        several(SignalType.INTEGRATION_OFFLINE, 3),
        [
            (
                "integration_offline-0",
                "seed.integration_offline",
                Action.RESTART_INTEGRATION,
                Priority.HIGH,
                8,
            ),
            (
                "integration_offline-2",
                "playbook.integrations_offline",
                Action.CHECK_INTEGRATIONS,
                Priority.MEDIUM,
                7,
            ),
        ],
        id="playbook.integrations_offline: the third outage",
    ),
    pytest.param(
        [depth(51)],
        [("q0", "monitor.queue_saturated", Action.REBALANCE_QUEUE, Priority.HIGH, 9)],
        id="monitor.queue_saturated: 51 pending",
    ),
    pytest.param(
        [oldest(3600.5)],
        [("o0", "monitor.oldest_pending", Action.FORCE_PUBLISH, Priority.HIGH, 8)],
        id="monitor.oldest_pending: 3600.5 s",
    ),
    pytest.param(
        several(PUBLISH, 3),
        [("publish_failed-2", "monitor.recent_failures", Action.RETRY_FAILED, Priority.HIGH, 8)],
        id="monitor.recent_failures: the third failure",
    ),
    pytest.param(
        several(ERROR, 5),
        [
            (
                "error_reported-4",
                "monitor.errors_high",
                Action.TRIGGER_RECONCILIATION,
                Priority.MEDIUM,
                7,
            )
        ],
        id="monitor.errors_high: the fifth error",
    ),
    pytest.param(
        [sig("h", 0, HEALTH, health_score=49.9)],
        [("h", "emergency.reported_critical", Action.RUN_PROVISIONING, Priority.CRITICAL, 10)],
        id="emergency.reported_critical: reported 49.9",
    ),
    pytest.param(
        several(ERROR, 11),
        [
            (
                "error_reported-4",
                "monitor.errors_high",
                Action.TRIGGER_RECONCILIATION,
                Priority.MEDIUM,
                7,
            ),
            ("error_reported-10", EMERGENCY, Action.RUN_PROVISIONING, Priority.CRITICAL, 10),
        ],
        id="emergency.health_critical: the eleventh error (health 45)",
    ),
]


@pytest.mark.parametrize(("signals", "expected"), FIRING)
def test_each_seed_rule_fires_on_its_signal_with_its_action_lane_and_priority(
    signals: list[Signal], expected: list[Fired]
) -> None:
    """Given the signals that meet a seed rule's checks, then exactly that rule fires, on the
    signal that met them, with its action, its lane and its priority."""
    assert fired(signals) == expected


def test_every_seed_rule_on_signals_has_a_firing_case() -> None:
    """Given the firing cases above, then together they cover every shipped rule that runs on
    signals (the timer's rule fires in tests/unit/engine/test_signal_stage_time.py)."""
    covered = {fired[1] for case in FIRING for fired in cast(list[Fired], case.values[1])}

    assert covered == {
        rule.id
        for rule in SEED_POLICY.spec.rules
        if any(trigger in SignalType._value2member_map_ for trigger in rule.on)
    }


# --- ... and not just on the other side of its threshold -------------------------------------

QUIET = [
    pytest.param([depth(50)], [], id="monitor.queue_saturated: 50 pending"),
    pytest.param([oldest(3600)], [], id="monitor.oldest_pending: 3600 s"),
    pytest.param(several(PUBLISH, 2), [], id="monitor.recent_failures: two failures"),
    pytest.param(several(ERROR, 4), [], id="monitor.errors_high: four errors"),
    pytest.param(
        [sig("h", 0, HEALTH, health_score=50)],
        [("h", "seed.health_degraded", Action.RUN_PROVISIONING, Priority.HIGH, 8)],
        id="emergency.reported_critical: reported 50, the seed rule instead",
    ),
    pytest.param(
        several(ERROR, 10),
        [
            (
                "error_reported-4",
                "monitor.errors_high",
                Action.TRIGGER_RECONCILIATION,
                Priority.MEDIUM,
                7,
            )
        ],
        id="emergency.health_critical: ten errors (health 50)",
    ),
]


@pytest.mark.parametrize(("signals", "expected"), QUIET)
def test_a_seed_rule_does_not_fire_just_short_of_its_threshold(
    signals: list[Signal], expected: list[Fired]
) -> None:
    """Given signals one step short of a rule's threshold, then that rule does not fire (and
    only what is listed does)."""
    assert fired(signals) == expected


def test_failures_older_than_the_hour_do_not_count_towards_recent_failures() -> None:
    """Given two publish failures, then a third one hour later (the first two out of the
    hour), then no rule fires."""
    signals = [*several(PUBLISH, 2), sig("late-enough", 3600 + 300, PUBLISH)]

    assert fired(signals) == []


CHECK_EDGES = [
    pytest.param("monitor.queue_saturated", "queue.pending", 51, 50, id="queue.pending"),
    pytest.param(
        "monitor.oldest_pending",
        "queue.oldest_pending_age_seconds",
        3600.5,
        3600,
        id="queue.oldest_pending_age_seconds",
    ),
    pytest.param("monitor.recent_failures", "hour.publish_failed", 3, 2, id="hour.publish"),
    pytest.param("monitor.errors_high", "hour.error_reported", 5, 4, id="hour.error_reported"),
    pytest.param(EMERGENCY, "health.score", 49, 50, id="health.score"),
    pytest.param(
        "emergency.reported_critical", "signal.health_score", 49.99, 50, id="signal.health_score"
    ),
]


@pytest.mark.parametrize(("rule_id", "fact", "holds_at", "fails_at"), CHECK_EDGES)
def test_each_seed_check_holds_exactly_on_its_side_of_the_threshold(
    rule_id: str, fact: str, holds_at: float, fails_at: float
) -> None:
    """Given a seed rule's only check, then it holds at the first value past the threshold
    and not at the threshold itself (health moves in steps of 5, so 49 is checked here)."""
    [rule] = [r for r in SEED_POLICY.spec.rules if r.id == rule_id]
    [check] = rule.when

    assert check.fact == fact
    assert check.holds({fact: holds_at}) is True
    assert check.holds({fact: fails_at}) is False


# --- the emergency goes first and cools the seed rule down -----------------------------------


def test_a_reported_critical_score_provisions_once_at_the_critical_lane() -> None:
    """Given a health_degraded signal reporting 10, then the emergency rule provisions at the
    critical lane, and the seed rule for the same signal is cooling down, so it does not
    provision a second time."""
    [decision] = decided([sig("h", 0, HEALTH, health_score=10)])

    assert (decision.rule_id, decision.lane, decision.action) == (
        "emergency.reported_critical",
        Priority.CRITICAL,
        Action.RUN_PROVISIONING,
    )


def test_the_emergency_cooldown_holds_the_seed_rule_for_fifteen_minutes() -> None:
    """Given an emergency provisioning at 0, when health_degraded signals (no score) arrive at
    899 s and at 900 s, then only the one at 900 s provisions again, by the seed rule."""
    signals = [
        sig("h0", 0, HEALTH, health_score=10),
        sig("h1", 899, HEALTH),
        sig("h2", 900, HEALTH),
    ]

    assert [(d.inputs.signal_id, d.rule_id) for d in decided(signals)] == [
        ("h0", "emergency.reported_critical"),
        ("h2", "seed.health_degraded"),
    ]


def test_the_derived_emergency_cools_down_a_later_reported_emergency() -> None:
    """Given eleven errors (derived health 45: the emergency provisions), when a
    health_degraded signal reporting 10 follows a minute later, then nothing more is
    provisioned: every provisioning rule shares the action's cooldown."""
    signals = [*several(ERROR, 11), sig("h", 70, HEALTH, health_score=10)]

    assert [(d.inputs.signal_id, d.rule_id) for d in decided(signals)] == [
        ("error_reported-4", "monitor.errors_high"),
        ("error_reported-10", EMERGENCY),
    ]


def test_the_derived_emergency_records_the_health_it_saw() -> None:
    """Given eleven errors, then the emergency decision records health 45, critical, and the
    hour's eleven errors among its facts."""
    emergency = decided(several(ERROR, 11))[-1]

    assert emergency.inputs.facts == {
        "signal.type": "error_reported",
        "minute.error_reported": 11,
        "hour.error_reported": 11,
        "health.score": 45,
        "health.status": "critical",
    }


# --- checks and lanes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("priority", "lane"),
    [
        (10, Priority.CRITICAL),
        (9, Priority.HIGH),
        (8, Priority.HIGH),
        (7, Priority.MEDIUM),
        (5, Priority.MEDIUM),
        (4, Priority.LOW),
        (1, Priority.LOW),
    ],
)
def test_a_priority_maps_to_its_lane(priority: int, lane: Priority) -> None:
    """Given a rule priority, then its lane: 10 critical, 8-9 high, 5-7 medium, 1-4 low."""
    assert lane_of(priority) is lane


@pytest.mark.parametrize(
    ("check", "facts", "holds"),
    [
        pytest.param(Check(fact="hour.error_reported", op="==", value=0), {}, True, id="count 0"),
        pytest.param(Check(fact="minute.heartbeat", op="<", value=1), {}, True, id="minute 0"),
        pytest.param(Check(fact="queue.pending", op="!=", value=5), {}, False, id="missing"),
        pytest.param(Check(fact="signal.status", op="<", value=500), {}, False, id="no attr"),
        pytest.param(
            Check(fact="health.status", op="==", value="critical"),
            {"health.status": "critical"},
            True,
            id="text equal",
        ),
        pytest.param(
            # A policy file cannot say this (refused on load); a fact of the wrong type can
            # still come from a recorded input, so holds() stays defensive.
            Check.model_construct(fact="health.status", op="!=", value=3),
            {"health.status": "critical"},
            False,
            id="text against number",
        ),
        pytest.param(
            Check.model_construct(fact="queue.pending", op=">=", value="5"),
            {"queue.pending": 7},
            False,
            id="number against text",
        ),
        pytest.param(
            Check(fact="signal.status", op="<=", value=500), {"signal.status": 500}, True, id="<="
        ),
    ],
)
def test_a_check_compares_a_fact_with_its_value(
    check: Check, facts: dict[str, Any], holds: bool
) -> None:
    """Given a check and facts, then a missing count is 0, any other missing fact never
    satisfies a check (not even !=), and text never compares with a number."""
    assert check.holds(facts) is holds


# --- the policy version -----------------------------------------------------------------------

LIMITS = """
[limits]
workspace_daily_budget = 3
platform_cap_per_interval = 2
interval_seconds = 60
defer_max_intervals = 2
exempt_lanes = ["critical"]
"""
RULE = """
[[rules]]
id = "retry"
description = "retry a failed webhook"
on = ["webhook_failed"]
when = [{ fact = "signal.status", op = ">=", value = 500 }]
action = "retry_webhook"
priority = 6
cooldown_seconds = 300
"""
BASE = LIMITS + RULE

REFORMATTED = """# the same policy, written differently
[[rules]]   # keys in another order, an inline check table spelled out
priority = 6
cooldown_seconds = 300
action = "retry_webhook"
id = "retry"
on = [
  "webhook_failed",
]
description = "a different description does not change what the policy decides"

[[rules.when]]
value = 500
op = ">="
fact = "signal.status"

[limits]
exempt_lanes = ["critical"]
defer_max_intervals = 2
interval_seconds = 60
platform_cap_per_interval = 2
workspace_daily_budget = 3
"""


def version_of(text: str) -> str:
    return parse_policy(text, "test.toml").version


def test_the_seed_policy_version_is_the_version_of_its_file() -> None:
    """Given the shipped file, then loading or parsing it gives the seed policy's version."""
    assert load_policy().version == SEED_POLICY.version
    assert version_of(SEED_POLICY_FILE.read_text()) == SEED_POLICY.version
    assert SEED_POLICY.version.startswith("p-")
    assert len(SEED_POLICY.version) == 14


def test_the_version_ignores_formatting_comments_and_descriptions() -> None:
    """Given the same rules and limits written in another layout, key order, with comments
    and other descriptions, then the version is the same."""
    assert version_of(REFORMATTED) == version_of(BASE)


def test_the_seed_version_ignores_its_comments_and_descriptions() -> None:
    """Given the seed file without its comment lines and its descriptions, then the version
    is the seed policy's."""
    lines = SEED_POLICY_FILE.read_text().splitlines()
    bare = [
        line.split("#")[0]
        for line in lines
        if not line.startswith("#") and not line.startswith("description")
    ]

    assert version_of("\n".join(bare)) == SEED_POLICY.version


def test_a_policy_that_spells_out_the_default_limits_has_the_same_version() -> None:
    """Given a policy without [limits] and the same one with the default limits written
    out, then both have the same version."""
    defaults = (
        "[limits]\nworkspace_daily_budget = 24\nplatform_cap_per_interval = 50\n"
        'interval_seconds = 60\ndefer_max_intervals = 10\nexempt_lanes = ["critical"]\n'
    )

    assert version_of(RULE) == version_of(defaults + RULE)


CHANGES = [
    ("workspace_daily_budget = 3", "workspace_daily_budget = 4"),
    ("platform_cap_per_interval = 2", "platform_cap_per_interval = 3"),
    ("interval_seconds = 60", "interval_seconds = 30"),
    ("defer_max_intervals = 2", "defer_max_intervals = 1"),
    ('exempt_lanes = ["critical"]', 'exempt_lanes = ["critical", "high"]'),
    ('id = "retry"', 'id = "retry2"'),
    ('on = ["webhook_failed"]', 'on = ["webhook_failed", "publish_failed"]'),
    ('fact = "signal.status"', 'fact = "signal.attempt"'),
    ('op = ">="', 'op = ">"'),
    ("value = 500 }", "value = 502 }"),
    ('action = "retry_webhook"', 'action = "retry_failed"'),
    ("priority = 6", "priority = 7"),
    ("cooldown_seconds = 300", "cooldown_seconds = 299"),
]


@pytest.mark.parametrize(("before", "after"), CHANGES, ids=[after for _, after in CHANGES])
def test_changing_any_rule_parameter_or_limit_changes_the_version(before: str, after: str) -> None:
    """Given the policy with one rule parameter or limit changed, then its version differs
    from the original's."""
    assert before in BASE

    assert version_of(BASE.replace(before, after)) != version_of(BASE)


def test_every_change_gives_a_version_of_its_own() -> None:
    """Given each single change, then no two of the changed policies share a version."""
    versions = {version_of(BASE.replace(before, after)) for before, after in CHANGES}

    assert len(versions) == len(CHANGES)


# --- refused policy files ---------------------------------------------------------------------

INVALID = [
    pytest.param(
        BASE.replace("signal.status", "queue.pendin"), "rules.0.when.0.fact", id="unknown fact"
    ),
    pytest.param(
        BASE.replace("signal.status", "hour.drop_tables"), "rules.0.when.0.fact", id="bad type"
    ),
    pytest.param(BASE + RULE, "repeated: retry", id="duplicate id"),
    pytest.param(BASE.replace('op = ">="', 'op = "=>"'), "rules.0.when.0.op", id="bad op"),
    pytest.param(BASE.replace("priority = 6", "priority = 11"), "rules.0.priority", id="11"),
    pytest.param(BASE.replace("priority = 6", "priority = 0"), "rules.0.priority", id="0"),
    pytest.param(
        BASE.replace('action = "retry_webhook"', 'action = "reboot"'), "rules.0.action", id="act"
    ),
    pytest.param(BASE.replace("cooldown_seconds", "cooldown"), "rules.0.cooldown", id="key"),
    pytest.param("[limits]\ninterval_seconds = 60\n", "rules: Field required", id="no rules"),
    pytest.param(BASE.replace("value = 500", "value = true"), "rules.0.when.0.value", id="bool"),
    pytest.param(BASE.replace("value = 500", 'value = "500"'), "is a number", id="text"),
    pytest.param(
        BASE.replace('fact = "signal.status", op = ">="', 'fact = "health.status", op = "<"'),
        "health.status is text",
        id="text op",
    ),
    pytest.param(
        BASE.replace('on = ["webhook_failed"]', 'on = ["sweep:nightly"]'),
        "rule retry runs on sweep:nightly, which no [[schedules]] or [[timers]] entry defines",
        id="unknown sweep",
    ),
    pytest.param(
        BASE.replace('on = ["webhook_failed"]', 'on = ["webhook_failed", "tick:x"]'),
        "rules.0.on.1",
        id="unknown trigger",
    ),
    pytest.param(
        BASE + '[[schedules]]\nid = "nightly"\ncron = "0 25 * * *"\n',
        "is not a cron expression",
        id="bad cron",
    ),
    pytest.param(
        BASE + '[[schedules]]\nid = "nightly"\ncron = "0 2 * * *"\nevery_seconds = 60\n',
        "give exactly one of cron or every_seconds",
        id="cron and interval",
    ),
    pytest.param(
        BASE + '[[schedules]]\nid = "timers"\nevery_seconds = 60\n',
        "the timer ticks' own schedule",
        id="reserved id",
    ),
    pytest.param(
        BASE + '[[timers]]\nid = "quiet"\narmed_by = ["heartbeat"]\n',
        "timers.0.after_seconds",
        id="timer without delay",
    ),
]


@pytest.mark.parametrize(("text", "problem"), INVALID)
def test_an_invalid_policy_is_refused_naming_its_origin_and_the_problem(
    text: str, problem: str
) -> None:
    """Given a policy with an unknown fact, a repeated rule id, a bad operator, a priority
    out of 1..10, an unknown action or key, or no rules, then PolicyError names the origin
    and where the problem is."""
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "ops/custom.toml")

    message = str(raised.value)
    assert message.startswith("policy ops/custom.toml is invalid: ")
    assert problem in message


def test_a_toml_syntax_error_is_refused_naming_its_origin() -> None:
    """Given text that is not TOML, then PolicyError says the origin is not valid TOML."""
    with pytest.raises(PolicyError, match=r"^policy ops/custom\.toml is not valid TOML: "):
        parse_policy(BASE.replace("priority = 6", "priority = "), "ops/custom.toml")


def test_loading_a_policy_file_names_it_in_the_version_and_in_errors(tmp_path: Path) -> None:
    """Given a policy file, then loading it gives the version of its text; given a missing
    file, then PolicyError names the path and what to do."""
    path = tmp_path / "policy.toml"
    path.write_text(BASE)

    assert load_policy(path).version == version_of(BASE)
    with pytest.raises(PolicyError) as raised:
        load_policy(tmp_path / "missing.toml")
    assert str(raised.value).startswith(f"cannot read policy file {tmp_path / 'missing.toml'} ")
    assert "AUTOPILOT_POLICY_FILE" in str(raised.value)


def test_an_invalid_file_names_its_path(tmp_path: Path) -> None:
    """Given a policy file with a priority of 11, then PolicyError names the file's path."""
    path = tmp_path / "policy.toml"
    path.write_text(BASE.replace("priority = 6", "priority = 11"))

    with pytest.raises(PolicyError, match=f"^policy {path} is invalid: rules.0.priority"):
        load_policy(path)


def test_a_decision_names_the_policy_version_it_was_made_under() -> None:
    """Given the same webhook failure decided under the seed policy and under a custom one,
    then each decision names its own policy's version."""
    signal = sig("w", 0, SignalType.WEBHOOK_FAILED, status=503)
    custom = parse_policy(BASE, "test.toml")

    [seed] = replay_decisions([signal], CONFIG, SEED_POLICY, partitions=1)
    [other] = replay_decisions([signal], CONFIG, custom, partitions=1)

    assert (seed.rule_id, seed.policy_version) == ("seed.webhook_failed", SEED_POLICY.version)
    assert (other.rule_id, other.policy_version) == ("retry", custom.version)
