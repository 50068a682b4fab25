"""The ledger summary the demo prints: a pure fold over ledger entries that counts every
verdict, the rules and lanes of the decisions that issue a command, action outcomes (skipped
ones too), rejections and operator switches."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from actions.reconciler import RetryableError, TerminalError
from core.codec import Rejection
from core.decide import command_of
from core.ledger_entries import (
    dead_lettered_entry,
    decision_entry,
    failed_entry,
    rejection_entry,
    skipped_entry,
    succeeded_entry,
    switch_entry,
)
from core.policy import Decision, DecisionKind, Inputs, Mode, evaluate
from core.windows import SourcePosition
from projections.summary import summarize
from tests.support.factories import SEED_POLICY
from topics.commands import Command
from topics.control import OperatorSwitch, Switch, switched
from topics.ledger import LedgerEntry
from topics.signals import SignalType

T = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200
SOURCE = SourcePosition("signals", 0, 1)


def decided(
    signal_type: SignalType,
    workspace_id: str,
    facts: dict[str, Any] | None = None,
    **overrides: Any,
) -> Decision:
    """The seed policy's only decision on one signal of a workspace with these facts."""
    fields: dict[str, Any] = {
        "workspace_id": workspace_id,
        "signal_id": f"sig-{workspace_id}-{signal_type.value}",
        "signal_type": signal_type.value,
        "signal_at": E0,
        "source": SOURCE,
        "at": E0,
        "facts": {"signal.type": signal_type.value, **(facts or {})},
        "issued": {},
        "held": {},
        "day_used": 0,
        "quota_share": 6,
        "quota_used": {},
        "mode": Mode(),
    }
    fields.update(overrides)
    [decision] = evaluate(SEED_POLICY, Inputs(**fields))
    return decision


def command(decision: Decision) -> Command:
    issued = command_of(decision)
    assert issued is not None
    return issued


def switch(request_id: str, to: Switch, shard: int) -> LedgerEntry:
    request = OperatorSwitch(request_id=request_id, switch=to, by="alice", requested_at=T)
    return switch_entry(request, shard, switched({"paused": False, "dry_run": False}, to), T)


def a_ledger() -> list[LedgerEntry]:
    """Two made decisions (one critical), one deferred, one suppressed; three outcomes (one
    failed) and a skipped action; three rejections; three operator switches."""
    critical = decided(SignalType.HEALTH_DEGRADED, "ws-1", {"signal.health_score": 10})
    webhook = decided(SignalType.WEBHOOK_FAILED, "ws-1")
    followup = decided(SignalType.FOLLOWUP_DUE, "ws-3", quota_used={E0: 6})
    paused = decided(SignalType.WEBHOOK_FAILED, "ws-4", mode=Mode(paused=True))
    assert [d.kind for d in (critical, webhook, followup, paused)] == [
        DecisionKind.MADE,
        DecisionKind.MADE,
        DecisionKind.DEFERRED,
        DecisionKind.SUPPRESSED,
    ]
    return [
        switch("op-1", Switch.PAUSE, 0),
        switch("op-1", Switch.PAUSE, 1),
        *(decision_entry(d, T) for d in (critical, webhook, followup, paused)),
        switch("op-2", Switch.RESUME, 0),
        succeeded_entry(command(critical), T, {}),
        # An attempt that failed and was retried is not an outcome; its dead letter is.
        failed_entry(command(webhook), T, RetryableError("endpoint answered 503"), T),
        dead_lettered_entry(command(webhook), T, TerminalError("webhook endpoint gone")),
        succeeded_entry(command(webhook), T, {"status": 200}),
        skipped_entry(command(followup), T, "dry run: not carried out"),
        rejection_entry(Rejection("invalid: type: bad", b"{}"), SOURCE, T),
        rejection_entry(Rejection("undecodable: not UTF-8 JSON", b"\xff"), SOURCE, T),
        rejection_entry(Rejection("invalid: x: y", b'{"workspace_id": "ws-9"}', 0), SOURCE, T),
    ]


