"""What the executor remembers per workspace: its lease, finished commands, approvals (pure).

One JSON value per workspace in the `executions` table (changelog-backed, so the shard's next
owner restores it):
- `lease`: the command in flight, who runs it and until when. Written (and flushed) before the
  side effect, so a new owner after a rebalance does not start it again before the lease
  expires or its outcome is on the ledger.
- `done`: finished command ids and how they ended, for `horizon` seconds: a copy of a finished
  command (a redelivery, a duplicate decision, a second `dlq replay`) does nothing.
- `tried`: the last attempt of a command that failed and was scheduled again: an older copy of
  it (the record of an earlier attempt, redelivered) does nothing either.
- `pending`: compliance-tagged commands waiting for an operator, as their JSON.
- `approvals`: operators' verdicts by command id.
Time is passed in (seconds since the epoch), so the same inputs give the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from topics.approvals import Verdict


class StoredLease(TypedDict):
    """A lease as stored (`Lease.as_json`)."""

    command_id: str
    attempt: int
    holder: str
    since: float
    until: float


class GivenVerdict(TypedDict):
    """An operator's verdict on a parked command, who gave it and when."""

    verdict: str
    by: str
    at: float


class ExecutionState(TypedDict):
    """One workspace's value in the `executions` table (see the module's docstring)."""

    lease: StoredLease | None
    # Command id → [terminal ledger kind (str), when it finished (float)], as JSON holds it.
    done: dict[str, list[Any]]
    # Command id → [last failed attempt, when].
    tried: dict[str, list[float]]
    # Command id → the parked command's JSON.
    pending: dict[str, str]
    approvals: dict[str, GivenVerdict]


@dataclass(frozen=True, slots=True)
class Lease:
    """A workspace's action in flight."""

    command_id: str
    attempt: int
    holder: str
    since: float
    until: float

    def as_json(self) -> StoredLease:
        """The lease as stored."""
        return {
            "command_id": self.command_id,
            "attempt": self.attempt,
            "holder": self.holder,
            "since": self.since,
            "until": self.until,
        }


def initial() -> ExecutionState:
    """A workspace the executor has never acted on."""
    return {"lease": None, "done": {}, "tried": {}, "pending": {}, "approvals": {}}


def finished(state: ExecutionState, command_id: str) -> str | None:
    """How the command ended (a terminal ledger kind), or None if it has not."""
    done = state["done"].get(command_id)
    return None if done is None else str(done[0])


def superseded(state: ExecutionState, command_id: str, attempt: int) -> bool:
    """Whether this attempt already ran and a later one was scheduled."""
    tried = state["tried"].get(command_id)
    return tried is not None and attempt <= int(tried[0])


def lease_of(state: ExecutionState) -> Lease | None:
    """The workspace's lease, live or not: an attempt that never settled (a crash, a move)."""
    raw = state["lease"]
    return None if raw is None else Lease(**raw)


def foreign_lease(state: ExecutionState, holder: str, now: float) -> Lease | None:
    """A live lease someone else holds on the workspace (None if free, expired or ours)."""
    raw = state["lease"]
    if raw is None:
        return None
    lease = Lease(**raw)
    if lease.holder == holder or lease.until <= now:
        return None
    return lease


def take_lease(state: ExecutionState, lease: Lease) -> ExecutionState:
    """The workspace leased for one attempt of a command."""
    return {**state, "lease": lease.as_json()}


def finish(state: ExecutionState, command_id: str, kind: str, now: float) -> ExecutionState:
    """The command ended (terminal kind); its lease, attempts and approval are forgotten."""
    return {
        **state,
        "lease": _without_lease_of(state, command_id),
        "done": {**state["done"], command_id: [kind, now]},
        "tried": _without(state["tried"], command_id),
        "pending": _without(state["pending"], command_id),
        "approvals": _without(state["approvals"], command_id),
    }


def record_attempt(
    state: ExecutionState, command_id: str, attempt: int, now: float
) -> ExecutionState:
    """An attempt failed and the next one is scheduled: older copies of it are stale."""
    return {
        **state,
        "lease": _without_lease_of(state, command_id),
        "tried": {**state["tried"], command_id: [attempt, now]},
    }


def park(state: ExecutionState, command_id: str, command_json: str) -> ExecutionState:
    """A command waits for an operator's approval."""
    return {**state, "pending": {**state["pending"], command_id: command_json}}


def approval_of(state: ExecutionState, command_id: str) -> Verdict | None:
    """The operator's verdict on the command, if given."""
    given = state["approvals"].get(command_id)
    return None if given is None else Verdict(given["verdict"])


def give_verdict(
    state: ExecutionState, command_id: str, verdict: Verdict, by: str, now: float
) -> tuple[ExecutionState, str | None]:
    """Record an operator's verdict; returns the state and the parked command's JSON, if any."""
    parked = state["pending"].get(command_id)
    return (
        {
            **state,
            "pending": _without(state["pending"], command_id),
            "approvals": {
                **state["approvals"],
                command_id: {"verdict": verdict.value, "by": by, "at": now},
            },
        },
        parked,
    )


def prune(state: ExecutionState, now: float, horizon: float) -> ExecutionState:
    """Forget finished commands, attempts and verdicts older than the horizon."""
    oldest = now - horizon
    return {
        **state,
        "done": {key: value for key, value in state["done"].items() if value[1] >= oldest},
        "tried": {key: value for key, value in state["tried"].items() if value[1] >= oldest},
        "approvals": {
            key: value for key, value in state["approvals"].items() if value["at"] >= oldest
        },
    }


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k != key}


def _without_lease_of(state: ExecutionState, command_id: str) -> StoredLease | None:
    lease = state["lease"]
    return None if lease is None or lease["command_id"] == command_id else lease
