"""The read models' fold: the exact rows a command's story, a suppressed decision, approvals,
re-issues, breakers and rejected or folded signals make; per-interval counters; the keys a batch
needs loaded; and that folding in batches, each from the rows the store loads, changes nothing."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actions.reconciler import RetryableError, TerminalError
from core.codec import Rejection
from core.dead_letters import DeadLetter, reissue
from core.decide import command_of
from core.ledger_entries import (
    approval_requested_entry,
    breaker_entry,
    dead_lettered_entry,
    decision_entry,
    deferred_entry,
    failed_entry,
    folded_entry,
    rejection_entry,
    skipped_entry,
    started_entry,
    succeeded_entry,
    verdict_entry,
)
from core.policy import Decision, DecisionKind, Inputs, Mode
from core.projection_fold import (
    ActionRow,
    AttemptRow,
    BreakerRow,
    Fold,
    IntervalWorkspaceRow,
    Keys,
    Rows,
    WorkspaceRow,
    interval_of,
    iso,
    keys_of,
)
from core.windows import SourcePosition
from projections.entries import DecodedEntry, decode_entry
from tests.support.factories import ledger_entry
from topics.commands import Action, Command, Priority
from topics.ledger import LedgerEntry, LedgerKind

T = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
E0 = int(T.timestamp())
I0, I1, I2 = "2024-01-01T12:00:00Z", "2024-01-01T12:01:00Z", "2024-01-01T12:02:00Z"
MADE, DEFERRED, SUPPRESSED = DecisionKind.MADE, DecisionKind.DEFERRED, DecisionKind.SUPPRESSED
ERROR_503 = "control API answered 503"


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def z(seconds: int) -> str:
    """How the tables store T + seconds (seconds < 3600)."""
    minutes, rest = divmod(seconds, 60)
    return f"2024-01-01T12:{minutes:02d}:{rest:02d}.000000Z"


def decision(
    n: int,
    kind: DecisionKind = MADE,
    workspace: str = "ws-1",
    lane: Priority = Priority.HIGH,
    action: Action = Action.RETRY_WEBHOOK,
    health: tuple[Any, str] | None = (70, "degraded"),
) -> Decision:
    """Decision dec-n on signal sig-n, issuing cmd-n unless suppressed; the policy saw the
    workspace's health as `health` (score, status)."""
    facts: dict[str, Any] = {"signal.type": "webhook_failed", "minute.webhook_failed": 1}
    if health is not None:
        facts |= {"health.score": health[0], "health.status": health[1]}
    return Decision(
        decision_id=f"dec-{n}",
        kind=kind,
        rule_id="webhook-retry",
        policy_version="seed-1",
        workspace_id=workspace,
        action=action,
        lane=lane,
        priority=6,
        command_id=None if kind is SUPPRESSED else f"cmd-{n}",
        not_before=E0 + 60 if kind is DEFERRED else None,
        reason="workspace daily budget spent" if kind is SUPPRESSED else None,
        dry_run=False,
        inputs=Inputs(
            workspace_id=workspace,
            signal_id=f"sig-{n}",
            signal_type="webhook_failed",
            signal_at=E0,
            source=SourcePosition("signals", 0, n),
            at=E0,
            facts=facts,
            issued={},
            held={},
            day_used=0,
            quota_share=1,
            quota_used={},
            mode=Mode(),
        ),
    )


def decided(n: int, seconds: float, kind: DecisionKind = MADE, **kw: Any) -> LedgerEntry:
    """The ledger entry of decision dec-n, recorded `seconds` after T."""
    return decision_entry(decision(n, kind, **kw), at(seconds))


def command(n: int, attempt: int = 1, **kw: Any) -> Command:
    """Attempt `attempt` of the command decision dec-n issued."""
    issued = command_of(decision(n, **kw))
    assert issued is not None
    return issued.model_copy(update={"attempt": attempt})


def as_read(entries: Iterable[LedgerEntry]) -> list[DecodedEntry]:
    """The entries as the store hands them to the fold: their records, decoded fast."""
    return [decode_entry(entry.model_dump_json().encode()) for entry in entries]


