"""Offline replay: the decisions the live workers must make for a stream of signals, shard by
shard, each shard's signals in their order, with the shard's share of the platform cap."""

from __future__ import annotations

from typing import Any

from core import windows
from core.decide import decide_signals, forget_old_slots, initial_quota
from core.policy import Decision, DecisionKind, Mode, shard_share
from core.replay import replay_decisions
from core.rules import parse_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from tests.support.factories import E0, SEED_POLICY, signal_at
from topics.commands import Action, Priority
from topics.shards import shard_of
from topics.signals import Signal, SignalType

CONFIG = WindowConfig(grace_seconds=60)
OFFLINE = SourcePosition("offline", -1, -1)
MADE, DEFERRED, SUPPRESSED = DecisionKind.MADE, DecisionKind.DEFERRED, DecisionKind.SUPPRESSED

# One retry slot per minute on the platform, so shards' shares show.
ONE_A_MINUTE = parse_policy(
    """
[limits]
platform_cap_per_interval = 2
interval_seconds = 60
defer_max_intervals = 3

[[rules]]
id = "retry"
on = ["webhook_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 0
""",
    "one-a-minute.toml",
)


def sig(
    signal_id: str, at: int, workspace_id: str, signal_type: SignalType, **attributes: object
) -> Signal:
    return signal_at(signal_id, at, signal_type, workspace_id, **attributes)


def webhook(signal_id: str, at: int, workspace_id: str) -> Signal:
    return sig(signal_id, at, workspace_id, SignalType.WEBHOOK_FAILED)


def listed(decisions: list[Decision]) -> list[tuple[Any, ...]]:
    return [
        (d.workspace_id, d.inputs.signal_id, d.rule_id, d.action, d.lane, d.kind) for d in decisions
    ]


def test_the_workspaces_used_below_live_on_these_shards() -> None:
    """Given 8 partitions, then ws-3, ws-c and ws-a are owned by shards 1, 2 and 7; given 2,
    ws-c and ws-1 share shard 0 and ws-a is on shard 1 (the tests below rely on it)."""
    assert [shard_of(w, 8) for w in ("ws-3", "ws-c", "ws-a")] == [1, 2, 7]
    assert [shard_of(w, 2) for w in ("ws-c", "ws-1", "ws-a")] == [0, 0, 1]


def test_replay_decides_shard_by_shard_each_in_its_own_order() -> None:
    """Given interleaved signals of three workspaces on three shards, with a duplicate, a
    repeat within the cooldown, one after it and a late signal, then the decisions come
    shard by shard (1, 2, 7), each in signal order, all from the offline source and the
    seed policy, each with its shard's share of the cap of 50 (7 for shard 1, 6 for 2 and
    7)."""
    signals = [
        webhook("a1", 0, "ws-a"),
        sig("c1", 5, "ws-c", SignalType.HEALTH_DEGRADED, health_score=12),
        webhook("a1", 6, "ws-a"),
        webhook("a2", 7, "ws-a"),
        sig("3-1", 8, "ws-3", SignalType.FOLLOWUP_DUE),
        sig("c2", 400, "ws-c", SignalType.HEALTH_DEGRADED, health_score=90),
        webhook("a3", 300, "ws-a"),
        sig("a4", 100, "ws-a", SignalType.INTEGRATION_OFFLINE),
        sig("c3", 905, "ws-c", SignalType.HEALTH_DEGRADED, health_score=90),
    ]

    decisions = replay_decisions(signals, CONFIG)

    assert listed(decisions) == [
        ("ws-3", "3-1", "seed.followup_due", Action.SEND_FOLLOWUP, Priority.LOW, MADE),
        (
            "ws-c",
            "c1",
            "emergency.reported_critical",
            Action.RUN_PROVISIONING,
            Priority.CRITICAL,
            MADE,
        ),
        ("ws-c", "c3", "seed.health_degraded", Action.RUN_PROVISIONING, Priority.HIGH, MADE),
        ("ws-a", "a1", "seed.webhook_failed", Action.RETRY_WEBHOOK, Priority.MEDIUM, MADE),
        ("ws-a", "a3", "seed.webhook_failed", Action.RETRY_WEBHOOK, Priority.MEDIUM, MADE),
    ]
    assert {d.inputs.source for d in decisions} == {OFFLINE}
    assert {d.policy_version for d in decisions} == {SEED_POLICY.version}
    assert [d.inputs.quota_share for d in decisions] == [7, 6, 6, 6, 6]


