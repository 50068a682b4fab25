"""The ledger entries of a command's life: their exact kind, ids, causation and redacted
payload; which ids repeat (a rewrite is the same entry) and which differ per attempt; and how
errors are carried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from actions.reconciler import ActionError, NotConfiguredError, RetryableError, TerminalError
from core.ledger_entries import (
    MAX_REASON_CHARS,
    approval_requested_entry,
    breaker_entry,
    dead_lettered_entry,
    deferred_entry,
    error_of,
    failed_entry,
    skipped_entry,
    started_entry,
    succeeded_entry,
    verdict_entry,
)
from topics.commands import Action, Command, Priority
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind

T = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
LATER = T + timedelta(minutes=7)


def command(attempt: int = 1, **overrides: Any) -> Command:
    """Attempt `attempt` of a medium-lane webhook retry for ws-1."""
    fields: dict[str, Any] = {
        "command_id": "cmd-1",
        "decision_id": "dec-1",
        "workspace_id": "ws-1",
        "action": Action.RETRY_WEBHOOK,
        "priority": Priority.MEDIUM,
        "rule_id": "webhook-retry",
        "policy_version": "seed-1",
        "signal_ids": ("sig-1",),
        "correlation_id": "corr-1",
        "attempt": attempt,
    }
    fields.update(overrides)
    return Command(**fields)


def about(attempt: int = 1, **details: Any) -> dict[str, Any]:
    """The payload every command entry carries, then its own details."""
    return {
        "command_id": "cmd-1",
        "action": "retry_webhook",
        "priority": "medium",
        "rule_id": "webhook-retry",
        "attempt": attempt,
        **details,
    }


def entry(kind: LedgerKind, entry_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A command entry of ws-1, caused by dec-1, in corr-1, under policy seed-1, at T, as its
    record's JSON holds it."""
    return {
        "schema_version": 3,
        "entry_id": entry_id,
        "kind": kind.value,
        "workspace_id": "ws-1",
        "correlation_id": "corr-1",
        "causation_id": "dec-1",
        "policy_version": "seed-1",
        "recorded_at": "2024-01-01T12:00:00Z",
        "payload": payload,
        "prev_hash": None,
        "hash": None,
    }


def written(got: LedgerEntry) -> dict[str, Any]:
    """An entry as its record's JSON holds it."""
    return dict(orjson.loads(got.model_dump_json()))


def test_started_entry() -> None:
    """Given attempt 2 leased until T + 60 s on worker w-1, then action.started carries the
    lease's end and the worker, and an id per command, kind and attempt."""
    got = started_entry(command(2), T, T + timedelta(seconds=60), "w-1")

    assert written(got) == entry(
        LedgerKind.ACTION_STARTED,
        stable_id("out", "cmd-1", "action.started", 2),
        about(2, lease_until="2024-01-01T12:01:00+00:00", worker="w-1"),
    )


def test_entry_ids_are_pinned() -> None:
    """Given the id scheme readers de-duplicate on, then a started entry's id is this exact
    value: a change here makes every rewritten entry a new one."""
    got = started_entry(command(1), T, T, "w-1")

    assert got.entry_id == "out-eb56fe4d42b3c1b774cd9cb33e1b65de"


def test_succeeded_entry() -> None:
    """Given the handler's redacted detail, then action.succeeded carries it as is."""
    got = succeeded_entry(command(3), T, {"status": 200, "deliveries": 2})

    assert written(got) == entry(
        LedgerKind.ACTION_SUCCEEDED,
        stable_id("out", "cmd-1", "action.succeeded"),
        about(3, detail={"status": 200, "deliveries": 2}),
    )


def test_failed_entry_with_a_retry_scheduled() -> None:
    """Given attempt 1 failing retryably with a retry at T + 2 s, then action.failed carries
    the error and the ISO time of the next attempt."""
    error = RetryableError("control API answered 503", provider="control_api", retry_after=5.0)

    got = failed_entry(command(1), T, error, T + timedelta(seconds=2))

    assert written(got) == entry(
        LedgerKind.ACTION_FAILED,
        stable_id("out", "cmd-1", "action.failed", 1),
        about(
            1,
            error={
                "class": "RetryableError",
                "reason": "control API answered 503",
                "retryable": True,
            },
            retry_at="2024-01-01T12:00:02+00:00",
        ),
    )


def test_failed_entry_with_no_retry_left() -> None:
    """Given the last attempt failing, then action.failed says retry_at None."""
    got = failed_entry(command(5), T, RetryableError("timeout"), None)

    assert got.payload.retry_at is None
    assert got.entry_id == stable_id("out", "cmd-1", "action.failed", 5)


