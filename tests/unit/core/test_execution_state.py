"""What the executor remembers per workspace: finished commands, superseded attempts, whose
lease is live, parked commands and verdicts, pruning by age, and the stored JSON form."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from core import execution_state as memory
from core.execution_state import ExecutionState, Lease
from topics.approvals import Verdict

T0 = 1_704_067_200.0
HOUR = 3600.0
ME, OTHER = "worker-a", "worker-b"
PARKED_JSON = '{"command_id":"cmd-2","action":"issue_credit"}'


def lease(command_id: str = "cmd-1", holder: str = ME, until: float = T0 + 60.0) -> Lease:
    return Lease(command_id, attempt=1, holder=holder, since=T0, until=until)


def busy() -> ExecutionState:
    """A workspace with cmd-1 leased, retried and parked with a verdict, and cmd-9 finished."""
    state = memory.take_lease(memory.initial(), lease("cmd-1"))
    state = memory.record_attempt(state, "cmd-1", 2, T0)
    state = memory.take_lease(state, Lease("cmd-1", 3, ME, T0 + 5.0, T0 + 65.0))
    state = memory.park(state, "cmd-1", '{"command_id":"cmd-1"}')
    state, _ = memory.give_verdict(state, "cmd-1", Verdict.APPROVED, "alice", T0 + 1.0)
    return memory.finish(state, "cmd-9", "action.succeeded", T0 - HOUR)


def test_a_new_workspace_remembers_nothing() -> None:
    """Given a workspace never acted on, then nothing is leased, done, tried, pending or
    approved."""
    state = memory.initial()

    assert state == {"lease": None, "done": {}, "tried": {}, "pending": {}, "approvals": {}}
    assert memory.finished(state, "cmd-1") is None
    assert memory.superseded(state, "cmd-1", 1) is False
    assert memory.foreign_lease(state, ME, T0) is None
    assert memory.approval_of(state, "cmd-1") is None


def test_a_lease_is_stored_as_json() -> None:
    """Given a lease taken, then the state holds its fields as a plain dict."""
    state = memory.take_lease(memory.initial(), lease())

    assert state["lease"] == {
        "command_id": "cmd-1",
        "attempt": 1,
        "holder": ME,
        "since": T0,
        "until": T0 + 60.0,
    }


def test_finish_records_the_kind_and_forgets_the_commands_lease_attempts_and_approval() -> None:
    """Given cmd-1 leased, retried, approved and parked (again), and cmd-2 parked, when cmd-1
    finishes as succeeded at T0 + 10, then it is done with that kind and time, and its lease,
    attempt, parked JSON and verdict are gone; cmd-9's record and cmd-2's parked JSON stay."""
    state = memory.park(busy(), "cmd-1", '{"command_id":"cmd-1"}')
    state = memory.park(state, "cmd-2", PARKED_JSON)

    state = memory.finish(state, "cmd-1", "action.succeeded", T0 + 10.0)

    assert memory.finished(state, "cmd-1") == "action.succeeded"
    assert state == {
        "lease": None,
        "done": {
            "cmd-9": ["action.succeeded", T0 - HOUR],
            "cmd-1": ["action.succeeded", T0 + 10.0],
        },
        "tried": {},
        "pending": {"cmd-2": PARKED_JSON},
        "approvals": {},
    }


def test_finish_keeps_another_commands_lease() -> None:
    """Given cmd-2 holding the lease, when cmd-1 finishes (dead-lettered), then cmd-2's lease
    stays and cmd-1 is recorded as dead-lettered."""
    state = memory.take_lease(memory.initial(), lease("cmd-2", holder=OTHER))

    finished = memory.finish(state, "cmd-1", "action.dead_lettered", T0)

    assert finished["lease"] == lease("cmd-2", holder=OTHER).as_json()
    assert memory.finished(finished, "cmd-1") == "action.dead_lettered"


def test_a_scheduled_retry_frees_the_lease_and_supersedes_older_attempts() -> None:
    """Given attempt 2 of cmd-1 failed and attempt 3 was scheduled, then the lease is free and
    attempts 1 and 2 are superseded; attempt 3 is not, nor is any attempt of cmd-2."""
    state = memory.take_lease(memory.initial(), Lease("cmd-1", 2, ME, T0, T0 + 60.0))

    state = memory.record_attempt(state, "cmd-1", 2, T0 + 1.0)

    assert state["lease"] is None
    assert state["tried"] == {"cmd-1": [2, T0 + 1.0]}
    assert [memory.superseded(state, "cmd-1", attempt) for attempt in (1, 2, 3)] == [
        True,
        True,
        False,
    ]
    assert memory.superseded(state, "cmd-2", 1) is False


def test_a_scheduled_retry_keeps_another_commands_lease() -> None:
    """Given cmd-2 leased, when cmd-1's attempt is recorded, then cmd-2's lease stays."""
    state = memory.take_lease(memory.initial(), lease("cmd-2"))

    assert memory.record_attempt(state, "cmd-1", 1, T0)["lease"] == lease("cmd-2").as_json()


@pytest.mark.parametrize(
    ("holder", "until", "now"),
    [
        (ME, T0 + 60.0, T0),  # ours
        (OTHER, T0 + 60.0, T0 + 60.0),  # expires exactly now
        (OTHER, T0 + 60.0, T0 + 61.0),  # expired
    ],
    ids=["ours", "expiring-now", "expired"],
)
def test_a_lease_that_is_ours_or_expired_is_not_foreign(
    holder: str, until: float, now: float
) -> None:
    """Given a lease we hold, or someone else's that ends at or before now, then it does not
    stand in our way."""
    state = memory.take_lease(memory.initial(), lease(holder=holder, until=until))

    assert memory.foreign_lease(state, ME, now) is None


def test_someone_elses_live_lease_is_returned() -> None:
    """Given worker-b's lease until T0 + 60, when worker-a looks just before then, then it
    gets worker-b's lease back."""
    state = memory.take_lease(memory.initial(), lease(holder=OTHER))

    assert memory.foreign_lease(state, ME, T0 + 59.999) == lease(holder=OTHER)


