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

Playbook runs are replayed the same way: each transition (the playbook.* entries one cause
made) is derived again from the run as the entry before it recorded it and the recorded cause
(core/playbooks.py), and compared: the entries' kinds, steps, outcomes, next steps, commands,
and the run after it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.ledger_entries import decision_payload
from core.playbooks import Advance, Origin, replay_transition, start
from core.policy import Decision, Inputs, evaluate
from core.rules import Policy
from topics.commands import Priority
from topics.ledger import DecisionEntry, LedgerEntry, LedgerKind, PlaybookEntry

# What makes two decisions the same: every field of the verdict, not the time it was recorded
# (the what-if, core/policy_whatif.py, compares the verdict of decisions matched by id and rule).
COMPARED = (
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
    # Playbook transitions derived again (their differences are among the lists below).
    transitions: int = 0
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

    @property
    def transitions(self) -> int:
        """How many recorded playbook transitions were derived again."""
        return sum(r.transitions for r in self.workspaces.values())


def replay_policy(entries: Iterable[LedgerEntry], policy: Policy) -> ReplayReport:
    """Derive every recorded evaluation again with `policy` and compare (entries de-duplicated
    by id beforehand, in ledger order)."""
    groups: dict[tuple[str, str], list[DecisionEntry]] = {}
    # Run id → its transitions in ledger order, each the entries one cause made.
    runs: dict[str, dict[str, list[PlaybookEntry]]] = {}
    for entry in entries:
        if isinstance(entry, DecisionEntry) and entry.workspace_id is not None:
            groups.setdefault((entry.workspace_id, entry.causation_id), []).append(entry)
        elif isinstance(entry, PlaybookEntry) and entry.workspace_id is not None:
            transitions = runs.setdefault(entry.payload.run_id, {})
            transitions.setdefault(entry.causation_id, []).append(entry)
    report = ReplayReport(policy.version)
    for transitions in runs.values():
        _replay_run(report, list(transitions.values()), policy)
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


def _replay_run(
    report: ReplayReport, transitions: list[list[PlaybookEntry]], policy: Policy
) -> None:
    """Derive each transition of one run again from the run the one before it recorded."""
    before: dict[str, Any] | None = None
    for recorded in transitions:
        first = recorded[0]
        workspace_id = first.workspace_id or ""
        result = report.workspaces.setdefault(workspace_id, WorkspaceReplay())
        result.transitions += 1
        version = first.policy_version
        if version is not None:
            report.recorded_versions.add(version)
        playbook = policy.playbooks.get(first.payload.playbook)
        cause = first.payload.cause
        derived: Advance | None = None
        problem = None
        if playbook is None:
            problem = f"the policy has no playbook {first.payload.playbook}"
        else:
            try:
                if first.kind is LedgerKind.PLAYBOOK_STARTED:
                    origin = first.payload.run["origin"]
                    derived = start(
                        playbook,
                        first.payload.run_id,
                        workspace_id,
                        Origin(
                            origin["decision"],
                            origin["rule"],
                            Priority(origin["lane"]),
                            origin["signal"],
                            origin["dry_run"],
                        ),
                        first.payload.commands[0],
                        int(cause["at"]),
                    )
                elif before is None:
                    # The run's earlier entries are not in what was read (retention, --since).
                    result.transitions -= 1
                    continue
                else:
                    derived = replay_transition(playbook, before, cause)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                problem = f"the recorded transition cannot be read ({type(exc).__name__})"
        rows = tuple(_transition_row(entry.kind.value, entry.payload) for entry in recorded)
        derived_rows = (
            ()
            if derived is None
            else tuple(
                _transition_row(move.kind.value, move, derived.run) for move in derived.moves
            )
        )
        before = recorded[-1].payload.run
        if problem is None and rows == derived_rows:
            continue
        difference = Difference(
            workspace_id,
            first.causation_id,
            version,
            rows,
            derived_rows,
            problem
            or f"playbook run {first.payload.run_id}: recorded {_moves(rows)}, "
            f"derived {_moves(derived_rows) or 'no transition'}",
        )
        if version == policy.version or playbook is None:
            result.diverging.append(difference)
        else:
            result.changed.append(difference)


def _transition_row(kind: str, move: Any, run: dict[str, Any] | None = None) -> dict[str, Any]:
    commands = move.commands
    return {
        "kind": kind,
        "step": move.step,
        "outcome": move.outcome,
        "next": move.next,
        "commands": [c if isinstance(c, str) else c.command_id for c in commands],
        "run": _canonical(move.run if run is None else run),
    }


def _moves(rows: tuple[dict[str, Any], ...]) -> str:
    return ", ".join(f"{row['kind']} {row['step'] or ''}->{row['next'] or ''}" for row in rows)


def _recorded_row(entry: DecisionEntry) -> dict[str, Any]:
    row = {name: getattr(entry.payload, name, None) for name in COMPARED}
    row["decision_id"] = entry.entry_id
    row["kind"] = entry.kind.value
    return row


def _derived_row(decision: Decision) -> dict[str, Any]:
    payload = decision_payload(decision)
    row = {name: getattr(payload, name, None) for name in COMPARED}
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
    if report.transitions:
        lines.append(f"{report.transitions} playbook transitions derived again")
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
            fields = [name for name in COMPARED if before[name] != after[name]]
            parts.append(
                f"~ {before['rule_id']}: "
                + ", ".join(f"{name} {before[name]!r} -> {after[name]!r}" for name in fields)
            )
    return "; ".join(parts)
