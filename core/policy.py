"""The deterministic policy: one signal's evaluation against the rule table. Pure.

No Faust, Kafka, clock, randomness or I/O: everything an evaluation reads is in its `Inputs`
(the facts, the workspace's cooldowns and budget, the shard's share of the platform cap, the
operator mode), and the ledger records those inputs with each decision, so `autopilot policy
replay` can re-derive any recorded decision offline, with this policy or another.

Per signal, the rules watching its type are tried highest priority first:
- a rule whose action was issued to the workspace within the rule's cooldown is skipped;
- a rule whose checks do not all hold is skipped;
- otherwise it yields one decision: `decision.suppressed` while the operator has paused
  decisions or when the workspace's daily budget is spent; else it takes a slot under the
  platform cap: this interval (`decision.made`), a later one (`decision.deferred`, the command
  waits until then), or none within `defer_max_intervals` (`decision.suppressed`). Exempt
  lanes never wait.
- a made or deferred decision starts the action's cooldown. A suppressed one does not (the
  action was not taken, so the first signal after a resume, a new day or a free interval acts
  at once); it is recorded once per cooldown while the reason lasts ("held"), so a paused or
  exhausted workspace leaves one entry per cooldown on the ledger, not one per signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.rules import Policy, Rule
from core.windows import SourcePosition
from topics.commands import Action, Priority
from topics.ids import stable_id

DAY_SECONDS = 86_400


class DecisionKind(StrEnum):
    """The verdict on a rule that fired; also the decision's ledger entry kind."""

    MADE = "decision.made"
    DEFERRED = "decision.deferred"
    SUPPRESSED = "decision.suppressed"