def test_a_parked_command_is_handed_back_with_the_verdict() -> None:
    """Given cmd-2 parked, when alice approves it at T0 + 5, then its JSON comes back, it is
    no longer pending and the verdict is recorded with who gave it and when."""
    state = memory.park(memory.initial(), "cmd-2", PARKED_JSON)
    assert state["pending"] == {"cmd-2": PARKED_JSON}

    given, parked = memory.give_verdict(state, "cmd-2", Verdict.APPROVED, "alice", T0 + 5.0)

    assert parked == PARKED_JSON
    assert given["pending"] == {}
    assert given["approvals"] == {"cmd-2": {"verdict": "approved", "by": "alice", "at": T0 + 5.0}}
    assert memory.approval_of(given, "cmd-2") is Verdict.APPROVED


def test_a_rejection_is_recorded_as_such() -> None:
    """Given cmd-2 parked, when bob rejects it, then its verdict reads rejected."""
    state = memory.park(memory.initial(), "cmd-2", PARKED_JSON)

    given, _ = memory.give_verdict(state, "cmd-2", Verdict.REJECTED, "bob", T0)

    assert memory.approval_of(given, "cmd-2") is Verdict.REJECTED


def test_a_verdict_on_a_command_not_parked_returns_nothing_but_is_kept() -> None:
    """Given no parked cmd-3, when alice approves it, then no JSON comes back and the verdict
    is still recorded (for the command when it arrives)."""
    given, parked = memory.give_verdict(memory.initial(), "cmd-3", Verdict.APPROVED, "alice", T0)

    assert parked is None
    assert given["pending"] == {}
    assert memory.approval_of(given, "cmd-3") is Verdict.APPROVED


