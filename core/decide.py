"""Fold and decide: one workspace's signals through its windows and the policy, in order. Pure.

The aggregate agent calls this once per record with the record's signals for its shard, and
the offline replay calls it the same way, so the live run and a replay of the same partition
decide the same. Each signal is folded, then evaluated against the state as of that signal, so
how signals were batched into records never changes a decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypedDict, cast

from core.facts import FactReader
from core.policy import (
    DAY_SECONDS,
    Decision,
    DecisionKind,
    Inputs,
    Mode,
    evaluate,
    may_fire,
    quota_window,
)
from core.rules import Policy
from core.windows import (
    LATE,
    Observation,
    PolicyMemory,
    SourcePosition,
    WindowConfig,
    WorkspaceState,
    expire,
    fold_signal,
    late_horizon,
)
from topics.commands import Command
from topics.signals import Signal


class ShardQuota(TypedDict):
    """A shard's slots under the platform cap, one JSON value beside its workspaces' states."""

    v: int
    # Interval start (epoch seconds, as text) → slots taken in it.
    counts: dict[str, int]
    # Decision id → the interval start its slot is in (a decision evaluated again keeps it).
    slots: dict[str, int]
    # The latest decision time seen on the shard (event time).
    newest: int | None


def initial_quota() -> ShardQuota:
    """A shard's slots under the platform cap: taken per interval, and by which decision;
    `newest` is the latest decision time seen on the shard (event time)."""
    return {"v": 1, "counts": {}, "slots": {}, "newest": None}


@dataclass(frozen=True, slots=True)
class Decided:
    """What one record's signals did: the decisions, and the workspace states they changed."""

    decisions: list[Decision]
    states: dict[str, WorkspaceState]
    duplicates: int
    late: int


def decide_signals(
    state_of: Callable[[str], WorkspaceState],
    signals: Iterable[Signal],
    source: SourcePosition,
    config: WindowConfig,
    policy: Policy,
    quota: ShardQuota,
    share: int,
    mode: Mode,
) -> Decided:
    """Fold and evaluate a shard's signals one by one, in their order; states (got through
    `state_of`) and the quota are updated in place. The order of the signals across workspaces
    matters (they share the platform cap), the grouping into records does not."""
    return decide_positioned(
        state_of, ((signal, source) for signal in signals), config, policy, quota, share, mode
    )


def decide_positioned(
    state_of: Callable[[str], WorkspaceState],
    signals: Iterable[tuple[Signal, SourcePosition]],
    config: WindowConfig,
    policy: Policy,
    quota: ShardQuota,
    share: int,
    mode: Mode,
) -> Decided:
    """`decide_signals` for signals each read at its own position: a batch of many records
    decided in one call, each decision recording the record its signal came from."""
    decisions: list[Decision] = []
    touched: dict[str, WorkspaceState] = {}
    duplicates = late = 0
    horizon = late_horizon(config)
    for signal, source in signals:
        workspace_id = signal.workspace_id
        state = touched.get(workspace_id)
        if state is None:
            state = touched[workspace_id] = state_of(workspace_id)
        outcome = fold_signal(state, signal, source, horizon)
        if not isinstance(outcome, Observation):
            if outcome is LATE:
                late += 1
            else:
                duplicates += 1
            continue
        signal_type = signal.type
        # The observation moved the watermark: it is set.
        at = cast(int, state["watermark"])
        facts = FactReader(state, outcome)
        if not may_fire(policy, signal_type, at, state["policy"]["issued"], facts):
            continue
        trigger = Trigger(signal_type.value, signal.id, outcome.occurred_at, source)
        decisions.extend(
            decide_fired(policy, state, workspace_id, facts, trigger, at, quota, share, mode)
        )
    for state in touched.values():
        expire(state, config)
        _forget_cooled(state["policy"]["issued"], state["watermark"], policy)
        _forget_cooled(state["policy"]["held"], state["watermark"], policy)
    return Decided(decisions, touched, duplicates, late)


@dataclass(frozen=True, slots=True)
class Trigger:
    """What an evaluation runs on: a signal, or a sweep's tick or a timer (its own id and
    moment), and the record that brought it."""

    type: str
    id: str
    at: int
    source: SourcePosition


def decide_trigger(
    state: WorkspaceState,
    workspace_id: str,
    trigger: Trigger,
    policy: Policy,
    quota: ShardQuota,
    share: int,
    mode: Mode,
) -> list[Decision]:
    """Evaluate the rules on a sweep or a timer for one workspace, its facts as of the
    trigger's moment; the workspace's policy memory and the quota are updated in place."""
    facts = FactReader(state, None, at=trigger.at, trigger=trigger.type)
    if not may_fire(policy, trigger.type, trigger.at, state["policy"]["issued"], facts):
        return []
    return decide_fired(policy, state, workspace_id, facts, trigger, trigger.at, quota, share, mode)