@dataclass(frozen=True, slots=True)
class Mode:
    """The operator's switches: decisions paused, commands marked dry-run."""

    paused: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Inputs:
    """Everything one evaluation reads; recorded on the ledger with each decision it made."""

    workspace_id: str
    signal_id: str
    signal_type: str
    # The signal's own event time (epoch seconds): with its id, what makes it one signal.
    signal_at: int
    source: SourcePosition
    # Event time of the decision: the workspace's watermark after the signal was folded.
    at: int
    facts: Mapping[str, Any]
    # Per action, when it was last issued to this workspace (event time), for the actions
    # still inside the policy's longest cooldown.
    issued: Mapping[str, int]
    # Per action, when a decision on it was last suppressed (same window as `issued`).
    held: Mapping[str, int]
    # Actions counted against the workspace's budget on the UTC day of `at`.
    day_used: int
    # This shard's part of the platform cap per interval, and the slots already taken in the
    # intervals a decision could get (from the one holding `at`, by interval start).
    quota_share: int
    quota_used: Mapping[int, int]
    mode: Mode

    def as_json(self) -> dict[str, Any]:
        """The JSON shape recorded on the ledger."""
        return {
            "workspace_id": self.workspace_id,
            "signal": {
                "id": self.signal_id,
                "type": self.signal_type,
                "at": self.signal_at,
                "source": [self.source.topic, self.source.partition, self.source.offset],
            },
            "at": self.at,
            "facts": dict(self.facts),
            "issued": dict(self.issued),
            "held": dict(self.held),
            "day_used": self.day_used,
            "quota": {
                "share": self.quota_share,
                "used": {str(start): n for start, n in self.quota_used.items()},
            },
            "mode": {"paused": self.mode.paused, "dry_run": self.mode.dry_run},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Inputs:
        """The inverse of as_json (KeyError/TypeError/ValueError if the shape is wrong)."""
        signal = data["signal"]
        topic, partition, offset = signal["source"]
        return cls(
            workspace_id=data["workspace_id"],
            signal_id=signal["id"],
            signal_type=signal["type"],
            signal_at=signal["at"],
            source=SourcePosition(topic, partition, offset),
            at=data["at"],
            facts=data["facts"],
            issued=data["issued"],
            held=data["held"],
            day_used=data["day_used"],
            quota_share=data["quota"]["share"],
            quota_used={int(start): n for start, n in data["quota"]["used"].items()},
            mode=Mode(**data["mode"]),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided when a rule fired on one signal."""

    decision_id: str
    kind: DecisionKind
    rule_id: str
    policy_version: str
    workspace_id: str
    action: Action
    lane: Priority
    priority: int
    # Made and deferred decisions issue a command; suppressed ones do not.
    command_id: str | None
    # Deferred: the start of the interval the command waits for (event time).
    not_before: int | None
    reason: str | None
    dry_run: bool
    inputs: Inputs


def decision_id_of(rule_id: str, workspace_id: str, signal_id: str, signal_at: int) -> str:
    """A decision's id: one rule on one signal (its id and event time) of one workspace,
    whatever the policy version, so a signal evaluated again after a crash gives the same id
    and is de-duplicated, while an id a producer reuses at another time gives another."""
    return stable_id("dec", rule_id, workspace_id, signal_id, signal_at)


def command_id_of(decision_id: str) -> str:
    """The command's id, also its idempotency key: derived from the decision."""
    return stable_id("cmd", decision_id)


def cooling_down(rule: Rule, at: int, issued: Mapping[str, int]) -> bool:
    """Whether the rule's action was issued to the workspace within its cooldown."""
    last = issued.get(rule.action.value)
    return last is not None and at - last < rule.cooldown_seconds


def may_fire(
    policy: Policy, signal_type: Any, at: int, issued: Mapping[str, int], facts: Mapping[str, Any]
) -> bool:
    """Whether any rule watching this type is out of its cooldown and its checks hold. If none
    is, `evaluate` would decide nothing, so its inputs need not be built at all: the common
    case, a busy workspace cooling down or a healthy one. Reads only the facts it checks."""
    for rule, (action, cooldown) in zip(
        policy.rules_for[signal_type], policy.cooldowns_for[signal_type], strict=True
    ):
        last = issued.get(action)
        if last is not None and at - last < cooldown:
            continue
        if all(check.holds(facts) for check in rule.when):
            return True
    return False


def quota_window(policy: Policy, at: int) -> list[int]:
    """The interval starts a decision at `at` may take a slot in, earliest first."""
    step = policy.limits.interval_seconds
    first = at - at % step
    return [first + k * step for k in range(policy.limits.defer_max_intervals + 1)]


def evaluate(
    policy: Policy, inputs: Inputs, admitted: Mapping[str, int] | None = None
) -> list[Decision]:
    """The decisions the rules make on one signal, highest priority first.

    `admitted` maps decision ids that already hold a slot under the platform cap to its
    interval: a signal evaluated again (redelivered after a crash) keeps its slot, so the
    verdict is the same as the first time. It is not part of the recorded inputs: only a
    decision written again after a crash uses it, and readers keep the first copy.
    """
    limits = policy.limits
    at = inputs.at
    issued = dict(inputs.issued)
    held = dict(inputs.held)
    used = inputs.day_used
    quota = dict(inputs.quota_used)
    windows = quota_window(policy, at)
    decisions = []
    for rule in policy.rules_for[inputs.signal_type]:
        if cooling_down(rule, at, issued):
            continue
        if not all(check.holds(inputs.facts) for check in rule.when):
            continue
        decision_id = decision_id_of(
            rule.id, inputs.workspace_id, inputs.signal_id, inputs.signal_at
        )
        action = rule.action.value
        exempt = rule.lane in limits.exempt_lanes
        slot: int | None = None
        reason: str | None = None
        if inputs.mode.paused:
            reason = "operator paused autonomous decisions"
        elif not exempt and used >= limits.workspace_daily_budget:
            reason = (
                f"workspace daily budget spent: {used} of {limits.workspace_daily_budget} "
                f"actions on day {at // DAY_SECONDS}"
            )
        else:
            slot = (admitted or {}).get(decision_id)
            if slot is not None and slot < windows[0]:
                slot = None  # not this decision's slot: an id from an earlier interval
            if slot is None:
                slot = _take_slot(quota, windows, inputs.quota_share, exempt)
            if slot is None:
                reason = (
                    f"platform cap reached: this shard's {inputs.quota_share} actions per "
                    f"{limits.interval_seconds} s are taken for the next "
                    f"{len(windows)} intervals"
                )
        if slot is None:
            last = held.get(action)
            if last is not None and at - last < rule.cooldown_seconds:
                continue  # suppressed within the cooldown already: recorded once
            held[action] = at
            kind = DecisionKind.SUPPRESSED
        else:
            issued[action] = at
            used += 1
            kind = DecisionKind.MADE if slot == windows[0] else DecisionKind.DEFERRED
            if kind is DecisionKind.DEFERRED:
                reason = (
                    f"platform cap reached for interval {windows[0]}: "
                    f"deferred to the interval starting {slot}"
                )
        decisions.append(
            Decision(
                decision_id=decision_id,
                kind=kind,
                rule_id=rule.id,
                policy_version=policy.version,
                workspace_id=inputs.workspace_id,
                action=rule.action,
                lane=rule.lane,
                priority=rule.priority,
                command_id=None if slot is None else command_id_of(decision_id),
                not_before=slot if kind is DecisionKind.DEFERRED else None,
                reason=reason,
                dry_run=inputs.mode.dry_run,
                inputs=inputs,
            )
        )
    return decisions


def _take_slot(quota: dict[int, int], windows: list[int], share: int, exempt: bool) -> int | None:
    """Take the first interval with room (an exempt lane takes the current one regardless)."""
    if exempt:
        quota[windows[0]] = quota.get(windows[0], 0) + 1
        return windows[0]
    for start in windows:
        if quota.get(start, 0) < share:
            quota[start] = quota.get(start, 0) + 1
            return start
    return None


def shard_share(cap: int, partitions: int, partition: int) -> int:
    """This shard's part of the platform cap: the cap split across shards, the remainder going
    to the lowest shards, so the parts add up to the cap exactly. Zero is a valid part."""
    base, remainder = divmod(cap, partitions)
    return base + (1 if partition < remainder else 0)
