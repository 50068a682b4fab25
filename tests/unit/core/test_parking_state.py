"""A workspace's parking in the executor's memory: parked by a dead letter, commands held in the
order they came (a copy once), released in that order or dropped, expiring after its TTL, and
values stored before parking existed still read."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from core import execution_state as memory
from core.execution_state import ExecutionState
from topics.approvals import Verdict

T0 = 1_704_067_200.0
DAY = 86_400.0
REASON = "run_provisioning dead-lettered (TerminalError), command cmd-dead"
SOURCE = ["autopilot.commands.medium", 2, 40]


def held(command_id: str) -> str:
    return orjson.dumps({"command_id": command_id}).decode()


def parked(*queued: str) -> ExecutionState:
    """A workspace parked at T0 by cmd-dead's dead letter, holding `queued` in that order."""
    state = memory.park_workspace(memory.initial(), "cmd-dead", REASON, T0)
    for n, command_id in enumerate(queued):
        state = memory.queue_parked(state, command_id, held(command_id), SOURCE, T0 + n)
    return state


def ids(state: ExecutionState) -> list[str]:
    return [h["command_id"] for h in memory.queued_of(state)]


def test_a_value_stored_before_parking_existed_reads_as_not_parked() -> None:
    """Given a workspace's value as stored before parking existed (no parked, queued or
    released key), when read back, then it is not parked, holds nothing, and parking it adds
    only the parking."""
    stored = orjson.dumps({"lease": None, "done": {}, "tried": {}, "pending": {}, "approvals": {}})
    state: ExecutionState = orjson.loads(stored)

    assert memory.parked_of(state) is None
    assert memory.queued_of(state) == []
    assert memory.position_of(state, "cmd-1") is None
    assert memory.expired(state, T0 + 10 * DAY, DAY) is False
    assert memory.applied(state, "req-1") is False
    assert memory.park_workspace(state, "cmd-dead", REASON, T0) == {
        **state,
        "parked": {"reason": REASON, "since": T0, "command_id": "cmd-dead"},
    }


def test_a_dead_letter_parks_the_workspace_once() -> None:
    """Given a workspace parked by cmd-dead, when another command's dead letter would park it
    again, then it stays parked as it was (reason, since and command)."""
    state = parked()

    again = memory.park_workspace(state, "cmd-other", "another reason", T0 + 60)

    assert again == state
    assert memory.parked_of(again) == {"reason": REASON, "since": T0, "command_id": "cmd-dead"}


def test_commands_are_held_in_the_order_they_came_and_a_copy_once() -> None:
    """Given a parked workspace, when cmd-2, cmd-1, a copy of cmd-2 and cmd-3 come, then three
    commands wait in the order they first came, each with its JSON, source and time."""
    state = parked("cmd-2", "cmd-1")

    state = memory.queue_parked(state, "cmd-2", held("cmd-2-copy"), SOURCE, T0 + 9)
    state = memory.queue_parked(state, "cmd-3", held("cmd-3"), ["retry", 2, 7], T0 + 10)

    assert ids(state) == ["cmd-2", "cmd-1", "cmd-3"]
    assert [memory.position_of(state, c) for c in ("cmd-2", "cmd-1", "cmd-3")] == [1, 2, 3]
    assert memory.queued_of(state)[0] == {
        "command_id": "cmd-2",
        "command": held("cmd-2"),
        "source": SOURCE,
        "at": T0,
    }
    assert memory.queued_of(state)[2]["source"] == ["retry", 2, 7]


def test_a_release_hands_the_commands_back_in_order_and_unparks() -> None:
    """Given cmd-1 and cmd-2 held, when an operator releases (req-1), then both come back in
    order, the workspace is no longer parked and the release is remembered; the commands stay
    queued until each has run, and leave it one by one."""
    state = parked("cmd-1", "cmd-2")

    released, commands = memory.release(state, "req-1")

    assert [c["command_id"] for c in commands] == ["cmd-1", "cmd-2"]
    assert memory.parked_of(released) is None
    assert memory.applied(released, "req-1") and not memory.applied(released, "req-2")
    assert ids(released) == ["cmd-1", "cmd-2"]
    ran = memory.unqueue(released, "cmd-1")
    assert ids(ran) == ["cmd-2"]
    assert memory.queued_of(memory.unqueue(ran, "cmd-2")) == []