def test_prune_forgets_what_is_older_than_the_horizon_and_keeps_the_rest() -> None:
    """Given done, tried and verdicts from 25 h, exactly 24 h and 1 h ago and a parked
    command from long ago, when pruned at T0 with a 24 h horizon, then the 25 h old records
    go, the others (the 24 h old ones included) stay, and the parked command stays."""
    state: ExecutionState = {
        "lease": lease().as_json(),
        "done": {
            "old": ["action.succeeded", T0 - 25 * HOUR],
            "edge": ["action.skipped", T0 - 24 * HOUR],
            "new": ["action.rejected", T0 - HOUR],
        },
        "tried": {"old": [1, T0 - 25 * HOUR], "edge": [2, T0 - 24 * HOUR], "new": [3, T0]},
        "pending": {"ancient": PARKED_JSON},
        "approvals": {
            "old": {"verdict": "approved", "by": "alice", "at": T0 - 25 * HOUR},
            "new": {"verdict": "rejected", "by": "bob", "at": T0 - HOUR},
        },
    }

    pruned = memory.prune(state, T0, 24 * HOUR)

    assert pruned == {
        "lease": lease().as_json(),
        "done": {
            "edge": ["action.skipped", T0 - 24 * HOUR],
            "new": ["action.rejected", T0 - HOUR],
        },
        "tried": {"edge": [2, T0 - 24 * HOUR], "new": [3, T0]},
        "pending": {"ancient": PARKED_JSON},
        "approvals": {"new": {"verdict": "rejected", "by": "bob", "at": T0 - HOUR}},
    }


def test_the_state_round_trips_through_its_stored_json_unchanged() -> None:
    """Given a busy workspace's state, when it is stored as JSON and read back, then every
    answer is the same as before."""
    state = busy()

    restored = orjson.loads(orjson.dumps(state))

    assert restored == state
    assert memory.finished(restored, "cmd-9") == "action.succeeded"
    assert memory.superseded(restored, "cmd-1", 2) is True
    assert memory.foreign_lease(restored, OTHER, T0) == Lease("cmd-1", 3, ME, T0 + 5.0, T0 + 65.0)
    assert memory.approval_of(restored, "cmd-1") is Verdict.APPROVED


CHANGES: list[tuple[str, Callable[[ExecutionState], Any]]] = [
    ("take_lease", lambda s: memory.take_lease(s, lease("cmd-5", holder=OTHER))),
    ("finish", lambda s: memory.finish(s, "cmd-1", "action.succeeded", T0 + 9.0)),
    ("record_attempt", lambda s: memory.record_attempt(s, "cmd-1", 3, T0 + 9.0)),
    ("park", lambda s: memory.park(s, "cmd-5", PARKED_JSON)),
    ("give_verdict", lambda s: memory.give_verdict(s, "cmd-1", Verdict.REJECTED, "bob", T0)),
    ("prune", lambda s: memory.prune(s, T0, 60.0)),
]


@pytest.mark.parametrize("change", [fn for _, fn in CHANGES], ids=[name for name, _ in CHANGES])
def test_no_function_changes_the_state_it_is_given(
    change: Callable[[ExecutionState], Any],
) -> None:
    """Given a busy workspace's state, when any function derives a new state from it, then the
    given state (nested records included) is exactly as it was."""
    state = busy()
    before = copy.deepcopy(state)

    change(state)

    assert state == before


def test_lease_of_returns_any_lease_left_live_or_expired() -> None:
    """Given a lease left by an attempt that did not settle, then lease_of returns it whoever
    holds it and whether or not it expired; a free workspace has none."""
    left = Lease("cmd-1", 2, OTHER, T0, T0 - 1.0)
    state = memory.take_lease(memory.initial(), left)

    assert memory.lease_of(state) == left
    assert memory.lease_of(memory.initial()) is None


def test_a_parking_by_a_failed_run_lets_that_runs_compensations_through() -> None:
    """Given a workspace parked by playbook run r-1's failure, then r-1's commands (its
    compensations) are not held by it, another run's are, and a dead letter's parking names
    no run; a second parking leaves the first as it was."""
    state = memory.park_workspace(memory.initial(), "cmd-7", "playbook failed", 10.0, "r-1")

    assert memory.parked_by_run(state, "r-1")
    assert not memory.parked_by_run(state, "r-2")
    assert not memory.parked_by_run(state, None)
    by_dead_letter = memory.park_workspace(memory.initial(), "cmd-8", "dead-lettered", 10.0)
    assert not memory.parked_by_run(by_dead_letter, "r-1")
    assert memory.park_workspace(by_dead_letter, "cmd-9", "again", 11.0, "r-1") == by_dead_letter
