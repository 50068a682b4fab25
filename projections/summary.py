"""A summary of the ledger: decisions per rule, outcomes per action, workspaces affected.

A pure fold over entries (the same result live or replayed); the demo prints it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from topics.ledger import (
    TERMINAL_KINDS,
    CommandPayload,
    DecisionEntry,
    LedgerEntry,
    LedgerKind,
    OperatorSwitched,
    SignalRejected,
)


@dataclass
class LedgerSummary:
    """Counts folded from ledger entries."""

    entries: int = 0
    # Every verdict: decision.made, decision.deferred (over the cap, later), .suppressed.
    decisions_per_verdict: Counter[str] = field(default_factory=Counter)
    decisions_per_rule: Counter[str] = field(default_factory=Counter)
    decisions_per_priority: Counter[str] = field(default_factory=Counter)
    outcomes_per_action: dict[str, Counter[str]] = field(default_factory=dict)
    rejections_per_reason: Counter[str] = field(default_factory=Counter)
    workspaces_affected: set[str] = field(default_factory=set)
    operator_switches: Counter[str] = field(default_factory=Counter)

    def add(self, entry: LedgerEntry) -> None:
        """Fold one entry in."""
        self.entries += 1
        if isinstance(entry, DecisionEntry):
            self.decisions_per_verdict[entry.kind.value] += 1
            if entry.kind is LedgerKind.DECISION_SUPPRESSED:
                return
            # Rules, priorities and workspaces count the decisions that issue a command.
            self.decisions_per_rule[entry.payload.rule_id] += 1
            self.decisions_per_priority[entry.payload.priority] += 1
            if entry.workspace_id:
                self.workspaces_affected.add(entry.workspace_id)
        elif isinstance(entry, OperatorSwitched):
            self.operator_switches[entry.kind.value] += 1
        elif entry.kind in TERMINAL_KINDS and isinstance(entry.payload, CommandPayload):
            action = entry.payload.action
            self.outcomes_per_action.setdefault(action, Counter())[entry.kind.value] += 1
        elif isinstance(entry, SignalRejected):
            # The reason's first clause names the kind of problem without echoing input.
            self.rejections_per_reason[entry.payload.reason.split(":")[0]] += 1

    @property
    def decisions(self) -> int:
        """How many decisions issued a command (decision.made and decision.deferred)."""
        return sum(self.decisions_per_rule.values())

    @property
    def outcomes(self) -> int:
        """How many terminal action outcomes were folded."""
        return sum(sum(c.values()) for c in self.outcomes_per_action.values())

    def render(self) -> str:
        """The summary as aligned text for a terminal."""
        lines = [f"ledger entries read: {self.entries}", "", "decisions per verdict:"]
        lines += [f"  {k:<28} {n:>7}" for k, n in sorted(self.decisions_per_verdict.items())]
        lines += ["", "decisions per rule (made or deferred):"]
        lines += [f"  {rule:<28} {n:>7}" for rule, n in sorted(self.decisions_per_rule.items())]
        lines += ["", "decisions per priority:"]
        lines += [f"  {p:<28} {n:>7}" for p, n in sorted(self.decisions_per_priority.items())]
        lines += ["", "outcomes per action:"]
        for action, outcomes in sorted(self.outcomes_per_action.items()):
            mix = ", ".join(f"{kind} {n}" for kind, n in sorted(outcomes.items()))
            lines.append(f"  {action:<28} {mix}")
        lines += ["", "signals rejected (dead-lettered):"]
        lines += [f"  {r:<28} {n:>7}" for r, n in sorted(self.rejections_per_reason.items())]
        if self.operator_switches:
            lines += ["", "operator switches (per shard):"]
            lines += [f"  {k:<28} {n:>7}" for k, n in sorted(self.operator_switches.items())]
        lines += ["", f"workspaces affected: {len(self.workspaces_affected)}"]
        return "\n".join(lines)


def summarize(entries: Iterable[LedgerEntry]) -> LedgerSummary:
    """Fold entries into a new summary."""
    summary = LedgerSummary()
    for entry in entries:
        summary.add(entry)
    return summary