def test_a_release_by_ttl_keeps_the_last_operator_release() -> None:
    """Given a workspace once released by req-1 and parked again, when its TTL releases it,
    then req-1 stays the last operator release applied."""
    state, _ = memory.release(parked(), "req-1")
    state = memory.park_workspace(state, "cmd-dead-2", REASON, T0 + DAY)

    released, _ = memory.release(state, None)

    assert memory.parked_of(released) is None
    assert memory.applied(released, "req-1")


def test_a_drop_finishes_every_held_command_as_skipped() -> None:
    """Given cmd-1 and cmd-2 held, when an operator drops them at T0 + 5, then both come back
    in order, each is done as skipped, the queue is empty and the workspace unparked."""
    state = parked("cmd-1", "cmd-2")

    dropped, commands = memory.drop(state, "req-9", T0 + 5)

    assert [c["command_id"] for c in commands] == ["cmd-1", "cmd-2"]
    assert memory.finished(dropped, "cmd-1") == "action.skipped"
    assert dropped["done"]["cmd-2"] == ["action.skipped", T0 + 5]
    assert memory.queued_of(dropped) == []
    assert memory.parked_of(dropped) is None
    assert memory.applied(dropped, "req-9")


@pytest.mark.parametrize(
    ("ttl", "now", "expired"),
    [
        (DAY, T0 + DAY - 1, False),
        (DAY, T0 + DAY, True),
        (DAY, T0 + 2 * DAY, True),
        (0, T0 + 365 * DAY, False),  # 0: never expires
    ],
    ids=["younger", "exactly-ttl", "older", "never"],
)
def test_a_parking_expires_once_as_old_as_its_ttl(ttl: float, now: float, expired: bool) -> None:
    """Given a workspace parked at T0, then its parking has expired from T0 + TTL on, and never
    with a TTL of 0."""
    assert memory.expired(parked("cmd-1"), now, ttl) is expired


def test_a_workspace_not_parked_never_expires() -> None:
    """Given a workspace not parked, then there is no parking to expire."""
    assert memory.expired(memory.initial(), T0 + 10 * DAY, 1) is False


def test_parking_survives_finishing_pruning_and_storing() -> None:
    """Given a parked workspace holding cmd-1, when another command finishes, old records are
    pruned and the value is stored as JSON and read back, then it is still parked with cmd-1
    held."""
    state = parked("cmd-1")

    state = memory.finish(state, "cmd-dead", "action.dead_lettered", T0)
    state = memory.prune(state, T0 + 30 * DAY, DAY)
    restored: ExecutionState = orjson.loads(orjson.dumps(state))

    assert memory.parked_of(restored) == memory.parked_of(parked())
    assert ids(restored) == ["cmd-1"]


CHANGES: list[tuple[str, Callable[[ExecutionState], Any]]] = [
    ("park_workspace", lambda s: memory.park_workspace(s, "cmd-x", "r", T0)),
    ("queue_parked", lambda s: memory.queue_parked(s, "cmd-9", held("cmd-9"), SOURCE, T0)),
    ("release", lambda s: memory.release(s, "req-1")),
    ("unqueue", lambda s: memory.unqueue(s, "cmd-1")),
    ("drop", lambda s: memory.drop(s, "req-1", T0)),
]


@pytest.mark.parametrize("change", [fn for _, fn in CHANGES], ids=[name for name, _ in CHANGES])
def test_no_parking_function_changes_the_state_it_is_given(
    change: Callable[[ExecutionState], Any],
) -> None:
    """Given a parked workspace holding two commands, when any parking function derives a new
    state from it, then the given state (the queue included) is exactly as it was."""
    state = parked("cmd-1", "cmd-2")
    before = copy.deepcopy(state)

    change(state)

    assert state == before


def test_a_command_begun_before_the_parking_is_not_one_to_hold() -> None:
    """Given a parked workspace where cmd-1's attempt failed and its next is scheduled, and
    cmd-2 was approved by an operator, then both were begun; cmd-3, never seen, was not."""
    state = memory.record_attempt(parked(), "cmd-1", 1, T0)
    state = memory.park(state, "cmd-2", held("cmd-2"))
    state, _ = memory.give_verdict(state, "cmd-2", Verdict.APPROVED, "alice", T0)

    assert memory.begun(state, "cmd-1") and memory.begun(state, "cmd-2")
    assert not memory.begun(state, "cmd-3")
