"""Offline replay: the decisions the live pipeline must make for a stream of signals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.policy import SEED_POLICY
from projections.replay import replay_decisions
from tables.windows import SourcePosition, WindowConfig
from topics.commands import Action, Priority
from topics.signals import Signal, SignalType, signal_from

T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200
CONFIG = WindowConfig(grace_seconds=60)


def sig(
    signal_id: str, at: int, workspace_id: str, signal_type: SignalType, **attributes: object
) -> Signal:
    return signal_from(
        {
            "id": signal_id,
            "workspace_id": workspace_id,
            "type": signal_type,
            "occurred_at": T0 + timedelta(seconds=at),
            "attributes": attributes,
        }
    )


def test_replay_decides_per_workspace_in_workspace_order() -> None:
    """Given interleaved signals of two workspaces, including a duplicate, a repeat in the
    same window and a late signal, then replay gives one decision per workspace, rule and
    window, grouped by workspace id, all marked as offline."""
    signals = [
        sig("b1", 0, "ws-b", SignalType.WEBHOOK_FAILED),
        sig("a1", 5, "ws-a", SignalType.HEALTH_DEGRADED, health_score=12),
        sig("b1", 6, "ws-b", SignalType.WEBHOOK_FAILED),
        sig("b2", 7, "ws-b", SignalType.WEBHOOK_FAILED),
        sig("a2", 400, "ws-a", SignalType.HEALTH_DEGRADED, health_score=90),
        sig("a3", 10, "ws-a", SignalType.FOLLOWUP_DUE),
    ]

    decisions = replay_decisions(signals, CONFIG)

    assert [
        (d.workspace_id, d.rule_id, d.window_start, d.signal_id, d.action, d.priority)
        for d in decisions
    ] == [
        ("ws-a", "seed.health_degraded", E0, "a1", Action.RUN_PROVISIONING, Priority.CRITICAL),
        ("ws-a", "seed.health_degraded", E0 + 300, "a2", Action.RUN_PROVISIONING, Priority.HIGH),
        ("ws-b", "seed.webhook_failed", E0, "b1", Action.RETRY_WEBHOOK, Priority.MEDIUM),
    ]
    assert {d.source for d in decisions} == {SourcePosition("offline", -1, -1)}
    assert {d.policy_version for d in decisions} == {SEED_POLICY.version}


def test_replay_of_nothing_decides_nothing() -> None:
    """Given no signals, then there are no decisions."""
    assert replay_decisions([], CONFIG) == []