def test_each_shard_decides_with_its_own_share_of_the_cap() -> None:
    """Given a cap of 2 a minute over 2 shards (1 each), when ws-c and ws-1 (shard 0) and
    ws-a (shard 1) retry in the same minute, then shard 0's second retry waits a minute and
    ws-a's is made; on one shard (share 2) the third retry waits instead."""
    signals = [webhook("c", 0, "ws-c"), webhook("one", 1, "ws-1"), webhook("a", 2, "ws-a")]

    two_shards = replay_decisions(signals, CONFIG, ONE_A_MINUTE, partitions=2)
    one_shard = replay_decisions(signals, CONFIG, ONE_A_MINUTE, partitions=1)

    assert [(d.workspace_id, d.kind, d.not_before) for d in two_shards] == [
        ("ws-c", MADE, None),
        ("ws-1", DEFERRED, E0 + 60),
        ("ws-a", MADE, None),
    ]
    assert [(d.workspace_id, d.kind, d.not_before) for d in one_shard] == [
        ("ws-c", MADE, None),
        ("ws-1", MADE, None),
        ("ws-a", DEFERRED, E0 + 60),
    ]


def test_replay_applies_the_operator_mode_it_is_given() -> None:
    """Given a webhook failure, then replayed paused it is suppressed, replayed in dry-run it
    is made and marked dry-run, and by default it is made live."""
    signals = [webhook("a", 0, "ws-a")]

    [paused] = replay_decisions(signals, CONFIG, mode=Mode(paused=True))
    [dry] = replay_decisions(signals, CONFIG, mode=Mode(dry_run=True))
    [live] = replay_decisions(signals, CONFIG)

    assert (paused.kind, paused.command_id, paused.reason) == (
        SUPPRESSED,
        None,
        "operator paused autonomous decisions",
    )
    assert (dry.kind, dry.dry_run) == (MADE, True)
    assert (live.kind, live.dry_run) == (MADE, False)
    assert dry.decision_id == live.decision_id == paused.decision_id


def test_replay_with_another_policy_decides_by_that_policy() -> None:
    """Given the same signals replayed with a policy whose retry has no cooldown, then every
    webhook failure is retried, under that policy's rule and version."""
    signals = [webhook("a1", 0, "ws-a"), webhook("a2", 1, "ws-a")]

    seed = replay_decisions(signals, CONFIG)
    other = replay_decisions(signals, CONFIG, ONE_A_MINUTE)

    assert [(d.inputs.signal_id, d.rule_id) for d in seed] == [("a1", "seed.webhook_failed")]
    assert [(d.inputs.signal_id, d.rule_id, d.policy_version) for d in other] == [
        ("a1", "retry", ONE_A_MINUTE.version),
        ("a2", "retry", ONE_A_MINUTE.version),
    ]


def test_replay_agrees_with_a_worker_deciding_record_by_record() -> None:
    """Given one shard's signals, when a worker decides them two per record (dropping old
    slots after each record) and the replay decides them at once, then they make the same
    decisions, apart from the source each records (one slot a minute: most wait or are
    suppressed)."""
    signals = [webhook(f"s{n}", 20 * n, "ws-c" if n % 2 else "ws-1") for n in range(9)]
    states: dict[str, WorkspaceState] = {}
    quota = initial_quota()
    share = shard_share(2, 2, 0)
    worker: list[Decision] = []
    for offset in range(0, len(signals), 2):
        source = SourcePosition("signals", 0, offset)
        decided = decide_signals(
            lambda w: states.setdefault(w, windows.initialize()),
            signals[offset : offset + 2],
            source,
            CONFIG,
            ONE_A_MINUTE,
            quota,
            share,
            Mode(),
        )
        forget_old_slots(quota, ONE_A_MINUTE)
        worker.extend(decided.decisions)

    replayed = replay_decisions(signals, CONFIG, ONE_A_MINUTE, partitions=2)

    assert [(d.decision_id, d.kind, d.not_before, d.command_id) for d in replayed] == [
        (d.decision_id, d.kind, d.not_before, d.command_id) for d in worker
    ]
    assert [(d.inputs.signal_id, d.kind, d.not_before) for d in replayed] == [
        ("s0", MADE, None),
        ("s1", DEFERRED, E0 + 60),
        ("s2", DEFERRED, E0 + 120),
        ("s3", DEFERRED, E0 + 180),
        ("s4", DEFERRED, E0 + 240),
        ("s5", SUPPRESSED, None),
        ("s6", DEFERRED, E0 + 300),
        ("s7", SUPPRESSED, None),
        ("s8", SUPPRESSED, None),
    ]


def test_replay_of_nothing_decides_nothing() -> None:
    """Given no signals, then there are no decisions."""
    assert replay_decisions([], CONFIG) == []
