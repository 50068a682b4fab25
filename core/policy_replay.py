"""Re-deriving recorded decisions with a policy: the proof of determinism, and a what-if. Pure.

Every decision entry on the ledger records the inputs of the evaluation that made it (the
signal, the facts, the cooldowns, the budget, the cap's slots, the operator mode). Grouped by
the signal they were made on, the decisions of one evaluation are derived again with the given
policy and compared field by field with what was recorded:
- recorded with the same policy version: they must be identical; any difference is a
  divergence (a tampered entry, a non-deterministic rule, a bug) and fails the replay;
- recorded with another version: the differences are the what-if of the new policy.
A what-if covers the evaluations that decided something; a signal on which the recorded policy
decided nothing left no inputs on the ledger, so a rule the new policy adds is previewed only
on signals where some rule fired.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.ledger_entries import decision_payload
from core.policy import Decision, Inputs, evaluate
from core.rules import Policy
from topics.ledger import DecisionEntry, LedgerEntry

# What makes two decisions the same: every field of the verdict, not the time it was recorded.
_COMPARED = (
    "decision_id",
    "kind",
    "rule_id",
    "action",
    "priority",
    "rank",
    "command_id",
    "not_before",
    "reason",
    "dry_run",
)


@dataclass(frozen=True, slots=True)
class Difference:
    """One evaluation whose recorded decisions differ from the derived ones."""

    workspace_id: str
    signal_id: str
    recorded_version: str | None
    recorded: tuple[dict[str, Any], ...]
    derived: tuple[dict[str, Any], ...]
    problem: str | None = None


@dataclass
class WorkspaceReplay:
    """The verdict for one workspace."""

    evaluations: int = 0
    identical: int = 0
    diverging: list[Difference] = field(default_factory=list)
    changed: list[Difference] = field(default_factory=list)

    @property
    def status(self) -> str:
        """identical, diverging (same policy, different result) or changed (what-if)."""
        if self.diverging:
            return "diverging"
        if self.changed:
            return "changed"
        return "identical"


@dataclass
class ReplayReport:
    """Per workspace, how the recorded decisions compare with the policy's."""

    policy_version: str
    workspaces: dict[str, WorkspaceReplay] = field(default_factory=dict)
    recorded_versions: set[str] = field(default_factory=set)

    @property
    def diverging(self) -> list[str]:
        """Workspaces whose decisions differ under the policy version that made them."""
        return sorted(w for w, r in self.workspaces.items() if r.diverging)

    @property
    def changed(self) -> list[str]:
        """Workspaces whose decisions the given (different) policy would change."""
        return sorted(w for w, r in self.workspaces.items() if r.changed and not r.diverging)

    @property
    def evaluations(self) -> int:
        """How many recorded evaluations were derived again."""
        return sum(r.evaluations for r in self.workspaces.values())


def replay_policy(entries: Iterable[LedgerEntry], policy: Policy) -> ReplayReport:
    """Derive every recorded evaluation again with `policy` and compare (entries de-duplicated
    by id beforehand, in ledger order)."""
    groups: dict[tuple[str, str], list[DecisionEntry]] = {}
    for entry in entries:
        if isinstance(entry, DecisionEntry) and entry.workspace_id is not None:
            groups.setdefault((entry.workspace_id, entry.causation_id), []).append(entry)
    report = ReplayReport(policy.version)
    for (workspace_id, signal_id), recorded in groups.items():
        result = report.workspaces.setdefault(workspace_id, WorkspaceReplay())
        result.evaluations += 1
        versions = {entry.policy_version for entry in recorded}
        report.recorded_versions.update(v for v in versions if v is not None)
        same_policy = versions == {policy.version}
        recorded_rows = tuple(_recorded_row(entry) for entry in recorded)
        derived_rows: tuple[dict[str, Any], ...] = ()
        problem = None
        inputs = {_canonical(entry.payload.input) for entry in recorded}
        if len(inputs) != 1:
            problem = "the decisions of one signal record different inputs"
        else:
            try:
                derived_rows = tuple(
                    _derived_row(d)
                    for d in evaluate(policy, Inputs.from_json(recorded[0].payload.input))
                )
            except (KeyError, TypeError, ValueError) as exc:
                problem = f"the recorded input cannot be read ({type(exc).__name__})"
        if problem is None and sorted(recorded_rows, key=_key) == sorted(derived_rows, key=_key):
            result.identical += 1
            continue
        difference = Difference(
            workspace_id,
            signal_id,
            next(iter(versions)) if len(versions) == 1 else None,
            recorded_rows,
            derived_rows,
            problem,
        )
        # Without the inputs nothing can be re-derived, whatever the version: that is tampering.
        if same_policy or problem is not None:
            result.diverging.append(difference)
        else:
            result.changed.append(difference)
    return report


def _recorded_row(entry: DecisionEntry) -> dict[str, Any]:
    row = {name: getattr(entry.payload, name, None) for name in _COMPARED}
    row["decision_id"] = entry.entry_id
    row["kind"] = entry.kind.value
    return row


def _derived_row(decision: Decision) -> dict[str, Any]:
    payload = decision_payload(decision)
    row = {name: getattr(payload, name, None) for name in _COMPARED}
    row["kind"] = decision.kind.value
    return row


def _key(row: dict[str, Any]) -> str:
    return str(row["decision_id"])


def _canonical(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def render(report: ReplayReport, verbose: bool = False, limit: int = 20) -> str:
    """The report as text: totals, then the workspaces that diverged or would change."""
    workspaces = report.workspaces
    identical = sum(1 for r in workspaces.values() if r.status == "identical")
    lines = [
        f"policy {report.policy_version}; recorded by "
        f"{', '.join(sorted(report.recorded_versions)) or 'no policy'}",
        f"{report.evaluations} evaluations in {len(workspaces)} workspaces: "
        f"{identical} identical, {len(report.diverging)} diverging, "
        f"{len(report.changed)} changed by this policy",
    ]
    shown = 0
    for workspace_id in sorted(workspaces):
        result = workspaces[workspace_id]
        if result.status == "identical" and not verbose:
            continue
        lines.append(
            f"  {workspace_id:<24} {result.status:<10} "
            f"{result.identical}/{result.evaluations} evaluations identical"
        )
        for difference in (result.diverging + result.changed)[:3]:
            if shown >= limit:
                break
            shown += 1
            lines.append(f"    signal {difference.signal_id}: {_describe(difference)}")
    return "\n".join(lines)


def _describe(difference: Difference) -> str:
    if difference.problem:
        return difference.problem
    recorded = {r["decision_id"]: r for r in difference.recorded}
    derived = {r["decision_id"]: r for r in difference.derived}
    parts = []
    for decision_id in sorted(recorded.keys() | derived.keys()):
        before, after = recorded.get(decision_id), derived.get(decision_id)
        if before is None and after is not None:
            parts.append(f"+ {after['rule_id']} {after['kind']} {after['action']}")
        elif after is None and before is not None:
            parts.append(f"- {before['rule_id']} {before['kind']} {before['action']}")
        elif before is not None and after is not None:
            fields = [name for name in _COMPARED if before[name] != after[name]]
            parts.append(
                f"~ {before['rule_id']}: "
                + ", ".join(f"{name} {before[name]!r} -> {after[name]!r}" for name in fields)
            )
    return "; ".join(parts)