def decide_fired(
    policy: Policy,
    state: WorkspaceState,
    workspace_id: str,
    facts: FactReader,
    trigger: Trigger,
    at: int,
    quota: ShardQuota,
    share: int,
    mode: Mode,
) -> list[Decision]:
    """The evaluation of a trigger some rule may fire on (the caller checked `may_fire` with
    these facts); the workspace's policy memory and the quota are updated in place."""
    memory = state["policy"]
    issued = memory["issued"]
    newest = quota["newest"]
    if newest is None or at > newest:
        quota["newest"] = newest = at
    day = at // DAY_SECONDS
    # Only what is still cooling down: the same whether or not older issues were dropped.
    cooling_from = at - policy.max_cooldown_seconds
    inputs = Inputs(
        workspace_id=workspace_id,
        signal_id=trigger.id,
        signal_type=trigger.type,
        signal_at=trigger.at,
        source=trigger.source,
        at=at,
        facts=facts,
        issued={a: t for a, t in issued.items() if t > cooling_from},
        held={a: t for a, t in memory["held"].items() if t > cooling_from},
        day_used=memory["used"] if memory["day"] == day else 0,
        quota_share=share,
        quota_used=_used(quota, policy, at, newest),
        mode=mode,
    )
    made = evaluate(policy, inputs, quota["slots"])
    if not made:
        return []
    # A decision keeps the facts it saw, as of this signal: the reader would see the next
    # one. Taken only now, as most evaluations here decide nothing (a suppressed decision
    # already recorded within its cooldown).
    seen = replace(inputs, facts=facts.as_dict())
    made = [replace(decision, inputs=seen) for decision in made]
    _remember(memory, quota, made, at, day, policy.limits.interval_seconds)
    return made


def _used(quota: ShardQuota, policy: Policy, at: int, newest: int) -> dict[int, int]:
    # Slots older than the shard's memory count as free whether or not they were dropped yet,
    # so when forget_old_slots runs never changes a decision.
    counts = quota["counts"]
    remembered_from = newest - policy.quota_memory_seconds
    used = {}
    for start in quota_window(policy, at):
        if start < remembered_from:
            continue
        taken = counts.get(str(start))
        if taken:
            used[start] = taken
    return used


def _remember(
    memory: PolicyMemory,
    quota: ShardQuota,
    decisions: list[Decision],
    at: int,
    day: int,
    interval_seconds: int,
) -> None:
    slots = quota["slots"]
    counts = quota["counts"]
    for decision in decisions:
        if decision.kind is DecisionKind.SUPPRESSED:
            memory["held"][decision.action.value] = at
            continue
        memory["issued"][decision.action.value] = at
        if memory["day"] != day:
            memory["day"], memory["used"] = day, 0
        memory["used"] += 1
        if decision.decision_id not in slots:
            # A made decision holds a slot in its own interval, a deferred one in the later one.
            slot = (
                decision.not_before
                if decision.not_before is not None
                else at - at % interval_seconds
            )
            slots[decision.decision_id] = slot
            counts[str(slot)] = counts.get(str(slot), 0) + 1


def _forget_cooled(issued: dict[str, int], watermark: int | None, policy: Policy) -> None:
    if watermark is None:
        return
    horizon = watermark - policy.max_cooldown_seconds
    for action in [action for action, at in issued.items() if at < horizon]:
        del issued[action]


def forget_old_slots(quota: ShardQuota, policy: Policy) -> None:
    """Drop slots of intervals older than the shard's memory; once per record."""
    newest = quota["newest"]
    if newest is None:
        return
    counts = quota["counts"]
    horizon = newest - policy.quota_memory_seconds
    old = [start for start in counts if int(start) < horizon]
    if not old:
        return
    for start in old:
        del counts[start]
    slots = quota["slots"]
    for decision_id in [d for d, start in slots.items() if start < horizon]:
        del slots[decision_id]


def command_of(decision: Decision) -> Command | None:
    """The command a made or deferred decision issues; None for a suppressed one."""
    if decision.command_id is None:
        return None
    return Command(
        command_id=decision.command_id,
        decision_id=decision.decision_id,
        workspace_id=decision.workspace_id,
        action=decision.action,
        priority=decision.lane,
        rule_id=decision.rule_id,
        policy_version=decision.policy_version,
        signal_ids=(decision.inputs.signal_id,),
        correlation_id=decision.inputs.signal_id,
        not_before=(
            None
            if decision.not_before is None
            else datetime.fromtimestamp(decision.not_before, UTC)
        ),
        dry_run=decision.dry_run,
    )