def fold(entries: Iterable[LedgerEntry], rows: Rows | None = None) -> Rows:
    """The rows after folding entries, in order, at 60-second intervals."""
    folding = Fold(rows if rows is not None else Rows(), 60)
    for entry in as_read(entries):
        folding.add(entry)
    return folding.rows


def lifecycle(*steps: tuple[int, str, int | None]) -> str:
    """A command's story as action_history stores it: compact JSON [at, kind, attempt]."""
    return json.dumps([[z(s), kind, attempt] for s, kind, attempt in steps], separators=(",", ":"))


def retried_story() -> list[LedgerEntry]:
    """ws-1 decides to retry a webhook (12:00:10); attempt 1 starts on w-1 and fails with a
    retry at 12:01:05; attempt 2 starts there on w-2 and succeeds at 12:01:10."""
    return [
        decided(1, 10),
        started_entry(command(1, 1), at(20), at(80), "w-1"),
        failed_entry(command(1, 1), at(30), RetryableError(ERROR_503), at(65)),
        started_entry(command(1, 2), at(65), at(125), "w-2"),
        succeeded_entry(command(1, 2), at(70), {"status": 200}),
    ]


# Time


@pytest.mark.parametrize(
    ("moment", "seconds", "start"),
    [
        (T, 60, I0),
        (at(59.999), 60, I0),
        (at(60), 60, I1),
        (at(179), 60, I1.replace("01:00", "02:00")),
        (at(299), 300, I0),
        (at(300), 300, "2024-01-01T12:05:00Z"),
        # The same instant written in another zone falls in the same UTC interval.
        (datetime(2024, 1, 1, 14, 0, 30, tzinfo=timezone(timedelta(hours=2))), 60, I0),
    ],
)
def test_interval_of_floors_to_the_interval(moment: datetime, seconds: int, start: str) -> None:
    """Given a moment, then its interval starts at the moment floored to the interval, in UTC."""
    assert interval_of(moment, seconds) == start


def test_iso_is_utc_with_microseconds() -> None:
    """Given a moment in another zone, then the table form is its UTC time, microseconds, Z."""
    moment = datetime(2024, 1, 1, 14, 0, 5, 42, tzinfo=timezone(timedelta(hours=2)))

    assert iso(moment) == "2024-01-01T12:00:05.000042Z"


# A command's story


def test_a_retried_command_that_succeeds_has_its_whole_story_in_action_history() -> None:
    """Given the retried story, then the command's row says succeeded after 2 attempts, when
    it was decided, first started and finished, the last error, and every step in order."""
    rows = fold(retried_story())

    assert rows.actions == {
        "cmd-1": ActionRow(
            command_id="cmd-1",
            workspace_id="ws-1",
            action="retry_webhook",
            priority="high",
            rule_id="webhook-retry",
            decision_id="dec-1",
            correlation_id="sig-1",
            policy_version="seed-1",
            status="succeeded",
            attempts=2,
            decided_at=z(10),
            first_started_at=z(20),
            finished_at=z(70),
            last_error_class="RetryableError",
            last_error=ERROR_503,
            reissued_from=None,
            lifecycle=(
                '[["2024-01-01T12:00:10.000000Z","decision.made",null],'
                '["2024-01-01T12:00:20.000000Z","action.started",1],'
                '["2024-01-01T12:00:30.000000Z","action.failed",1],'
                '["2024-01-01T12:01:05.000000Z","action.started",2],'
                '["2024-01-01T12:01:10.000000Z","action.succeeded",2]]'
            ),
        )
    }


def test_a_retried_command_has_one_attempt_row_per_attempt() -> None:
    """Given the retried story, then attempt 1 ran on w-1 and failed with its error, and
    attempt 2 ran on w-2 and succeeded."""
    rows = fold(retried_story())

    assert rows.attempts == {
        ("cmd-1", 1): AttemptRow(
            "cmd-1", 1, "w-1", z(20), z(30), "failed", "RetryableError", ERROR_503
        ),
        ("cmd-1", 2): AttemptRow("cmd-1", 2, "w-2", z(65), z(70), "succeeded", None, None),
    }