def test_dead_lettered_entry() -> None:
    """Given attempt 4 ending in a terminal error, then action.dead_lettered carries the error
    and the attempts used."""
    got = dead_lettered_entry(command(4), T, TerminalError("webhook URL answered 410 Gone"))

    assert written(got) == entry(
        LedgerKind.ACTION_DEAD_LETTERED,
        stable_id("out", "cmd-1", "action.dead_lettered"),
        about(
            4,
            error={
                "class": "TerminalError",
                "reason": "webhook URL answered 410 Gone",
                "retryable": False,
            },
            attempts=4,
        ),
    )


def test_deferred_entry() -> None:
    """Given the control API's breaker open until T + 30 s, then action.deferred names the
    provider and the time, and its id includes the attempt and that time."""
    until = T + timedelta(seconds=30)

    got = deferred_entry(command(2), T, "control_api", until)

    assert written(got) == entry(
        LedgerKind.ACTION_DEFERRED,
        stable_id("out", "cmd-1", "action.deferred", 2, "2024-01-01T12:00:30+00:00"),
        about(
            2,
            reason="breaker_open",
            provider="control_api",
            until="2024-01-01T12:00:30+00:00",
        ),
    )


def test_skipped_entry_says_what_it_would_have_done() -> None:
    """Given a dry run, then action.skipped carries the reason and, unless told, a plain
    sentence of what would have been done."""
    got = skipped_entry(command(), T, "dry_run")

    assert written(got) == entry(
        LedgerKind.ACTION_SKIPPED,
        stable_id("out", "cmd-1", "action.skipped"),
        about(reason="dry_run", would="retry_webhook for workspace ws-1"),
    )
    told = skipped_entry(command(), T, "dry_run", "POST /workspaces/ws-1/webhooks/retry")
    assert told.payload.would == "POST /workspaces/ws-1/webhooks/retry"


def test_approval_requested_entry_lists_the_tags_sorted() -> None:
    """Given a command tagged finance and compliance, then action.approval_requested lists
    the tags in order and what would be done."""
    got = approval_requested_entry(
        command(action=Action.ISSUE_CREDIT),
        T,
        frozenset({"finance", "compliance"}),
        "credit 10 EUR to ws-1",
    )

    assert written(got) == entry(
        LedgerKind.ACTION_APPROVAL_REQUESTED,
        stable_id("out", "cmd-1", "action.approval_requested"),
        {
            **about(tags=["compliance", "finance"], would="credit 10 EUR to ws-1"),
            "action": "issue_credit",
        },
    )


@pytest.mark.parametrize(
    ("approved", "kind"),
    [(True, LedgerKind.ACTION_APPROVED), (False, LedgerKind.ACTION_REJECTED)],
)
def test_verdict_entry(approved: bool, kind: LedgerKind) -> None:
    """Given an operator's verdict, then it is action.approved or action.rejected with who
    gave it and why, one id per command and verdict."""
    got = verdict_entry(command(), T, approved, "alice", "checked the invoice")

    assert written(got) == entry(
        kind,
        stable_id("out", "cmd-1", kind.value),
        about(by="alice", reason="checked the invoice"),
    )


def test_approving_and_rejecting_are_different_entries() -> None:
    """Given one command, then its approval and its rejection have different ids."""
    approved = verdict_entry(command(), T, True, "alice", "ok")
    rejected = verdict_entry(command(), T, False, "alice", "no")

    assert approved.entry_id != rejected.entry_id


@pytest.mark.parametrize(
    ("state", "kind"),
    [
        ("open", LedgerKind.BREAKER_OPENED),
        ("half_open", LedgerKind.BREAKER_HALF_OPENED),
        ("closed", LedgerKind.BREAKER_CLOSED),
    ],
)
def test_breaker_entry(state: str, kind: LedgerKind) -> None:
    """Given a breaker change on worker-a, then the entry names no workspace, is its own
    correlation and cause, and carries provider, failure count and worker."""
    entry_id = stable_id("brk", "worker-a", "control_api", kind.value, T.isoformat())

    got = breaker_entry("control_api", state, 5, "worker-a", T)

    assert written(got) == {
        "schema_version": 3,
        "entry_id": entry_id,
        "kind": kind.value,
        "workspace_id": None,
        "correlation_id": entry_id,
        "causation_id": entry_id,
        "policy_version": None,
        "recorded_at": "2024-01-01T12:00:00Z",
        "payload": {"provider": "control_api", "failures": 5, "worker": "worker-a"},
        "prev_hash": None,
        "hash": None,
    }


def test_an_unknown_breaker_state_is_refused() -> None:
    """Given a state that is not a breaker state, then no entry is made."""
    with pytest.raises(KeyError):
        breaker_entry("control_api", "ajar", 1, "worker-a", T)