def test_an_empty_ledger_summarises_to_zero() -> None:
    """Given no entries, then every count is zero and the rendering has empty sections and
    no operator section."""
    summary = summarize([])

    assert (summary.entries, summary.decisions, summary.outcomes) == (0, 0, 0)
    assert summary.render() == (
        "ledger entries read: 0\n\ndecisions per verdict:\n\n"
        "decisions per rule (made or deferred):\n\ndecisions per priority:\n\n"
        "outcomes per action:\n\nsignals rejected (dead-lettered):\n\nworkspaces affected: 0"
    )


def test_every_verdict_is_counted() -> None:
    """Given made, deferred and suppressed decisions, then each verdict has its count."""
    assert summarize(a_ledger()).decisions_per_verdict == Counter(
        {"decision.made": 2, "decision.deferred": 1, "decision.suppressed": 1}
    )


def test_rules_and_lanes_count_only_the_decisions_that_issue_a_command() -> None:
    """Given two made decisions, a deferred one and a suppressed one, then three decisions
    are counted per rule and per lane; the suppressed retry of ws-4 is in neither."""
    summary = summarize(a_ledger())

    assert summary.decisions == 3
    assert summary.decisions_per_rule == Counter(
        {"emergency.reported_critical": 1, "seed.webhook_failed": 1, "seed.followup_due": 1}
    )
    assert summary.decisions_per_priority == Counter({"critical": 1, "medium": 1, "low": 1})


def test_outcomes_are_counted_per_action_including_skipped_ones() -> None:
    """Given a success, a retried attempt, a dead letter, another success and a skipped
    action, then each terminal outcome counts under its action, four in all."""
    summary = summarize(a_ledger())

    assert summary.outcomes == 4
    assert summary.outcomes_per_action == {
        "run_provisioning": Counter({"action.succeeded": 1}),
        "retry_webhook": Counter({"action.dead_lettered": 1, "action.succeeded": 1}),
        "send_followup": Counter({"action.skipped": 1}),
    }


def test_rejections_and_operator_switches_are_counted() -> None:
    """Given three rejections and a pause recorded by two shards and a resume by one, then
    rejections count per reason class and switches per kind (one per shard)."""
    summary = summarize(a_ledger())

    assert summary.rejections_per_reason == Counter({"invalid": 2, "undecodable": 1})
    assert summary.operator_switches == Counter({"operator.paused": 2, "operator.resumed": 1})
    assert summary.entries == 15


def test_workspaces_affected_are_those_with_a_decision_that_issues_a_command() -> None:
    """Given commands for ws-1 and ws-3, a suppressed decision for ws-4 and a rejection
    naming ws-9, then two workspaces are affected."""
    assert summarize(a_ledger()).workspaces_affected == {"ws-1", "ws-3"}


def test_the_summary_renders_as_aligned_text() -> None:
    """Given the ledger, then the rendering is the exact sorted, aligned text."""
    assert summarize(a_ledger()).render() == "\n".join(
        [
            "ledger entries read: 15",
            "",
            "decisions per verdict:",
            "  decision.deferred                  1",
            "  decision.made                      2",
            "  decision.suppressed                1",
            "",
            "decisions per rule (made or deferred):",
            "  emergency.reported_critical        1",
            "  seed.followup_due                  1",
            "  seed.webhook_failed                1",
            "",
            "decisions per priority:",
            "  critical                           1",
            "  low                                1",
            "  medium                             1",
            "",
            "outcomes per action:",
            "  retry_webhook                action.dead_lettered 1, action.succeeded 1",
            "  run_provisioning             action.succeeded 1",
            "  send_followup                action.skipped 1",
            "",
            "signals rejected (dead-lettered):",
            "  invalid                            2",
            "  undecodable                        1",
            "",
            "operator switches (per shard):",
            "  operator.paused                    2",
            "  operator.resumed                   1",
            "",
            "workspaces affected: 2",
        ]
    )


def test_the_summary_does_not_depend_on_entry_order() -> None:
    """Given the same entries in reverse order (a replay reads shards in another order),
    then the rendering is identical."""
    ledger = a_ledger()

    assert summarize(reversed(ledger)).render() == summarize(ledger).render()