def test_a_retried_command_leaves_its_workspace_with_nothing_open() -> None:
    """Given the retried story, then ws-1 shows the last decision, the health the policy saw,
    one action succeeded, no command open or parked, updated at the last entry."""
    rows = fold(retried_story())

    assert rows.workspaces == {
        "ws-1": WorkspaceRow(
            workspace_id="ws-1",
            health_score=70,
            health_status="degraded",
            health_at=z(10),
            last_decision_id="dec-1",
            last_decision_kind="decision.made",
            last_rule_id="webhook-retry",
            last_action="retry_webhook",
            last_priority="high",
            last_decided_at=z(10),
            open_commands=0,
            parked_commands=0,
            actions_succeeded=1,
            actions_dead_lettered=0,
            updated_at=z(70),
        )
    }


def test_a_retried_command_counts_in_the_interval_of_each_entry() -> None:
    """Given the retried story across 12:00 and 12:01, then each counter lands in the interval
    of its entry: the decision, the affected workspace, the first start and the failure (an
    error) at 12:00; the second start and the success at 12:01. The lane counts the decision
    at 12:00 and the outcome at 12:01; ws-1 was affected at 12:00, seen degraded."""
    rows = fold(retried_story())

    assert rows.metrics == Counter(
        {
            (I0, "decisions_made"): 1,
            (I0, "workspaces_affected"): 1,
            (I0, "actions_started"): 1,
            (I0, "actions_failed"): 1,
            (I0, "errors"): 1,
            (I1, "actions_started"): 1,
            (I1, "actions_succeeded"): 1,
        }
    )
    assert rows.priorities == {(I0, "high"): [1, 0], (I1, "high"): [0, 1]}
    assert rows.intervals == {(I0, "ws-1"): IntervalWorkspaceRow(I0, "ws-1", 1, "degraded")}
    assert rows.breakers == {}


def test_a_commands_status_and_its_workspaces_open_count_after_each_entry() -> None:
    """Given the retried story folded entry by entry, then the command goes decided, running,
    retrying, running, succeeded, and stays open (1) until it succeeds (0)."""
    rows = Rows()
    seen = []

    for entry in retried_story():
        fold([entry], rows)
        action = rows.actions["cmd-1"]
        seen.append((action.status, action.attempts, rows.workspaces["ws-1"].open_commands))

    assert seen == [
        ("decided", 0, 1),
        ("running", 1, 1),
        ("retrying", 1, 1),
        ("running", 2, 1),
        ("succeeded", 2, 0),
    ]


def test_a_command_that_runs_out_of_attempts_is_dead_lettered() -> None:
    """Given attempt 1 failing with no retry left, then the command stays running until the
    action.dead_lettered that follows; then it is dead-lettered, closed, counted per workspace,
    interval and lane, and the failure is its last error."""
    error = TerminalError("webhook URL answered 410 Gone")
    entries = [
        decided(1, 10, lane=Priority.MEDIUM),
        started_entry(command(1, lane=Priority.MEDIUM), at(20), at(80), "w-1"),
        failed_entry(command(1, lane=Priority.MEDIUM), at(30), error, None),
    ]

    rows = fold(entries)
    assert rows.actions["cmd-1"].status == "running"

    fold([dead_lettered_entry(command(1, lane=Priority.MEDIUM), at(31), error)], rows)

    action = rows.actions["cmd-1"]
    assert (action.status, action.attempts, action.finished_at) == ("dead_lettered", 1, z(31))
    assert (action.last_error_class, action.last_error) == ("TerminalError", str(error))
    workspace = rows.workspaces["ws-1"]
    assert (workspace.open_commands, workspace.actions_dead_lettered) == (0, 1)
    assert workspace.actions_succeeded == 0
    assert rows.attempts[("cmd-1", 1)] == AttemptRow(
        "cmd-1", 1, "w-1", z(20), z(30), "failed", "TerminalError", str(error)
    )
    assert rows.metrics[(I0, "actions_dead_lettered")] == 1
    assert rows.metrics[(I0, "errors")] == 1
    assert rows.priorities == {(I0, "medium"): [1, 1]}


