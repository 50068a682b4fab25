"""The parking's ledger entries: one workspace.parked per dead letter (its reason never the
provider's answer), action.parked per held attempt, one workspace.released per parking, by an
operator, a drop or the TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actions.reconciler import TerminalError
from core.ledger_entries import (
    dead_lettered_entry,
    held_entry,
    parked_entry,
    parking_id,
    released_entry,
)
from tests.support import factories
from topics.approvals import ParkingRelease
from topics.commands import Action, Command, Priority
from topics.ledger import LedgerKind

AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
LATER = AT + timedelta(minutes=5)
SECRET_ANSWER = '{"error": "customer 4711 card declined", "token": "sk-live-123"}'


def command(n: int, attempt: int = 1) -> Command:
    return factories.command(
        str(n), "ws-a", Action.ISSUE_CREDIT, Priority.HIGH, rule_id="test.parking", attempt=attempt
    )


def test_the_parked_entry_names_the_action_error_class_and_command_only() -> None:
    """Given cmd-1 dead-lettered with the provider's answer in its error, when its workspace
    parks, then the entry's reason names the action, the error's class and the command, and
    nothing of the answer; it follows the dead letter and is on the workspace's chain."""
    dead = dead_lettered_entry(command(1, 3), AT, TerminalError(SECRET_ANSWER))

    entry = parked_entry(dead, AT, 3600, 2, LATER)

    assert entry.kind is LedgerKind.WORKSPACE_PARKED
    assert entry.entry_id == parking_id("cmd-1")
    assert (entry.workspace_id, entry.causation_id) == ("ws-a", dead.entry_id)
    assert entry.payload.reason == "issue_credit dead-lettered (TerminalError), command cmd-1"
    assert (entry.payload.since, entry.payload.ttl_seconds, entry.payload.queued) == (
        AT,
        3600,
        2,
    )
    assert "4711" not in entry.model_dump_json() and "sk-live" not in entry.model_dump_json()


def test_an_entry_written_again_is_the_same_entry() -> None:
    """Given the parking entries of one parking, when built again later (a crash, a
    redelivery), then they have the same ids; another attempt held is another entry."""
    dead = dead_lettered_entry(command(1), AT, TerminalError("gone"))
    operator = ParkingRelease(request_id="req-1", workspace_id="ws-a", requested_at=AT)

    assert parked_entry(dead, AT, 0, 0, AT).entry_id == parked_entry(dead, AT, 0, 0, LATER).entry_id
    assert (
        held_entry(command(2), "cmd-1", 1, AT).entry_id
        == held_entry(command(2), "cmd-1", 1, LATER).entry_id
    )
    assert (
        held_entry(command(2, 2), "cmd-1", 1, AT).entry_id
        != held_entry(command(2), "cmd-1", 1, AT).entry_id
    )
    # One release per parking, whoever ends it
    assert (
        released_entry("ws-a", "cmd-1", AT, operator, 1, LATER).entry_id
        == released_entry("ws-a", "cmd-1", AT, None, 1, LATER).entry_id
    )


def test_a_release_says_who_ended_the_parking_and_whether_it_dropped() -> None:
    """Given an operator's release, an operator's drop and an expiry, then each entry names
    who (the operator, or ttl), whether the commands were dropped, and how many."""
    release = ParkingRelease(
        request_id="req-1", workspace_id="ws-a", by="alice", reason="fixed", requested_at=AT
    )
    drop = release.model_copy(update={"drop": True})

    released = released_entry("ws-a", "cmd-1", AT, release, 2, LATER)
    dropped = released_entry("ws-a", "cmd-1", AT, drop, 2, LATER)
    expired = released_entry("ws-a", "cmd-1", AT, None, 3, LATER)

    assert [
        (e.payload.by, e.payload.dropped, e.payload.count) for e in (released, dropped, expired)
    ] == [
        ("alice", False, 2),
        ("alice", True, 2),
        ("ttl", False, 3),
    ]
    assert released.correlation_id == "req-1"
    assert expired.correlation_id == expired.causation_id == parking_id("cmd-1")
    assert released.payload.parked_since == AT
