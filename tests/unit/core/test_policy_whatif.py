"""The what-if's comparison: two runs' decisions paired by workspace, rule and cause, and the
differences reported as new, gone or changed, per rule and per workspace."""

from __future__ import annotations

from typing import Any

import orjson

from core.policy_whatif import Decided, Scope, as_json, compare, render
from tests.support.factories import E0, ledger_entry
from topics.ledger import DecisionEntry, LedgerKind

QUEUE = "monitor.queue_saturated"
WEBHOOK = "seed.webhook_failed"


def decision(
    cause: str,
    rule_id: str = QUEUE,
    workspace_id: str = "ws-1",
    at: int = 0,
    kind: LedgerKind = LedgerKind.DECISION_MADE,
    **payload: Any,
) -> Decided:
    """The decision a ledger entry records: `rule_id` on `cause`, `at` seconds after E0."""
    decision_id = f"dec-{rule_id}-{workspace_id}-{cause}"
    made = kind is LedgerKind.DECISION_MADE
    entry = ledger_entry(
        kind,
        {
            "decision_id": decision_id,
            "rule_id": rule_id,
            "action": "rebalance_queue" if rule_id == QUEUE else "retry_webhook",
            "priority": "high" if rule_id == QUEUE else "medium",
            "rank": 9 if rule_id == QUEUE else 6,
            "command_id": f"cmd-{decision_id}" if made else None,
            "not_before": None,
            "reason": None if made else "the workspace's daily budget is used up",
            "dry_run": False,
            "input": {"at": E0 + at, "signal": {"id": cause}},
            **payload,
        },
        entry_id=decision_id,
        workspace_id=workspace_id,
        causation_id=cause,
        correlation_id=cause,
    )
    assert isinstance(entry, DecisionEntry)
    return Decided.of(entry)


def listed(report: Any) -> list[tuple[str, str, str, str, tuple[str, ...]]]:
    return [
        (d.status, d.decided.workspace_id, d.decided.rule_id, d.decided.cause, d.fields)
        for d in report.differences
    ]


def test_decisions_only_one_policy_made_are_new_or_gone_and_a_different_verdict_changed() -> None:
    """Given the current policy's decisions on q1, q3 and w1, and the new one's on q1 (the
    same), q2 (another signal), and w1 suppressed instead of made, then q2 is new, q3 gone and
    w1 changed in kind, command and reason; q1 is not reported."""
    current = [decision("q1"), decision("q3", at=600), decision("w1", WEBHOOK, at=60)]
    proposed = [
        decision("q1"),
        decision("q2", at=120),
        decision("w1", WEBHOOK, at=60, kind=LedgerKind.DECISION_SUPPRESSED),
    ]

    report = compare(current, proposed, current_version="p-old", proposed_version="p-new")

    assert listed(report) == [
        ("changed", "ws-1", WEBHOOK, "w1", ("kind", "command_id", "reason")),
        ("new", "ws-1", QUEUE, "q2", ()),
        ("gone", "ws-1", QUEUE, "q3", ()),
    ]
    assert (report.current_decisions, report.proposed_decisions) == (3, 3)
    assert report.totals() == {"new": 1, "gone": 1, "changed": 1}


def test_the_same_rule_on_the_same_signal_id_in_another_workspace_is_another_decision() -> None:
    """Given s1 decided for ws-1 under the current policy and for ws-2 under the new one, then
    ws-1's is gone and ws-2's new, not one changed decision."""
    report = compare(
        [decision("s1", workspace_id="ws-1")],
        [decision("s1", workspace_id="ws-2")],
        current_version="p-old",
        proposed_version="p-new",
    )

    assert listed(report) == [
        ("gone", "ws-1", QUEUE, "s1", ()),
        ("new", "ws-2", QUEUE, "s1", ()),
    ]


def test_a_lane_and_a_deferral_are_changes_of_the_same_decision() -> None:
    """Given the new policy puts webhook retries in the high lane and defers one, then both
    decisions are changed, naming the fields that differ."""
    current = [decision("w1", WEBHOOK), decision("w2", WEBHOOK, at=30)]
    proposed = [
        decision("w1", WEBHOOK, priority="high", rank=8),
        decision(
            "w2",
            WEBHOOK,
            at=30,
            kind=LedgerKind.DECISION_DEFERRED,
            command_id="cmd-dec-seed.webhook_failed-ws-1-w2",
            not_before=E0 + 60,
            reason=None,
        ),
    ]

    report = compare(current, proposed, current_version="p-old", proposed_version="p-new")

    assert listed(report) == [
        ("changed", "ws-1", WEBHOOK, "w1", ("priority", "rank")),
        ("changed", "ws-1", WEBHOOK, "w2", ("kind", "not_before")),
    ]