def test_a_deferred_decision_issues_a_command_that_waits() -> None:
    """Given a decision deferred to the next interval, then its command is open as deferred,
    it counts as deferred (not made) and its workspace as affected."""
    rows = fold([decided(1, 10, DEFERRED)])

    action = rows.actions["cmd-1"]
    assert (action.status, action.decision_id, action.decided_at) == ("deferred", "dec-1", z(10))
    assert rows.workspaces["ws-1"].open_commands == 1
    assert rows.workspaces["ws-1"].last_decision_kind == "decision.deferred"
    assert rows.metrics == Counter({(I0, "decisions_deferred"): 1, (I0, "workspaces_affected"): 1})
    assert rows.priorities == {(I0, "high"): [1, 0]}


def test_a_command_held_by_an_open_breaker_stays_open() -> None:
    """Given a decided command deferred by its provider's open breaker, then it is open as
    breaker_deferred and no attempt was used or counted."""
    entries = [decided(1, 10), deferred_entry(command(1), at(20), "control_api", at(50))]

    rows = fold(entries)

    action = rows.actions["cmd-1"]
    assert (action.status, action.attempts) == ("breaker_deferred", 0)
    assert rows.workspaces["ws-1"].open_commands == 1
    assert rows.attempts == {}
    assert rows.metrics[(I0, "actions_started")] == 0


# Suppressed decisions


def test_a_suppressed_decision_updates_the_last_decision_and_issues_nothing() -> None:
    """Given a made decision and then a suppressed one for ws-1, then ws-1's last decision
    is the suppressed one (and its health, seen healthy), no command is added for it, and it
    counts as suppressed, while the workspace is affected once, by the made decision."""
    entries = [
        decided(1, 10),
        decided(2, 20, SUPPRESSED, action=Action.FORCE_PUBLISH, health=(95, "healthy")),
    ]

    rows = fold(entries)

    workspace = rows.workspaces["ws-1"]
    assert (
        workspace.last_decision_id,
        workspace.last_decision_kind,
        workspace.last_action,
        workspace.last_decided_at,
    ) == ("dec-2", "decision.suppressed", "force_publish", z(20))
    assert (workspace.health_score, workspace.health_status, workspace.health_at) == (
        95,
        "healthy",
        z(20),
    )
    assert list(rows.actions) == ["cmd-1"]
    assert workspace.open_commands == 1
    assert rows.metrics == Counter(
        {
            (I0, "decisions_made"): 1,
            (I0, "decisions_suppressed"): 1,
            (I0, "workspaces_affected"): 1,
        }
    )
    assert rows.priorities == {(I0, "high"): [1, 0]}
    assert rows.intervals == {(I0, "ws-1"): IntervalWorkspaceRow(I0, "ws-1", 1, "healthy")}


def test_a_workspace_only_suppressed_is_seen_but_not_affected() -> None:
    """Given only a suppressed decision for ws-2, then ws-2 is seen in the interval with its
    health but not affected, and nothing counts but the suppressed decision."""
    rows = fold([decided(1, 10, SUPPRESSED, workspace="ws-2", health=(40, "critical"))])

    assert rows.actions == {}
    assert rows.workspaces["ws-2"].open_commands == 0
    assert rows.intervals == {(I0, "ws-2"): IntervalWorkspaceRow(I0, "ws-2", 0, "critical")}
    assert rows.metrics == Counter({(I0, "decisions_suppressed"): 1})
    assert rows.priorities == {}


def test_a_decision_without_a_health_score_leaves_the_health_as_it_was() -> None:
    """Given a decision that saw ws-1's health, then one that saw none, then ws-1 keeps the
    first health; the second interval's row has no health."""
    rows = fold([decided(1, 10), decided(2, 70, health=None)])

    workspace = rows.workspaces["ws-1"]
    assert (workspace.health_score, workspace.health_status, workspace.health_at) == (
        70,
        "degraded",
        z(10),
    )
    assert rows.intervals[(I1, "ws-1")] == IntervalWorkspaceRow(I1, "ws-1", 1, None)


def test_a_workspace_affected_twice_in_an_interval_counts_once() -> None:
    """Given two commands decided for ws-1 in 12:00 and one in 12:01, then ws-1 counts as
    affected once per interval, while each decision counts."""
    rows = fold([decided(1, 10), decided(2, 20), decided(3, 61)])

    assert rows.metrics[(I0, "workspaces_affected")] == 1
    assert rows.metrics[(I1, "workspaces_affected")] == 1
    assert rows.metrics[(I0, "decisions_made")] == 2
    assert rows.workspaces["ws-1"].open_commands == 3
    assert rows.priorities == {(I0, "high"): [2, 0], (I1, "high"): [1, 0]}


