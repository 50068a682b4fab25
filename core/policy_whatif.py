"""What a new policy would have decided over the signal history, beside the current one. Pure.

`autopilot policy whatif` runs the signals and control topics through the signal stage twice,
once per policy (app/policy_whatif.py); this module compares the two runs' decisions. A
decision is the same one in both runs when its workspace, rule and cause (the signal, tick or
timer it was made on, and that cause's event time: its decision id) are; it then differs when
its verdict does (kind, action, lane, rank, command, not-before, reason, dry-run). So each
difference is:
- **new**: only the new policy decided it (a rule it adds or loosens, a cooldown it ends
  sooner, a budget the current policy used up);
- **gone**: only the current policy decided it;
- **changed**: both decided on it, differently (made under one, deferred or suppressed under
  the other; another action or lane).
Unlike `policy replay`, this sees the signals on which the current policy decided nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from core.policy_replay import COMPARED as REPLAY_COMPARED
from topics.ledger import DecisionEntry

Status = Literal["new", "gone", "changed"]
STATUSES: tuple[Status, ...] = ("new", "gone", "changed")

# The verdict: what the two runs are compared on (not when it was recorded, nor its inputs):
# the replay's fields but those a decision is matched by.
COMPARED = tuple(name for name in REPLAY_COMPARED if name not in ("decision_id", "rule_id"))


@dataclass(frozen=True, slots=True)
class Decided:
    """One decision of a run, as the comparison reads it (its recorded inputs left out)."""

    workspace_id: str
    rule_id: str
    # The signal id, tick id or timer firing it was made on.
    cause: str
    decision_id: str
    # Event time of the decision (epoch seconds): its recorded input's `at`.
    at: int
    kind: str
    action: str
    priority: str
    rank: int
    command_id: str | None
    not_before: int | None
    reason: str | None
    dry_run: bool

    @classmethod
    def of(cls, entry: DecisionEntry) -> Decided:
        """The decision a decision.* ledger entry records."""
        payload = entry.payload
        return cls(
            workspace_id=entry.workspace_id or "",
            rule_id=payload.rule_id,
            cause=entry.causation_id,
            decision_id=payload.decision_id,
            at=int(payload.input["at"]),
            kind=entry.kind.value,
            action=payload.action,
            priority=payload.priority,
            rank=payload.rank,
            command_id=payload.command_id,
            not_before=payload.not_before,
            reason=payload.reason,
            dry_run=payload.dry_run,
        )

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes it the same decision in both runs."""
        return (self.workspace_id, self.rule_id, self.cause, self.decision_id)

    def verdict(self) -> dict[str, Any]:
        """The compared fields."""
        return {name: getattr(self, name) for name in COMPARED}


@dataclass(frozen=True, slots=True)
class Difference:
    """One decision the two policies do not agree on."""

    status: Status
    current: Decided | None
    proposed: Decided | None
    # For a changed decision, the compared fields that differ.
    fields: tuple[str, ...] = ()

    @property
    def decided(self) -> Decided:
        """The decision under the new policy, else under the current one."""
        decided = self.proposed or self.current
        assert decided is not None, "a difference has at least one side"
        return decided


@dataclass(frozen=True, slots=True)
class Scope:
    """Which differences a report shows: decided at event times from `since` (inclusive) to
    `until` (exclusive), epoch seconds, and of one workspace; None is no bound."""

    since: int | None = None
    until: int | None = None
    workspace_id: str | None = None

    def holds(self, decided: Decided | None) -> bool:
        """Whether the decision is in the scope (None never is)."""
        return (
            decided is not None
            and (self.workspace_id is None or decided.workspace_id == self.workspace_id)
            and (self.since is None or decided.at >= self.since)
            and (self.until is None or decided.at < self.until)
        )


@dataclass(frozen=True, slots=True)
class History:
    """What the runs read: the shards, and the records of each input topic."""

    shards: int = 0
    signal_records: int = 0
    control_records: int = 0


@dataclass(frozen=True)
class WhatIfReport:
    """The decisions a new policy would have made over a history, against the current one's."""

    current_version: str
    proposed_version: str
    scope: Scope
    history: History
    # Decisions in scope under each policy.
    current_decisions: int
    proposed_decisions: int
    differences: tuple[Difference, ...] = field(default=())

    def totals(self) -> dict[Status, int]:
        """How many differences of each status."""
        return _count(self.differences)

    def by_rule(self) -> dict[str, list[Difference]]:
        """The differences per rule, rules by name."""
        return _group(self.differences, lambda d: d.decided.rule_id)

    def by_workspace(self) -> dict[str, list[Difference]]:
        """The differences per workspace, workspaces by id."""
        return _group(self.differences, lambda d: d.decided.workspace_id)


def compare(
    current: Iterable[Decided],
    proposed: Iterable[Decided],
    *,
    current_version: str,
    proposed_version: str,
    scope: Scope | None = None,
    history: History | None = None,
) -> WhatIfReport:
    """Pair the two runs' decisions and keep those that differ, within the scope (a
    difference is in it when either side is)."""
    scope = scope or Scope()
    before = {d.key: d for d in current}
    after = {d.key: d for d in proposed}
    differences: list[Difference] = []
    for key in before.keys() | after.keys():
        was, will = before.get(key), after.get(key)
        if not (scope.holds(was) or scope.holds(will)):
            continue
        if was is None:
            differences.append(Difference("new", None, will))
        elif will is None:
            differences.append(Difference("gone", was, None))
        else:
            fields = tuple(n for n in COMPARED if getattr(was, n) != getattr(will, n))
            if fields:
                differences.append(Difference("changed", was, will, fields))
    differences.sort(key=lambda d: (d.decided.workspace_id, d.decided.at, d.decided.key))
    return WhatIfReport(
        current_version=current_version,
        proposed_version=proposed_version,
        scope=scope,
        history=history or History(),
        current_decisions=sum(1 for d in before.values() if scope.holds(d)),
        proposed_decisions=sum(1 for d in after.values() if scope.holds(d)),
        differences=tuple(differences),
    )


