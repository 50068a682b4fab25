"""The deterministic policy: a rule table over observations. Pure: no Faust, Kafka, clock or I/O.

A rule fires for a workspace when the count of its signal type in the current event-time window
reaches the rule's threshold, so it fires at most once per workspace per window, and a signal
seen twice (de-duplicated upstream) can never fire it twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from tables.windows import Observation, SourcePosition
from topics.commands import Action, Command, Priority
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import SignalType


@dataclass(frozen=True, slots=True)
class Escalation:
    """Raise a rule's priority when a numeric attribute of the signal is below a bound."""

    attribute: str
    below: float
    priority: Priority


@dataclass(frozen=True, slots=True)
class Rule:
    """When `signal_type` reaches `threshold` in a window, ask for `action` at `priority`."""

    rule_id: str
    signal_type: SignalType
    action: Action
    priority: Priority
    threshold: int = 1
    escalation: Escalation | None = None


# The seeds from shared/DESIGN.md. Critical health (score < 50) escalates to the critical lane.
SEED_RULES: tuple[Rule, ...] = (
    Rule(
        "seed.health_degraded",
        SignalType.HEALTH_DEGRADED,
        Action.RUN_PROVISIONING,
        Priority.HIGH,
        escalation=Escalation("health_score", 50, Priority.CRITICAL),
    ),
    Rule(
        "seed.provisioning_needed",
        SignalType.PROVISIONING_NEEDED,
        Action.RUN_PROVISIONING,
        Priority.MEDIUM,
    ),
    Rule("seed.followup_due", SignalType.FOLLOWUP_DUE, Action.SEND_FOLLOWUP, Priority.LOW),
    Rule("seed.webhook_failed", SignalType.WEBHOOK_FAILED, Action.RETRY_WEBHOOK, Priority.MEDIUM),
    Rule(
        "seed.integration_offline",
        SignalType.INTEGRATION_OFFLINE,
        Action.RESTART_INTEGRATION,
        Priority.HIGH,
    ),
)


@dataclass(frozen=True, slots=True)
class Policy:
    """A rule table and its version, the stable hash of its content."""

    rules: tuple[Rule, ...]
    version: str

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> Policy:
        """A policy whose version changes whenever any rule or parameter changes."""
        canonical = json.dumps([asdict(rule) for rule in rules], sort_keys=True, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return cls(tuple(rules), f"p-{digest}")


SEED_POLICY = Policy.of(SEED_RULES)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one observation."""

    decision_id: str
    command_id: str
    rule_id: str
    policy_version: str
    workspace_id: str
    action: Action
    priority: Priority
    signal_id: str
    window_start: int
    count: int
    source: SourcePosition


def decide(observation: Observation, policy: Policy = SEED_POLICY) -> list[Decision]:
    """The decisions one observation triggers, in rule-table order."""
    decisions = []
    for rule in policy.rules:
        if rule.signal_type is not observation.signal_type or observation.count != rule.threshold:
            continue
        # Deterministic: the same rule, workspace and window give the same ids on any replay.
        decision_id = stable_id(
            "dec", policy.version, rule.rule_id, observation.workspace_id, observation.window_start
        )
        decisions.append(
            Decision(
                decision_id=decision_id,
                command_id=stable_id("cmd", decision_id),
                rule_id=rule.rule_id,
                policy_version=policy.version,
                workspace_id=observation.workspace_id,
                action=rule.action,
                priority=_priority(rule, observation),
                signal_id=observation.signal_id,
                window_start=observation.window_start,
                count=observation.count,
                source=observation.source,
            )
        )
    return decisions


def _priority(rule: Rule, observation: Observation) -> Priority:
    escalation = rule.escalation
    if escalation is None:
        return rule.priority
    value = observation.attributes.get(escalation.attribute)
    if isinstance(value, int | float) and not isinstance(value, bool) and value < escalation.below:
        return escalation.priority
    return rule.priority


def decision_events(decision: Decision, recorded_at: datetime) -> tuple[LedgerEntry, Command]:
    """The ledger entry and the command a decision becomes; the shell passes in the time."""
    entry = LedgerEntry(
        entry_id=decision.decision_id,
        kind=LedgerKind.DECISION_MADE,
        workspace_id=decision.workspace_id,
        correlation_id=decision.signal_id,
        causation_id=decision.signal_id,
        policy_version=decision.policy_version,
        recorded_at=recorded_at,
        payload={
            "rule_id": decision.rule_id,
            "action": decision.action.value,
            "priority": decision.priority.value,
            "command_id": decision.command_id,
            "window_start": decision.window_start,
            "count": decision.count,
            "source": asdict(decision.source),
        },
    )
    command = Command(
        command_id=decision.command_id,
        decision_id=decision.decision_id,
        workspace_id=decision.workspace_id,
        action=decision.action,
        priority=decision.priority,
        rule_id=decision.rule_id,
        policy_version=decision.policy_version,
        signal_ids=(decision.signal_id,),
        correlation_id=decision.signal_id,
    )
    return entry, command