# Approvals


def test_an_approval_parks_the_command_until_approved() -> None:
    """Given a credit command waiting for approval, then ws-1 has it parked (and open); once
    approved, it is no longer parked but still open, until it succeeds."""
    credit: dict[str, Any] = {"action": Action.ISSUE_CREDIT}
    rows = fold(
        [
            decided(1, 10, **credit),
            approval_requested_entry(command(1, **credit), at(11), frozenset({"finance"}), "x"),
        ]
    )
    workspace = rows.workspaces["ws-1"]
    assert (rows.actions["cmd-1"].status, workspace.open_commands, workspace.parked_commands) == (
        "awaiting_approval",
        1,
        1,
    )

    fold([verdict_entry(command(1, **credit), at(40), True, "alice", "ok")], rows)
    assert (rows.actions["cmd-1"].status, workspace.open_commands, workspace.parked_commands) == (
        "approved",
        1,
        0,
    )

    fold(
        [
            started_entry(command(1, **credit), at(41), at(101), "w-1"),
            succeeded_entry(command(1, **credit), at(42), {}),
        ],
        rows,
    )
    assert (rows.actions["cmd-1"].status, workspace.open_commands, workspace.parked_commands) == (
        "succeeded",
        0,
        0,
    )


def test_a_rejected_command_is_closed_without_an_attempt() -> None:
    """Given a parked credit command rejected by an operator, then it is rejected, finished,
    with no attempt; nothing is parked or open; the lane counts one outcome, and no run metric
    counts a success or a dead letter."""
    credit: dict[str, Any] = {"action": Action.ISSUE_CREDIT, "lane": Priority.CRITICAL}
    entries = [
        decided(1, 10, **credit),
        approval_requested_entry(command(1, **credit), at(11), frozenset({"finance"}), "x"),
        verdict_entry(command(1, **credit), at(70), False, "bob", "not owed"),
    ]

    rows = fold(entries)

    action = rows.actions["cmd-1"]
    assert (action.status, action.attempts, action.finished_at) == ("rejected", 0, z(70))
    assert json.loads(action.lifecycle) == json.loads(
        lifecycle(
            (10, "decision.made", None),
            (11, "action.approval_requested", 1),
            (70, "action.rejected", 1),
        )
    )
    workspace = rows.workspaces["ws-1"]
    assert (workspace.open_commands, workspace.parked_commands) == (0, 0)
    assert (workspace.actions_succeeded, workspace.actions_dead_lettered) == (0, 0)
    assert rows.priorities == {(I0, "critical"): [1, 0], (I1, "critical"): [0, 1]}
    assert rows.metrics == Counter({(I0, "decisions_made"): 1, (I0, "workspaces_affected"): 1})


# One terminal outcome per command


def test_a_second_terminal_entry_for_a_command_is_not_counted_again() -> None:
    """Given a command that succeeded, when a dead-lettered and then a skipped entry follow
    for it, then it stays succeeded as first finished, its story is unchanged, and neither
    the workspace, the run metrics nor the lane count anything more."""
    rows = fold(retried_story())
    before = copy.deepcopy(rows)

    fold(
        [
            dead_lettered_entry(command(1, 2), at(80), TerminalError("late")),
            skipped_entry(command(1, 2), at(81), "dry_run"),
        ],
        rows,
    )

    assert rows.actions == before.actions
    assert rows.attempts == before.attempts
    assert rows.metrics == before.metrics
    assert rows.priorities == before.priorities
    workspace = rows.workspaces["ws-1"]
    assert (workspace.actions_succeeded, workspace.actions_dead_lettered) == (1, 0)
    assert workspace.open_commands == 0
    # Only the workspace's last-seen time moves.
    assert workspace.updated_at == z(81)


