"""The ledger summary the demo prints: a pure fold over ledger entries."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from agents.handlers import ActionError, Outcome, outcome_entry
from agents.policy import decide, decision_events
from projections.summary import summarize
from tables.windows import Observation, SourcePosition
from topics.codec import Rejection
from topics.commands import Command
from topics.ledger import LedgerEntry
from topics.rejections import rejection_entry
from topics.signals import SignalType

T = datetime(2024, 1, 1, tzinfo=UTC)
SOURCE = SourcePosition("signals", 0, 1)


def decided(
    signal_type: SignalType, workspace_id: str, attributes: dict[str, Any] | None = None
) -> tuple[LedgerEntry, Command]:
    observation = Observation(
        signal_id=f"sig-{workspace_id}-{signal_type.value}",
        workspace_id=workspace_id,
        signal_type=signal_type,
        occurred_at=0,
        attributes=attributes or {},
        window_start=0,
        count=1,
        source=SOURCE,
    )
    [decision] = decide(observation)
    return decision_events(decision, T)


def a_ledger() -> list[LedgerEntry]:
    """Four decisions (one critical), three outcomes (one failed), three rejections."""
    health_1, provision_1 = decided(SignalType.HEALTH_DEGRADED, "ws-1", {"health_score": 10})
    health_2, provision_2 = decided(SignalType.HEALTH_DEGRADED, "ws-2")
    webhook, retry = decided(SignalType.WEBHOOK_FAILED, "ws-1")
    followup, _ = decided(SignalType.FOLLOWUP_DUE, "ws-3")
    return [
        health_1,
        health_2,
        webhook,
        followup,
        outcome_entry(provision_1, T, Outcome(), None),
        outcome_entry(provision_2, T, None, ActionError("provisioning API refused")),
        outcome_entry(retry, T, Outcome({"status": 200}), None),
        rejection_entry(Rejection("invalid: type: bad", b"{}"), SOURCE, T),
        rejection_entry(Rejection("undecodable: not UTF-8 JSON", b"\xff"), SOURCE, T),
        rejection_entry(Rejection("invalid: x: y", b'{"workspace_id": "ws-9"}', 0), SOURCE, T),
    ]


def test_an_empty_ledger_summarises_to_zero() -> None:
    """Given no entries, then every count is zero and the rendering has empty sections."""
    summary = summarize([])

    assert (summary.entries, summary.decisions, summary.outcomes) == (0, 0, 0)
    assert summary.render() == (
        "ledger entries read: 0\n\ndecisions per rule:\n\ndecisions per priority:\n\n"
        "outcomes per action:\n\nsignals rejected (dead-lettered):\n\nworkspaces affected: 0"
    )


def test_a_ledger_is_summarised_per_rule_priority_action_and_reason() -> None:
    """Given decisions, outcomes and rejections, then each is counted in its own section."""
    summary = summarize(a_ledger())

    assert summary.entries == 10
    assert summary.decisions == 4
    assert summary.outcomes == 3
    assert summary.decisions_per_rule == Counter(
        {"seed.health_degraded": 2, "seed.webhook_failed": 1, "seed.followup_due": 1}
    )
    assert summary.decisions_per_priority == Counter(
        {"critical": 1, "high": 1, "medium": 1, "low": 1}
    )
    assert summary.outcomes_per_action == {
        "run_provisioning": Counter({"action.succeeded": 1, "action.failed": 1}),
        "retry_webhook": Counter({"action.succeeded": 1}),
    }
    assert summary.rejections_per_reason == Counter({"invalid": 2, "undecodable": 1})


def test_workspaces_affected_are_those_with_decisions() -> None:
    """Given decisions for three workspaces and a rejection naming a fourth, then three
    workspaces are affected (a refused signal decided nothing)."""
    assert summarize(a_ledger()).workspaces_affected == {"ws-1", "ws-2", "ws-3"}


def test_the_summary_renders_as_aligned_text() -> None:
    """Given the ledger, then the rendering is the exact sorted, aligned text."""
    assert summarize(a_ledger()).render() == "\n".join(
        [
            "ledger entries read: 10",
            "",
            "decisions per rule:",
            "  seed.followup_due                  1",
            "  seed.health_degraded               2",
            "  seed.webhook_failed                1",
            "",
            "decisions per priority:",
            "  critical                           1",
            "  high                               1",
            "  low                                1",
            "  medium                             1",
            "",
            "outcomes per action:",
            "  retry_webhook                action.succeeded 1",
            "  run_provisioning             action.failed 1, action.succeeded 1",
            "",
            "signals rejected (dead-lettered):",
            "  invalid                            2",
            "  undecodable                        1",
            "",
            "workspaces affected: 3",
        ]
    )


def test_the_summary_does_not_depend_on_entry_order() -> None:
    """Given the same entries in reverse order (a replay reads shards in another order),
    then the rendering is identical."""
    ledger = a_ledger()

    assert summarize(reversed(ledger)).render() == summarize(ledger).render()