@pytest.mark.parametrize(
    "write",
    [
        lambda c, at: started_entry(c, at, T + timedelta(seconds=60), "w-1"),
        lambda c, at: succeeded_entry(c, at, {"status": 200}),
        lambda c, at: failed_entry(c, at, RetryableError("503"), T + timedelta(seconds=2)),
        lambda c, at: dead_lettered_entry(c, at, TerminalError("410")),
        lambda c, at: deferred_entry(c, at, "control_api", T + timedelta(seconds=30)),
        lambda c, at: skipped_entry(c, at, "dry_run"),
        lambda c, at: approval_requested_entry(c, at, frozenset({"finance"}), "credit"),
        lambda c, at: verdict_entry(c, at, True, "alice", "ok"),
    ],
    ids=[
        "started",
        "succeeded",
        "failed",
        "dead_lettered",
        "deferred",
        "skipped",
        "approval_requested",
        "verdict",
    ],
)
def test_a_command_entry_written_again_later_is_the_same_entry(write: Any) -> None:
    """Given the same command and details, when an entry is written again 7 minutes later (a
    redelivery, a crash after writing), then it has the same id."""
    first, again = write(command(2), T), write(command(2), LATER)

    assert again.entry_id == first.entry_id
    assert again.recorded_at == LATER


def test_a_deferral_until_a_later_time_is_a_new_entry() -> None:
    """Given the same attempt deferred twice (the breaker opened again), then each deferral
    with its own `until` is its own entry."""
    first = deferred_entry(command(2), T, "control_api", T + timedelta(seconds=30))
    second = deferred_entry(command(2), LATER, "control_api", LATER + timedelta(seconds=30))

    assert first.entry_id != second.entry_id


def test_a_breaker_change_at_another_time_is_a_new_entry() -> None:
    """Given the same breaker opening twice, then each opening is its own entry, and the same
    change seen on another worker is another entry too."""
    first = breaker_entry("control_api", "open", 5, "worker-a", T)

    assert breaker_entry("control_api", "open", 5, "worker-a", LATER).entry_id != first.entry_id
    assert breaker_entry("control_api", "open", 5, "worker-b", T).entry_id != first.entry_id
    assert breaker_entry("control_api", "open", 9, "worker-a", T).entry_id == first.entry_id


@pytest.mark.parametrize(
    "write",
    [
        lambda c: started_entry(c, T, T, "w-1"),
        lambda c: failed_entry(c, T, RetryableError("503"), None),
        lambda c: deferred_entry(c, T, "control_api", T),
    ],
    ids=["started", "failed", "deferred"],
)
def test_per_attempt_entries_differ_between_attempts(write: Any) -> None:
    """Given attempts 1 and 2 of one command, then their started, failed and deferred entries
    are different entries."""
    assert write(command(1)).entry_id != write(command(2)).entry_id


@pytest.mark.parametrize(
    "write",
    [
        lambda c: succeeded_entry(c, T, {}),
        lambda c: dead_lettered_entry(c, T, TerminalError("410")),
        lambda c: skipped_entry(c, T, "dry_run"),
        lambda c: approval_requested_entry(c, T, frozenset({"finance"}), "credit"),
        lambda c: verdict_entry(c, T, False, "alice", "no"),
    ],
    ids=["succeeded", "dead_lettered", "skipped", "approval_requested", "verdict"],
)
def test_entries_once_per_command_are_the_same_across_attempts(write: Any) -> None:
    """Given attempts 1 and 3 of one command, then how it ended (and its approval request) is
    one entry whichever attempt wrote it."""
    assert write(command(1)).entry_id == write(command(3)).entry_id


def test_different_commands_have_different_entries() -> None:
    """Given two commands, then their succeeded entries differ."""
    assert (
        succeeded_entry(command(), T, {}).entry_id
        != succeeded_entry(command(command_id="cmd-2"), T, {}).entry_id
    )


def test_a_long_reason_is_cut_at_400_characters() -> None:
    """Given an error whose reason is 1000 characters, then the failed and dead-lettered
    entries carry its first 400."""
    error = TerminalError("x" * 600 + "y" * 400)

    failed = failed_entry(command(), T, error, None)
    dead = dead_lettered_entry(command(), T, error)

    assert MAX_REASON_CHARS == 400
    assert failed.payload.error.reason == "x" * 400
    assert dead.payload.error.reason == "x" * 400


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            RetryableError("429 Too Many Requests", retry_after=30.0),
            {"class": "RetryableError", "reason": "429 Too Many Requests", "retryable": True},
        ),
        (
            TerminalError("400 Bad Request"),
            {"class": "TerminalError", "reason": "400 Bad Request", "retryable": False},
        ),
        (
            NotConfiguredError("set AUTOPILOT_CONTROL_API_URL"),
            {
                "class": "NotConfiguredError",
                "reason": "set AUTOPILOT_CONTROL_API_URL",
                "retryable": False,
            },
        ),
    ],
    ids=["retryable", "terminal", "not-configured"],
)
def test_error_of(error: ActionError, expected: dict[str, Any]) -> None:
    """Given each kind of action error, then the ledger carries its class, reason and whether
    another attempt may help."""
    assert error_of(error).model_dump(mode="json") == expected