def test_a_skipped_command_is_closed_without_counting_an_attempt() -> None:
    """Given a dry-run command skipped, then it is skipped, closed, with no attempt used, and
    the lane counts its outcome."""
    rows = fold([decided(1, 10), skipped_entry(command(1), at(11), "dry_run")])

    action = rows.actions["cmd-1"]
    assert (action.status, action.attempts, action.finished_at) == ("skipped", 0, z(11))
    assert rows.workspaces["ws-1"].open_commands == 0
    assert rows.priorities == {(I0, "high"): [1, 1]}


# Re-issued commands


def test_a_reissued_command_gets_a_row_of_its_own() -> None:
    """Given cmd-1 dead-lettered and re-issued by an operator, then the new command has a row
    that names cmd-1 as its origin, decided when it was re-issued, open, with no decision."""
    dead = DeadLetter(
        partition=0,
        offset=7,
        command=command(1, 3),
        error_class="RetryableError",
        reason=ERROR_503,
        dead_lettered_at=at(30),
        attempts=3,
    )
    again = reissue(dead, at(100), "alice")

    rows = fold([again.entry])

    new_id = again.command.command_id
    assert rows.actions == {
        new_id: ActionRow(
            command_id=new_id,
            workspace_id="ws-1",
            action="retry_webhook",
            priority="high",
            rule_id="webhook-retry",
            decision_id=None,
            correlation_id="sig-1",
            policy_version="seed-1",
            status="decided",
            attempts=0,
            decided_at=z(100),
            reissued_from="cmd-1",
            lifecycle=lifecycle((100, "action.reissued", None)),
        )
    }
    assert rows.workspaces["ws-1"].open_commands == 1
    assert rows.metrics == Counter()


# Other entries


def test_breaker_entries_set_the_state_per_worker_and_provider() -> None:
    """Given w-1's control_api breaker opening then half-opening, w-1's billing breaker
    opening, and w-2's control_api breaker closing, then there is one row per worker and
    provider with its latest state; no workspace or counter is touched."""
    entries = [
        breaker_entry("control_api", "open", 5, "w-1", at(10)),
        breaker_entry("billing", "open", 3, "w-1", at(20)),
        breaker_entry("control_api", "closed", 0, "w-2", at(25)),
        breaker_entry("control_api", "half_open", 5, "w-1", at(40)),
    ]

    rows = fold(entries)

    assert rows.breakers == {
        ("w-1", "control_api"): BreakerRow("w-1", "control_api", "half_opened", 5, z(40)),
        ("w-1", "billing"): BreakerRow("w-1", "billing", "opened", 3, z(20)),
        ("w-2", "control_api"): BreakerRow("w-2", "control_api", "closed", 0, z(25)),
    }
    assert rows.workspaces == {}
    assert rows.metrics == Counter()


def test_a_rejected_signal_counts_as_rejected_and_as_an_error() -> None:
    """Given two signals rejected in 12:00 and one in 12:01, then each interval counts its
    rejections, each also an error."""
    source = SourcePosition("signals", 0, 99)
    entries = [
        rejection_entry(Rejection("undecodable: not UTF-8 JSON", b"\xff"), source, at(5)),
        rejection_entry(Rejection("invalid: no type", b"{}", 0), source, at(6)),
        rejection_entry(Rejection("invalid: no type", b"{}", 1), source, at(65)),
    ]

    rows = fold(entries)

    assert rows.metrics == Counter(
        {
            (I0, "signals_rejected"): 2,
            (I0, "errors"): 2,
            (I1, "signals_rejected"): 1,
            (I1, "errors"): 1,
        }
    )
    assert rows.workspaces == {}


def test_folded_signals_add_their_count_to_signals_processed() -> None:
    """Given records of 25 and 3 signals folded in 12:00 and one of 7 in 12:02, then signals
    processed is 28 at 12:00 and 7 at 12:02."""
    entries = [
        folded_entry(25, SourcePosition("signals", 0, 1), at(1)),
        folded_entry(3, SourcePosition("signals", 1, 1), at(59)),
        folded_entry(7, SourcePosition("signals", 0, 2), at(120)),
    ]

    rows = fold(entries)

    assert rows.metrics == Counter({(I0, "signals_processed"): 28, (I2, "signals_processed"): 7})
    assert rows.workspaces == {}


