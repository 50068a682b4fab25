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
- `parked`: the workspace's parking, when a dead letter parked it: why, since when, and the
  command dead-lettered. `queued`: the commands held behind it, as their JSON, in the order
  they came; each stays there until it has run (or was dropped), so a release cut short by a
  crash goes on where it stopped. `released`: the last operator release applied (its request
  id), so a copy of that request resumes the queue and never ends a later parking.
  Values stored before parking existed have none of these three keys: absent reads as
  not parked, nothing queued, nothing released.
Time is passed in (seconds since the epoch), so the same inputs give the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from topics.approvals import Verdict
from topics.ledger import LedgerKind


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


class Parking(TypedDict):
    """Why and since when a workspace is parked, and the command whose dead letter parked it
    (or, parked by a playbook's failed run, that run and its failed step's command)."""

    reason: str
    since: float
    command_id: str
    run: NotRequired[str]


class HeldCommand(TypedDict):
    """A command held behind a parking, as it came."""

    command_id: str
    # The command's JSON.
    command: str
    # Where its record was (topic, partition, offset): the dead-letter headers name it.
    source: list[Any]
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
    parked: NotRequired[Parking | None]
    queued: NotRequired[list[HeldCommand]]
    released: NotRequired[str | None]


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


def parked_of(state: ExecutionState) -> Parking | None:
    """The workspace's parking, or None when it is not parked."""
    return state.get("parked")


def queued_of(state: ExecutionState) -> list[HeldCommand]:
    """The commands held behind the workspace's parking (or left by a release cut short), in
    the order they came."""
    return state.get("queued", [])


def position_of(state: ExecutionState, command_id: str) -> int | None:
    """The command's place in the queue (1 runs first), or None when it is not held."""
    for position, held in enumerate(queued_of(state), 1):
        if held["command_id"] == command_id:
            return position
    return None


def park_workspace(
    state: ExecutionState, command_id: str, reason: str, since: float, run: str | None = None
) -> ExecutionState:
    """The command's dead letter (or the failed playbook `run`) parks the workspace (already
    parked: it stays as it was)."""
    if parked_of(state) is not None:
        return state
    parking: Parking = {"reason": reason, "since": since, "command_id": command_id}
    if run is not None:
        parking["run"] = run
    return {**state, "parked": parking}


def parked_by_run(state: ExecutionState, run: str | None) -> bool:
    """Whether the workspace is parked by this playbook run's failure (whose compensations,
    issued with it, are not held by it)."""
    parking = parked_of(state)
    return run is not None and parking is not None and parking.get("run") == run


def queue_parked(
    state: ExecutionState, command_id: str, command_json: str, source: list[Any], now: float
) -> ExecutionState:
    """The command waits behind the parking, after the ones before it; a copy of a command
    already held keeps the first one's place."""
    if position_of(state, command_id) is not None:
        return state
    held: HeldCommand = {
        "command_id": command_id,
        "command": command_json,
        "source": list(source),
        "at": now,
    }
    return {**state, "queued": [*queued_of(state), held]}


def expired(state: ExecutionState, now: float, ttl_seconds: float) -> bool:
    """Whether the workspace's parking is at least `ttl_seconds` old (0: it never expires)."""
    parking = parked_of(state)
    return parking is not None and ttl_seconds > 0 and now - parking["since"] >= ttl_seconds


def release(
    state: ExecutionState, request_id: str | None
) -> tuple[ExecutionState, list[HeldCommand]]:
    """End the parking (an operator's request, or None for its TTL): the workspace is no
    longer parked, and its held commands come back in order to be run. They leave the queue
    one by one as each has run (`unqueue`), not here: a crash mid-release loses none."""
    released = state.get("released") if request_id is None else request_id
    return {**state, "parked": None, "released": released}, queued_of(state)


def unqueue(state: ExecutionState, command_id: str) -> ExecutionState:
    """A held command has run (or was handed on): it leaves the queue."""
    queued = queued_of(state)
    return {**state, "queued": [held for held in queued if held["command_id"] != command_id]}


def drop(
    state: ExecutionState, request_id: str, now: float
) -> tuple[ExecutionState, list[HeldCommand]]:
    """End the parking and its held commands with it: each is finished as skipped; returns
    them in order (for their `action.skipped` entries)."""
    queued = queued_of(state)
    for held in queued:
        state = finish(state, held["command_id"], LedgerKind.ACTION_SKIPPED.value, now)
    return {**state, "parked": None, "queued": [], "released": request_id}, queued


def begun(state: ExecutionState, command_id: str) -> bool:
    """Whether the command was begun before: an attempt failed and the next is scheduled, or
    an operator gave a verdict (a parking holds only commands not begun yet)."""
    return command_id in state["tried"] or command_id in state["approvals"]


def applied(state: ExecutionState, request_id: str) -> bool:
    """Whether this operator release is the last one applied (a copy of it is redelivered)."""
    return state.get("released") == request_id


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
