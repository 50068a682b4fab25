"""Offline replay of signals through the pure core: what the live pipeline must decide."""

from __future__ import annotations

from collections.abc import Iterable

from agents.policy import SEED_POLICY, Decision, Policy, decide
from tables import windows
from tables.windows import SourcePosition, WindowConfig
from topics.signals import Signal

_OFFLINE = SourcePosition("offline", -1, -1)


def replay_decisions(
    signals: Iterable[Signal], config: WindowConfig, policy: Policy = SEED_POLICY
) -> list[Decision]:
    """Fold each workspace's signals (in order) and apply the policy, as the workers do."""
    per_workspace: dict[str, list[Signal]] = {}
    for signal in signals:
        per_workspace.setdefault(signal.workspace_id, []).append(signal)
    decisions = []
    for workspace_id in sorted(per_workspace):
        folded = windows.add(windows.initialize(), per_workspace[workspace_id], _OFFLINE, config)
        for observation in folded.observations:
            decisions.extend(decide(observation, policy))
    return decisions
