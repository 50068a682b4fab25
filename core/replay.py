"""Offline replay of signals through the pure core: what the live pipeline must decide.

Signals are routed to their shards (murmur2, as every Autopilot writer does) and each shard is
folded and decided in order, exactly as its worker does; the grouping into records does not
change a decision, the order within a shard does.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from core import windows
from core.decide import decide_signals, initial_quota
from core.policy import Decision, Mode, shard_share
from core.rules import Policy, seed_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from topics.shards import Shards
from topics.signals import Signal

_OFFLINE = SourcePosition("offline", -1, -1)


def replay_decisions(
    signals: Iterable[Signal],
    config: WindowConfig,
    policy: Policy | None = None,
    partitions: int = 8,
    mode: Mode | None = None,
) -> list[Decision]:
    """Every decision, shard by shard (in shard order), as the workers make them; under the seed
    policy unless another is given."""
    policy = policy or seed_policy()
    shards = Shards(partitions)
    per_shard: dict[int, list[Signal]] = {}
    for signal in signals:
        per_shard.setdefault(shards.owner(signal.workspace_id), []).append(signal)
    decisions = []
    for shard in sorted(per_shard):
        states: dict[str, WorkspaceState] = {}
        state_of = partial(state_in, states)
        share = shard_share(policy.limits.platform_cap_per_interval, partitions, shard)
        decided = decide_signals(
            state_of,
            per_shard[shard],
            _OFFLINE,
            config,
            policy,
            initial_quota(),
            share,
            mode or Mode(),
        )
        decisions.extend(decided.decisions)
    return decisions


def state_in(states: dict[str, WorkspaceState], workspace_id: str) -> WorkspaceState:
    """A workspace's state in a shard replayed from empty (`states`), made on first use."""
    state = states.get(workspace_id)
    if state is None:
        state = states[workspace_id] = windows.initialize()
    return state