def _count(differences: Iterable[Difference]) -> dict[Status, int]:
    counts: dict[Status, int] = dict.fromkeys(STATUSES, 0)
    for difference in differences:
        counts[difference.status] += 1
    return counts


def _group(
    differences: Iterable[Difference], by: Callable[[Difference], str]
) -> dict[str, list[Difference]]:
    groups: dict[str, list[Difference]] = {}
    for difference in differences:
        groups.setdefault(by(difference), []).append(difference)
    return dict(sorted(groups.items()))


def as_json(report: WhatIfReport) -> dict[str, Any]:
    """The report as a JSON document: every difference, and the counts per rule and workspace."""
    scope = report.scope
    return {
        "current_policy": report.current_version,
        "new_policy": report.proposed_version,
        "scope": {
            "since": _iso(scope.since),
            "until": _iso(scope.until),
            "workspace_id": scope.workspace_id,
        },
        "read": {
            "shards": report.history.shards,
            "signal_records": report.history.signal_records,
            "control_records": report.history.control_records,
        },
        "decisions": {"current": report.current_decisions, "new": report.proposed_decisions},
        "totals": report.totals(),
        "rules": {rule: _count(group) for rule, group in report.by_rule().items()},
        "workspaces": {ws: _count(group) for ws, group in report.by_workspace().items()},
        "differences": [
            {
                "status": d.status,
                "workspace_id": d.decided.workspace_id,
                "rule_id": d.decided.rule_id,
                "signal_id": d.decided.cause,
                "decision_id": d.decided.decision_id,
                "at": _iso(d.decided.at),
                "current": None if d.current is None else d.current.verdict(),
                "new": None if d.proposed is None else d.proposed.verdict(),
                "fields": list(d.fields),
            }
            for d in report.differences
        ],
    }


def render(report: WhatIfReport, examples: int = 3, workspaces: int = 20) -> str:
    """The report as text: totals, then per rule and per workspace the counts and a few
    examples (`--json` has them all)."""
    history, scope, totals = report.history, report.scope, report.totals()
    lines = [
        f"what-if over the signal history: policy {report.current_version} (current) -> "
        f"{report.proposed_version} (new)",
        f"read {history.shards} shards: {history.signal_records} signal records, "
        f"{history.control_records} control records",
    ]
    if scope != Scope():
        lines.append(f"decisions {_describe_scope(scope)}")
    lines.append(
        f"{report.current_decisions} decisions under the current policy, "
        f"{report.proposed_decisions} under the new one: "
        f"{totals['new']} new, {totals['gone']} gone, {totals['changed']} changed"
    )
    if not report.differences:
        lines.append("the new policy decides as the current one over this history")
        return "\n".join(lines)
    header = f"{'new':>6} {'gone':>6} {'changed':>8}"
    lines.append(f"{'by rule':<34}{header}")
    for rule, group in report.by_rule().items():
        lines.append(_counts_line(rule, group))
        lines.extend(f"    {_example(d, rule=False)}" for d in _examples(group, examples))
    by_workspace = report.by_workspace()
    lines.append(f"{'by workspace':<34}{header}")
    # The workspaces with the most differences first.
    ranked = sorted(by_workspace.items(), key=lambda item: (-len(item[1]), item[0]))
    for workspace_id, group in ranked[:workspaces]:
        lines.append(_counts_line(workspace_id, group))
        lines.extend(
            f"    {_example(d, workspace=False)}" for d in _examples(group, min(examples, 2))
        )
    if len(ranked) > workspaces:
        lines.append(f"  … and {len(ranked) - workspaces} more workspaces (--json lists all)")
    return "\n".join(lines)


def _counts_line(name: str, group: list[Difference]) -> str:
    counts = _count(group)
    return f"  {name:<32}{counts['new']:>6} {counts['gone']:>6} {counts['changed']:>8}"


def _examples(group: list[Difference], count: int) -> list[Difference]:
    """The first of each status, then the second of each, and so on: every kind of change
    shows."""
    by_status = [[d for d in group if d.status == status] for status in STATUSES]
    ordered = [d for rank in itertools.zip_longest(*by_status) for d in rank if d is not None]
    return ordered[:count]


def _example(difference: Difference, *, rule: bool = True, workspace: bool = True) -> str:
    decided = difference.decided
    where = " ".join(
        part
        for part in (
            decided.workspace_id if workspace else "",
            f"signal {decided.cause}",
            decided.rule_id if rule else "",
        )
        if part
    )
    if difference.status == "changed" and difference.current is not None:
        was = difference.current
        changes = ", ".join(
            f"{name} {getattr(was, name)!r} -> {getattr(decided, name)!r}"
            for name in difference.fields
        )
        return f"~ {where}: {changes}"
    mark = "+" if difference.status == "new" else "-"
    return f"{mark} {where}: {decided.kind} {decided.action} ({decided.priority})"


def _describe_scope(scope: Scope) -> str:
    parts = []
    if scope.workspace_id is not None:
        parts.append(f"of {scope.workspace_id}")
    if scope.since is not None:
        parts.append(f"from {_iso(scope.since)}")
    if scope.until is not None:
        parts.append(f"before {_iso(scope.until)}")
    return " ".join(parts)


def _iso(moment: int | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