def test_an_operator_entry_only_moves_its_workspaces_last_seen_time() -> None:
    """Given an entry of a kind the fold has no handler for (an operator pause), then it only
    marks its workspace updated."""
    switch = {
        "switch": "pause",
        "shard": 0,
        "by": "alice",
        "reason": None,
        "requested_at": at(5),
        "mode": {"paused": True, "dry_run": False},
    }
    paused = ledger_entry(
        LedgerKind.OPERATOR_PAUSED,
        switch,
        entry_id="op-1",
        correlation_id="op-1",
        causation_id="op-1",
        recorded_at=at(5),
    )

    rows = fold([paused])

    assert rows.workspaces == {"ws-1": WorkspaceRow("ws-1", updated_at=z(5))}
    assert (rows.actions, rows.metrics, rows.intervals) == ({}, Counter(), {})


# What a batch needs loaded


def test_keys_of_names_the_workspaces_commands_attempts_and_intervals_touched() -> None:
    """Given a batch with a decision and attempt 2 of its command for ws-1, a suppressed
    decision for ws-2 in the next interval, and entries naming no workspace or command, then
    the keys are exactly those workspaces, commands, attempts and (interval, workspace)."""
    entries = [
        decided(1, 10),
        started_entry(command(1, 2), at(20), at(80), "w-1"),
        decided(2, 70, SUPPRESSED, workspace="ws-2"),
        breaker_entry("control_api", "open", 5, "w-1", at(30)),
        folded_entry(3, SourcePosition("signals", 0, 1), at(31)),
        rejection_entry(Rejection("invalid: x", b"{}"), SourcePosition("signals", 0, 2), at(32)),
    ]

    keys = keys_of(as_read(entries), 60)

    assert keys == Keys(
        workspaces=frozenset({"ws-1", "ws-2"}),
        actions=frozenset({"cmd-1"}),
        attempts=frozenset({("cmd-1", 2)}),
        intervals=frozenset({(I0, "ws-1"), (I1, "ws-2")}),
    )


def test_keys_of_nothing_is_empty() -> None:
    """Given no entries, then nothing needs loading."""
    assert keys_of([], 60) == Keys(frozenset(), frozenset(), frozenset(), frozenset())


# Batches: folding from the rows the store loads changes nothing


@dataclass
class Store:
    """The projections' tables as the store keeps them: rows upserted, counters added."""

    workspaces: dict[str, WorkspaceRow] = field(default_factory=dict)
    actions: dict[str, ActionRow] = field(default_factory=dict)
    attempts: dict[tuple[str, int], AttemptRow] = field(default_factory=dict)
    breakers: dict[tuple[str, str], BreakerRow] = field(default_factory=dict)
    intervals: dict[tuple[str, str], IntervalWorkspaceRow] = field(default_factory=dict)
    metrics: Counter[tuple[str, str]] = field(default_factory=Counter)
    priorities: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def load(self, entries: list[LedgerEntry]) -> Rows:
        """Copies of only the rows keys_of names (what the store selects), no counters."""
        keys = keys_of(as_read(entries), 60)

        def pick(table: dict[Any, Any], wanted: Iterable[Any]) -> dict[Any, Any]:
            return {k: copy.deepcopy(table[k]) for k in wanted if k in table}

        return Rows(
            workspaces=pick(self.workspaces, keys.workspaces),
            actions=pick(self.actions, keys.actions),
            attempts=pick(self.attempts, keys.attempts),
            intervals=pick(self.intervals, keys.intervals),
        )

    def write(self, rows: Rows) -> None:
        for table in ("workspaces", "actions", "attempts", "breakers", "intervals"):
            getattr(self, table).update(copy.deepcopy(getattr(rows, table)))
        self.metrics.update(rows.metrics)
        for key, (decisions, actions) in rows.priorities.items():
            counts = self.priorities.setdefault(key, [0, 0])
            counts[0] += decisions
            counts[1] += actions


def as_store(rows: Rows) -> Store:
    return Store(
        rows.workspaces,
        rows.actions,
        rows.attempts,
        rows.breakers,
        rows.intervals,
        rows.metrics,
        rows.priorities,
    )


Step = Callable[[datetime], LedgerEntry]