def test_the_scope_keeps_the_decisions_of_its_event_times_and_workspace() -> None:
    """Given decisions at 0, 100 and 200 s in ws-1 and at 100 s in ws-2, when scoped to ws-1
    from 100 s up to 200 s, then only ws-1's at 100 s is reported and counted; a changed
    decision is kept when either side is in the scope."""
    current = [decision("a", at=0), decision("c", at=200), decision("m", WEBHOOK, at=99)]
    proposed = [
        decision("b", at=100),
        decision("d", at=100, workspace_id="ws-2"),
        decision("m", WEBHOOK, at=100, kind=LedgerKind.DECISION_SUPPRESSED),
    ]
    scope = Scope(since=E0 + 100, until=E0 + 200, workspace_id="ws-1")

    report = compare(
        current, proposed, current_version="p-old", proposed_version="p-new", scope=scope
    )

    assert listed(report) == [
        ("new", "ws-1", QUEUE, "b", ()),
        ("changed", "ws-1", WEBHOOK, "m", ("kind", "command_id", "reason")),
    ]
    assert (report.current_decisions, report.proposed_decisions) == (0, 2)


def test_the_text_counts_per_rule_and_workspace_with_a_few_examples() -> None:
    """Given five new queue decisions in ws-1, one gone in ws-2 and one changed webhook retry,
    then the text gives the totals, a line per rule and per workspace with their counts, and
    at most three examples per rule, every kind of change among them."""
    current = [decision("g1", workspace_id="ws-2"), decision("w1", WEBHOOK)]
    proposed = [decision(f"q{n}", at=n) for n in range(5)]
    proposed.append(decision("w1", WEBHOOK, priority="high", rank=8))

    text = render(compare(current, proposed, current_version="p-old", proposed_version="p-new"))

    lines = text.splitlines()
    assert lines[0] == ("what-if over the signal history: policy p-old (current) -> p-new (new)")
    assert (
        "2 decisions under the current policy, 6 under the new one: 5 new, 1 gone, 1 changed"
        in text
    )
    assert [line.split() for line in lines if line.startswith(("  monitor", "  seed"))] == [
        [QUEUE, "5", "1", "0"],
        [WEBHOOK, "0", "0", "1"],
    ]
    assert [line.split() for line in lines if line.startswith("  ws-")] == [
        ["ws-1", "5", "0", "1"],
        ["ws-2", "0", "1", "0"],
    ]
    assert "    + ws-1 signal q0: decision.made rebalance_queue (high)" in lines
    assert "    - ws-2 signal g1: decision.made rebalance_queue (high)" in lines
    assert "    ~ ws-1 signal w1: priority 'medium' -> 'high', rank 6 -> 8" in lines
    assert sum(line.startswith("    + ws-1 signal q") for line in lines) == 2
    assert "    - signal g1 monitor.queue_saturated: decision.made rebalance_queue (high)" in lines


def test_no_difference_says_so() -> None:
    """Given the same decisions under both policies, then the text says the new one decides as
    the current one."""
    same = [decision("q1")]

    text = render(compare(same, same, current_version="p-a", proposed_version="p-a"))

    assert text.splitlines()[-1] == "the new policy decides as the current one over this history"


def test_the_json_lists_every_difference_with_both_verdicts() -> None:
    """Given a new, a gone and a changed decision, then the JSON document has the totals, the
    counts per rule and workspace, and each difference with its verdict under each policy."""
    current = [decision("g1", at=10), decision("w1", WEBHOOK, at=20)]
    proposed = [decision("n1", at=30), decision("w1", WEBHOOK, at=20, priority="high", rank=8)]
    report = compare(
        current,
        proposed,
        current_version="p-old",
        proposed_version="p-new",
        scope=Scope(since=E0),
    )

    document = orjson.loads(orjson.dumps(as_json(report)))

    assert document["current_policy"] == "p-old"
    assert document["new_policy"] == "p-new"
    assert document["scope"] == {
        "since": "2024-01-01T00:00:00Z",
        "until": None,
        "workspace_id": None,
    }
    assert document["totals"] == {"new": 1, "gone": 1, "changed": 1}
    assert document["rules"] == {
        QUEUE: {"new": 1, "gone": 1, "changed": 0},
        WEBHOOK: {"new": 0, "gone": 0, "changed": 1},
    }
    assert document["workspaces"] == {"ws-1": {"new": 1, "gone": 1, "changed": 1}}
    [gone, changed, new] = document["differences"]
    assert (gone["status"], gone["signal_id"], gone["new"]) == ("gone", "g1", None)
    assert gone["current"]["action"] == "rebalance_queue"
    assert (changed["status"], changed["fields"]) == ("changed", ["priority", "rank"])
    assert (changed["current"]["priority"], changed["new"]["priority"]) == ("medium", "high")
    assert (new["status"], new["rule_id"], new["at"]) == ("new", QUEUE, "2024-01-01T00:00:30Z")
