"""A sweep: one schedule's tick evaluated for the workspaces of a shard, within its run limits.
Pure.

Every workspace of the shard that has sent a signal is looked at as of the tick's moment (its
windows and health then, not when it last sent something). The ones a sweep rule may fire on
are evaluated worst health first (then by id, so the order is the same in a replay), at most
`max_workspaces` of them, and no further workspace is evaluated once the run has issued
`max_actions` commands. Both limits are the platform's, split across shards as the platform cap
is. What the run did is summed up in one `sweep.completed` entry per shard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.decide import ShardQuota, Trigger, decide_fired
from core.facts import FactReader
from core.policy import Decision, DecisionKind, Mode, may_fire, shard_share
from core.rules import Policy
from core.schedules import Schedule
from core.windows import WorkspaceState


@dataclass(frozen=True, slots=True)
class SweepRun:
    """What one shard's run of a sweep did (the `sweep.completed` entry's numbers)."""

    schedule: str
    tick_id: str
    at: int
    partition: int
    # Workspaces of the shard looked at, those a sweep rule may fire on, and those evaluated.
    workspaces: int
    candidates: int
    evaluated: int
    decisions: int
    # Commands issued (made or deferred decisions), and suppressed decisions.
    actions: int
    suppressed: int
    # Workspaces with at least one decision.
    affected: int
    # Candidates left for a later run by the run limits.
    skipped: int
    max_workspaces: int
    max_actions: int


@dataclass(frozen=True, slots=True)
class Swept:
    """A sweep's decisions, the workspaces whose policy memory they changed, and its summary."""

    decisions: list[Decision]
    changed: dict[str, WorkspaceState]
    run: SweepRun


def sweep(
    workspaces: Iterable[tuple[str, WorkspaceState]],
    schedule: Schedule,
    trigger: Trigger,
    policy: Policy,
    quota: ShardQuota,
    partitions: int,
    mode: Mode,
) -> Swept:
    """Run one sweep tick over a shard's workspaces (see the module); `quota` is updated."""
    partition = trigger.source.partition
    share = shard_share(policy.limits.platform_cap_per_interval, partitions, partition)
    max_workspaces = shard_share(schedule.max_workspaces, partitions, partition)
    max_actions = shard_share(schedule.max_actions, partitions, partition)
    seen = 0
    candidates: list[tuple[int, str, WorkspaceState, FactReader]] = []
    for workspace_id, state in workspaces:
        if state["watermark"] is None:
            continue
        seen += 1
        facts = FactReader(state, None, at=trigger.at, trigger=trigger.type)
        if may_fire(policy, trigger.type, trigger.at, state["policy"]["issued"], facts):
            candidates.append((facts.health().score, workspace_id, state, facts))
    candidates.sort(key=lambda candidate: (candidate[0], candidate[1]))
    decisions: list[Decision] = []
    changed: dict[str, WorkspaceState] = {}
    evaluated = actions = 0
    for _, workspace_id, state, facts in candidates:
        if evaluated >= max_workspaces or actions >= max_actions:
            break
        evaluated += 1
        # The facts the candidate was chosen by: a sweep's decisions change no other state.
        made = decide_fired(
            policy, state, workspace_id, facts, trigger, trigger.at, quota, share, mode
        )
        if made:
            changed[workspace_id] = state
            decisions.extend(made)
            actions += sum(1 for d in made if d.command_id is not None)
    run = SweepRun(
        schedule=schedule.id,
        tick_id=trigger.id,
        at=trigger.at,
        partition=partition,
        workspaces=seen,
        candidates=len(candidates),
        evaluated=evaluated,
        decisions=len(decisions),
        actions=actions,
        suppressed=sum(1 for d in decisions if d.kind is DecisionKind.SUPPRESSED),
        affected=len(changed),
        skipped=len(candidates) - evaluated,
        max_workspaces=max_workspaces,
        max_actions=max_actions,
    )
    return Swept(decisions, changed, run)