def started(attempt: Command) -> Step:
    return lambda t: started_entry(attempt, t, t, f"w-{attempt.attempt}")


def failed_to_retry(attempt: Command) -> Step:
    return lambda t: failed_entry(attempt, t, RetryableError(ERROR_503), t)


def command_story(n: int, workspace: str, ending: str, retries: int) -> list[Step]:
    """The entries of one command's life, each awaiting its recorded time."""
    lane = [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL][n % 4]
    kw: dict[str, Any] = {"workspace": workspace, "lane": lane}
    if ending == "suppressed":
        return [lambda t: decision_entry(decision(n, SUPPRESSED, **kw), t)]
    kind = DEFERRED if n % 3 == 0 else MADE
    steps: list[Step] = [lambda t: decision_entry(decision(n, kind, **kw), t)]
    if ending in {"approved", "rejected"}:
        tags = frozenset({"finance"})
        steps.append(lambda t: approval_requested_entry(command(n, **kw), t, tags, "x"))
        steps.append(lambda t: verdict_entry(command(n, **kw), t, ending == "approved", "a", "r"))
        if ending == "rejected":
            return steps
    if ending == "skipped":
        return [*steps, lambda t: skipped_entry(command(n, **kw), t, "dry_run")]
    if ending == "breaker":
        steps.append(lambda t: deferred_entry(command(n, **kw), t, "control_api", t))
    for attempt in range(1, retries + 2):
        steps.append(started(command(n, attempt, **kw)))
        if attempt <= retries:
            steps.append(failed_to_retry(command(n, attempt, **kw)))
    final = command(n, retries + 1, **kw)
    if ending == "dead_lettered":
        error = TerminalError("gone")
        steps.append(lambda t: failed_entry(final, t, error, None))
        steps.append(lambda t: dead_lettered_entry(final, t, error))
    elif ending != "open":
        steps.append(lambda t: succeeded_entry(final, t, {}))
        if ending == "twice":
            steps.append(lambda t: skipped_entry(final, t, "dry_run"))
    return steps


ENDINGS = (
    "succeeded",
    "dead_lettered",
    "open",
    "twice",
    "suppressed",
    "approved",
    "rejected",
    "skipped",
    "breaker",
)


@st.composite
def ledgers(draw: st.DrawFn) -> list[LedgerEntry]:
    """A few commands' stories over a few workspaces, interleaved, with breaker, folded and
    rejected entries among them, recorded over a few minutes."""
    stories: list[list[Step]] = []
    for n in range(1, draw(st.integers(1, 6)) + 1):
        workspace = draw(st.sampled_from(["ws-1", "ws-2", "ws-3"]))
        ending = draw(st.sampled_from(ENDINGS))
        stories.append(command_story(n, workspace, ending, draw(st.integers(0, 2))))
    others: list[Step] = [
        lambda t: breaker_entry("control_api", "open", 5, "w-1", t),
        lambda t: folded_entry(4, SourcePosition("signals", 0, int(t.timestamp())), t),
        lambda t: rejection_entry(
            Rejection("invalid: x", b"{}"), SourcePosition("signals", 0, int(t.timestamp())), t
        ),
    ]
    stories.extend([step] for step in draw(st.lists(st.sampled_from(others), max_size=3)))
    entries = []
    moment = T
    while any(stories):
        story = draw(st.sampled_from([s for s in stories if s]))
        moment += timedelta(seconds=draw(st.integers(0, 50)))
        entries.append(story.pop(0)(moment))
    return entries


@given(entries=ledgers(), data=st.data())
@settings(max_examples=200, deadline=None)
def test_folding_in_batches_from_loaded_rows_equals_folding_at_once(
    entries: list[LedgerEntry], data: st.DataObject
) -> None:
    """Given any interleaved story, when it is cut into batches and each is folded into only
    the rows keys_of names, loaded from what the previous batches wrote (counters added), then
    the tables are the same as folding it all at once."""
    cuts = sorted(data.draw(st.lists(st.integers(0, len(entries)), max_size=3)))
    store = Store()

    for start, end in zip([0, *cuts], [*cuts, len(entries)], strict=True):
        batch = entries[start:end]
        store.write(fold(batch, store.load(batch)))

    assert store == as_store(fold(entries))
