"""The read models' fold: ledger entries into rows, one handler per kind. Pure.

The projector (projections/projector.py) loads the rows a batch of entries touches, folds the
entries into them here, and writes them back with its position in one transaction. Rows keyed by
workspace, command or playbook run (its workspace's) live on one ledger partition, so folding
each partition in offset order gives the same rows live or replayed, however partitions
interleave. Counters that span partitions (run metrics) are deltas, added in SQL, so their sum
does not depend on order either.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Protocol

from topics.ledger import PLAYBOOK_KINDS, TERMINAL_KINDS, LedgerKind


class Entry(Protocol):
    """What the fold reads of a ledger entry: a `Entry`, or the store's faster decoding
    of one (projections/entries.py)."""

    @property
    def entry_id(self) -> str: ...
    @property
    def kind(self) -> LedgerKind: ...
    @property
    def workspace_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def policy_version(self) -> str | None: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def payload(self) -> dict[str, Any]: ...


# action_history.status: where a command stands.
DECIDED = "decided"
DEFERRED = "deferred"
RUNNING = "running"
RETRYING = "retrying"
BREAKER_DEFERRED = "breaker_deferred"
AWAITING_APPROVAL = "awaiting_approval"
APPROVED = "approved"
# Held behind its workspace's parking (action.parked).
HELD = "held"
FINAL_STATUS = {
    LedgerKind.ACTION_SUCCEEDED: "succeeded",
    LedgerKind.ACTION_SKIPPED: "skipped",
    LedgerKind.ACTION_DEAD_LETTERED: "dead_lettered",
    LedgerKind.ACTION_REJECTED: "rejected",
}
FINAL_STATUSES = frozenset(FINAL_STATUS.values())


@lru_cache(maxsize=65_536)
def iso(moment: datetime) -> str:
    """A timestamp as the tables store it: ISO-8601 UTC with microseconds and a Z."""
    m = moment.astimezone(UTC)
    # Formatted by hand: strftime was a tenth of a replay's time.
    return (
        f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}"
        f".{m.microsecond:06d}Z"
    )


@lru_cache(maxsize=65_536)
def interval_of(moment: datetime, seconds: int) -> str:
    """The start of the metrics interval a moment falls in."""
    epoch = int(moment.timestamp())
    start = datetime.fromtimestamp(epoch - epoch % seconds, UTC)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class WorkspaceRow:
    """workspace_status: the workspace now, as the ledger tells it."""

    workspace_id: str
    health_score: int | None = None
    health_status: str | None = None
    health_at: str | None = None
    last_decision_id: str | None = None
    last_decision_kind: str | None = None
    last_rule_id: str | None = None
    last_action: str | None = None
    last_priority: str | None = None
    last_decided_at: str | None = None
    open_commands: int = 0
    parked_commands: int = 0
    actions_succeeded: int = 0
    actions_dead_lettered: int = 0
    updated_at: str = ""


@dataclass
class ActionRow:
    """action_history: one command, its status and its story."""

    command_id: str
    workspace_id: str
    action: str
    priority: str
    rule_id: str
    decision_id: str | None
    correlation_id: str
    policy_version: str | None
    status: str = ""  # "" while the row is new: neither open nor closed yet
    attempts: int = 0
    decided_at: str | None = None
    first_started_at: str | None = None
    finished_at: str | None = None
    last_error_class: str | None = None
    last_error: str | None = None
    reissued_from: str | None = None
    lifecycle: str = "[]"


@dataclass
class AttemptRow:
    """action_attempts: one attempt of a command."""

    command_id: str
    attempt: int
    worker: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    outcome: str | None = None
    error_class: str | None = None
    error: str | None = None


@dataclass
class BreakerRow:
    """circuit_states: a worker's breaker for one provider."""

    worker: str
    provider: str
    state: str
    failures: int
    changed_at: str


@dataclass
class ParkedRow:
    """parked_workspaces: a workspace parked by a dead letter, until it is released."""

    workspace_id: str
    since: str
    reason: str
    dead_lettered: str
    action: str
    error_class: str
    # Commands held behind the parking.
    queued: int = 0


# The entries that fold into parked_workspaces.
PARKING_KINDS = frozenset(
    {LedgerKind.WORKSPACE_PARKED, LedgerKind.WORKSPACE_RELEASED, LedgerKind.ACTION_PARKED}
)


@dataclass
class SweepRow:
    """sweep_runs: one shard's run of a sweep (its sweep.completed entry)."""

    entry_id: str
    schedule: str
    tick_id: str
    at: str
    shard: int
    requested_by: str | None
    workspaces: int
    evaluated: int
    decisions: int
    actions: int
    suppressed: int
    affected: int
    skipped: int


# playbook_runs.status: a run is running until its playbook.completed or playbook.failed.
PLAYBOOK_RUNNING = "running"
PLAYBOOK_ENDS = {
    # The entry ending a run → the run's status and the step it ends on.
    LedgerKind.PLAYBOOK_COMPLETED: ("completed", "complete"),
    LedgerKind.PLAYBOOK_FAILED: ("failed", "fail"),
}


@dataclass
class PlaybookRow:
    """playbook_runs: one run of a playbook, where it stands (its playbook.* entries)."""

    run_id: str
    workspace_id: str
    playbook: str
    rule_id: str | None
    status: str = PLAYBOOK_RUNNING
    # The step the run is in, or the end it reached ("complete", "fail").
    step: str | None = None
    steps_completed: int = 0
    last_outcome: str | None = None
    started_at: str = ""
    updated_at: str = ""
    ended_at: str | None = None


@dataclass
class IntervalWorkspaceRow:
    """interval_workspaces: a workspace seen in an interval."""

    interval_start: str
    workspace_id: str
    affected: int = 0
    health_status: str | None = None


METRICS = (
    "signals_processed",
    "signals_rejected",
    "decisions_made",
    "decisions_deferred",
    "decisions_suppressed",
    "actions_started",
    "actions_succeeded",
    "actions_failed",
    "actions_dead_lettered",
    "errors",
    "workspaces_affected",
)


@dataclass
class Rows:
    """The rows a batch touches (loaded, or new) and the counters it adds."""

    workspaces: dict[str, WorkspaceRow] = field(default_factory=dict)
    actions: dict[str, ActionRow] = field(default_factory=dict)
    attempts: dict[tuple[str, int], AttemptRow] = field(default_factory=dict)
    breakers: dict[tuple[str, str], BreakerRow] = field(default_factory=dict)
    intervals: dict[tuple[str, str], IntervalWorkspaceRow] = field(default_factory=dict)
    # A workspace parked, or None: released (its row is deleted).
    parked: dict[str, ParkedRow | None] = field(default_factory=dict)
    # Entry id → a sweep run (each entry folds once: no row to read first).
    sweeps: dict[str, SweepRow] = field(default_factory=dict)
    # Run id → a playbook run.
    playbooks: dict[str, PlaybookRow] = field(default_factory=dict)
    # (interval_start, metric) → delta, and (interval_start, priority) → [decisions, actions].
    metrics: Counter[tuple[str, str]] = field(default_factory=Counter)
    priorities: dict[tuple[str, str], list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Keys:
    """What a batch's entries need loaded before they are folded."""

    workspaces: frozenset[str]
    actions: frozenset[str]
    attempts: frozenset[tuple[str, int]]
    intervals: frozenset[tuple[str, str]]
    parked: frozenset[str] = frozenset()
    playbooks: frozenset[str] = frozenset()


def keys_of(entries: Iterable[Entry], interval_seconds: int) -> Keys:
    """The keys of the rows these entries fold into."""
    workspaces, actions, attempts, intervals = set(), set(), set(), set()
    parked, playbooks = set(), set()
    for entry in entries:
        if entry.workspace_id is not None:
            workspaces.add(entry.workspace_id)
            intervals.add((interval_of(entry.recorded_at, interval_seconds), entry.workspace_id))
            if entry.kind in PARKING_KINDS:
                parked.add(entry.workspace_id)
        if entry.kind in PLAYBOOK_KINDS:
            run_id = entry.payload.get("run_id")
            if isinstance(run_id, str):
                playbooks.add(run_id)
        command_id = entry.payload.get("command_id")
        if isinstance(command_id, str):
            actions.add(command_id)
            attempt = entry.payload.get("attempt")
            if isinstance(attempt, int):
                attempts.add((command_id, attempt))
    return Keys(
        frozenset(workspaces),
        frozenset(actions),
        frozenset(attempts),
        frozenset(intervals),
        frozenset(parked),
        frozenset(playbooks),
    )


class Fold:
    """Folds entries into `Rows`, one handler per kind (unknown kinds only count as entries)."""

    def __init__(self, rows: Rows, interval_seconds: int) -> None:
        self.rows = rows
        self._seconds = interval_seconds
        self._interval = ""
        self._handlers: dict[LedgerKind, Callable[[Entry, str], None]] = {
            LedgerKind.DECISION_MADE: self._decided,
            LedgerKind.DECISION_DEFERRED: self._decided,
            LedgerKind.DECISION_SUPPRESSED: self._decided,
            LedgerKind.ACTION_REISSUED: self._reissued,
            LedgerKind.ACTION_STARTED: self._started,
            LedgerKind.ACTION_FAILED: self._failed,
            LedgerKind.ACTION_DEFERRED: self._breaker_deferred,
            LedgerKind.ACTION_APPROVAL_REQUESTED: self._parked,
            LedgerKind.ACTION_APPROVED: self._approved,
            LedgerKind.ACTION_PARKED: self._held,
            LedgerKind.WORKSPACE_PARKED: self._workspace_parked,
            LedgerKind.WORKSPACE_RELEASED: self._workspace_released,
            LedgerKind.BREAKER_OPENED: self._breaker,
            LedgerKind.BREAKER_HALF_OPENED: self._breaker,
            LedgerKind.BREAKER_CLOSED: self._breaker,
            LedgerKind.SIGNAL_REJECTED: self._rejected,
            LedgerKind.SIGNALS_FOLDED: self._folded,
            LedgerKind.SWEEP_COMPLETED: self._swept,
            **{kind: self._playbook for kind in PLAYBOOK_KINDS},
            **{kind: self._finished for kind in TERMINAL_KINDS},
        }

    def add(self, entry: Entry) -> None:
        """Fold one entry (entries arrive de-duplicated, each partition in offset order).

        The payload is read defensively: a field of the wrong type counts as absent, so an
        odd entry is folded as far as it makes sense and never stops the projection.
        """
        at = iso(entry.recorded_at)
        self._interval = interval_of(entry.recorded_at, self._seconds)
        if entry.workspace_id is not None:
            self._workspace(entry.workspace_id).updated_at = at
        handler = self._handlers.get(entry.kind)
        if handler is not None:
            handler(entry, at)

    # Decisions

    def _decided(self, entry: Entry, at: str) -> None:
        payload = entry.payload
        workspace = self._workspace(_workspace_of(entry))
        workspace.last_decision_id = entry.entry_id
        workspace.last_decision_kind = entry.kind.value
        workspace.last_rule_id = _text(payload, "rule_id")
        workspace.last_action = _text(payload, "action")
        workspace.last_priority = _text(payload, "priority")
        workspace.last_decided_at = at
        seen = self._seen(entry)
        inputs = payload.get("input")
        facts = inputs.get("facts") if isinstance(inputs, dict) else None
        score = facts.get("health.score") if isinstance(facts, dict) else None
        if isinstance(score, int) and isinstance(facts, dict):
            workspace.health_score = score
            workspace.health_status = _text(facts, "health.status")
            workspace.health_at = at
            seen.health_status = workspace.health_status
        metric = {
            LedgerKind.DECISION_MADE: "decisions_made",
            LedgerKind.DECISION_DEFERRED: "decisions_deferred",
            LedgerKind.DECISION_SUPPRESSED: "decisions_suppressed",
        }[entry.kind]
        self._count(entry, metric)
        command_id = _text(payload, "command_id")
        if entry.kind is LedgerKind.DECISION_SUPPRESSED or not command_id:
            return
        if not seen.affected:
            seen.affected = 1
            self._count(entry, "workspaces_affected")
        self._priority(entry, _text(payload, "priority"), decisions=1)
        row = self._action(entry, command_id)
        row.decision_id = entry.entry_id
        row.decided_at = row.decided_at or at
        status = DECIDED if entry.kind is LedgerKind.DECISION_MADE else DEFERRED
        self._move(row, status, entry, at)

    # Commands

    def _reissued(self, entry: Entry, at: str) -> None:
        row = self._command(entry)
        if row is None:
            return
        row.reissued_from = _text(entry.payload, "reissued_from")
        row.decided_at = row.decided_at or at
        self._move(row, DECIDED, entry, at)

    def _started(self, entry: Entry, at: str) -> None:
        row = self._command(entry)
        if row is None:
            return
        attempt = _attempt_of(entry.payload)
        row.attempts = max(row.attempts, attempt)
        row.first_started_at = row.first_started_at or at
        self._move(row, RUNNING, entry, at)
        started = self._attempt(row.command_id, attempt)
        started.worker = _text(entry.payload, "worker")
        started.started_at = at
        self._count(entry, "actions_started")

    def _failed(self, entry: Entry, at: str) -> None:
        row = self._command(entry)
        if row is None:
            return
        row.attempts = max(row.attempts, _attempt_of(entry.payload))
        found = entry.payload.get("error")
        error: dict[str, Any] = found if isinstance(found, dict) else {}
        row.last_error_class = _text(error, "class")
        row.last_error = _text(error, "reason")
        # A failure with no next attempt is followed by action.dead_lettered.
        self._move(row, RETRYING if entry.payload.get("retry_at") else row.status, entry, at)
        self._end_attempt(row, entry, at, "failed", error)
        self._count(entry, "actions_failed")
        self._count(entry, "errors")

    def _breaker_deferred(self, entry: Entry, at: str) -> None:
        self._moved(entry, BREAKER_DEFERRED, at)

    def _parked(self, entry: Entry, at: str) -> None:
        self._moved(entry, AWAITING_APPROVAL, at)

    def _approved(self, entry: Entry, at: str) -> None:
        self._moved(entry, APPROVED, at)

    def _held(self, entry: Entry, at: str) -> None:
        self._moved(entry, HELD, at)
        parked = self.rows.parked.get(_workspace_of(entry))
        if parked is not None:
            parked.queued += 1

    def _moved(self, entry: Entry, status: str, at: str) -> None:
        row = self._command(entry)
        if row is not None:
            self._move(row, status, entry, at)

    def _finished(self, entry: Entry, at: str) -> None:
        row = self._command(entry)
        if row is None or row.status in FINAL_STATUSES:
            return  # one terminal outcome per command; a second is not counted twice
        status = FINAL_STATUS[entry.kind]
        if (
            entry.kind is not LedgerKind.ACTION_REJECTED
            and entry.kind is not LedgerKind.ACTION_SKIPPED
        ):
            row.attempts = max(row.attempts, _attempt_of(entry.payload))
        self._move(row, status, entry, at)
        row.finished_at = at
        workspace = self._workspace(row.workspace_id)
        if entry.kind is LedgerKind.ACTION_SUCCEEDED:
            workspace.actions_succeeded += 1
            self._end_attempt(row, entry, at, "succeeded", {})
            self._count(entry, "actions_succeeded")
        elif entry.kind is LedgerKind.ACTION_DEAD_LETTERED:
            workspace.actions_dead_lettered += 1
            self._count(entry, "actions_dead_lettered")
        self._priority(entry, row.priority, actions=1)

    # Parking

    def _workspace_parked(self, entry: Entry, at: str) -> None:
        payload = entry.payload
        workspace_id = _workspace_of(entry)
        self.rows.parked[workspace_id] = ParkedRow(
            workspace_id=workspace_id,
            since=_moment(payload, "since") or at,
            reason=_text(payload, "reason") or "",
            dead_lettered=_text(payload, "dead_lettered") or "",
            action=_text(payload, "action") or "",
            error_class=_text(payload, "error_class") or "",
            queued=_int(payload, "queued", 0),
        )

    def _workspace_released(self, entry: Entry, at: str) -> None:
        self.rows.parked[_workspace_of(entry)] = None

    # Other entries

    def _breaker(self, entry: Entry, at: str) -> None:
        payload = entry.payload
        state = entry.kind.value.removeprefix("breaker.")
        key = (str(payload.get("worker")), str(payload.get("provider")))
        self.rows.breakers[key] = BreakerRow(*key, state, _int(payload, "failures", 0), at)

    def _rejected(self, entry: Entry, at: str) -> None:
        self._count(entry, "signals_rejected")
        self._count(entry, "errors")

    def _folded(self, entry: Entry, at: str) -> None:
        self._count(entry, "signals_processed", _int(entry.payload, "signals", 0))

    def _swept(self, entry: Entry, at: str) -> None:
        payload = entry.payload
        counts = {
            name: _int(payload, name, 0)
            for name in (
                "workspaces",
                "evaluated",
                "decisions",
                "actions",
                "suppressed",
                "affected",
                "skipped",
            )
        }
        self.rows.sweeps[entry.entry_id] = SweepRow(
            entry_id=entry.entry_id,
            schedule=_text(payload, "schedule") or "",
            tick_id=_text(payload, "tick_id") or "",
            at=_moment(payload, "at") or at,
            shard=_int(payload, "shard", -1),
            requested_by=_text(payload, "requested_by"),
            **counts,
        )

    def _playbook(self, entry: Entry, at: str) -> None:
        payload = entry.payload
        run_id = _text(payload, "run_id")
        if not run_id:
            return
        found = payload.get("run")
        run: dict[str, Any] = found if isinstance(found, dict) else {}
        row = self.rows.playbooks.get(run_id)
        if row is None:
            origin = run.get("origin")
            # Started when first seen: its playbook.started, unless the ledger no longer
            # holds it (a retention) or a replay as of a moment cut the run.
            row = self.rows.playbooks[run_id] = PlaybookRow(
                run_id=run_id,
                workspace_id=_workspace_of(entry),
                playbook=_text(payload, "playbook") or _text(run, "playbook") or "",
                rule_id=_text(origin, "rule") if isinstance(origin, dict) else None,
                started_at=at,
            )
        elif row.status != PLAYBOOK_RUNNING or entry.kind is LedgerKind.PLAYBOOK_STARTED:
            return  # a run starts once and ends once; nothing moves it after its end
        ended = PLAYBOOK_ENDS.get(entry.kind)
        # The ending entries name no next step; the run they carry stands on its end.
        row.step = (
            _text(payload, "next")
            or _text(run, "step")
            or (ended[1] if ended is not None else row.step)
        )
        row.updated_at = at
        if entry.kind is LedgerKind.PLAYBOOK_STEP_COMPLETED:
            row.steps_completed += 1
            row.last_outcome = _text(payload, "outcome") or row.last_outcome
        elif ended is not None:
            row.status = ended[0]
            row.ended_at = at

    # Rows

    def _workspace(self, workspace_id: str) -> WorkspaceRow:
        row = self.rows.workspaces.get(workspace_id)
        if row is None:
            row = self.rows.workspaces[workspace_id] = WorkspaceRow(workspace_id)
        return row

    def _seen(self, entry: Entry) -> IntervalWorkspaceRow:
        key = (self._interval, _workspace_of(entry))
        row = self.rows.intervals.get(key)
        if row is None:
            row = self.rows.intervals[key] = IntervalWorkspaceRow(*key)
        return row

    def _command(self, entry: Entry) -> ActionRow | None:
        """The row of the command an action.* entry is about (None: the entry names none)."""
        command_id = _text(entry.payload, "command_id")
        return self._action(entry, command_id) if command_id else None

    def _action(self, entry: Entry, command_id: str) -> ActionRow:
        row = self.rows.actions.get(command_id)
        if row is None:
            payload = entry.payload
            row = self.rows.actions[command_id] = ActionRow(
                command_id=command_id,
                workspace_id=_workspace_of(entry),
                action=_text(payload, "action") or "",
                priority=_text(payload, "priority") or "",
                rule_id=_text(payload, "rule_id") or "",
                decision_id=None,
                correlation_id=entry.correlation_id,
                policy_version=entry.policy_version,
            )
        return row

    def _attempt(self, command_id: str, attempt: int) -> AttemptRow:
        key = (command_id, attempt)
        row = self.rows.attempts.get(key)
        if row is None:
            row = self.rows.attempts[key] = AttemptRow(command_id, attempt)
        return row

    def _end_attempt(
        self, row: ActionRow, entry: Entry, at: str, outcome: str, error: dict[str, Any]
    ) -> None:
        ended = self._attempt(row.command_id, _attempt_of(entry.payload))
        ended.ended_at = at
        ended.outcome = outcome
        ended.error_class = _text(error, "class")
        ended.error = _text(error, "reason")

    def _move(self, row: ActionRow, status: str, entry: Entry, at: str) -> None:
        """Change a command's status, keeping its workspace's open and parked counts."""
        workspace = self._workspace(row.workspace_id)
        workspace.open_commands += _open(status) - _open(row.status)
        workspace.parked_commands += (status == AWAITING_APPROVAL) - (
            row.status == AWAITING_APPROVAL
        )
        row.status = status
        # Appended as text: the story is only ever read whole, by people and reports.
        attempt = entry.payload.get("attempt")
        # Written by hand (json.dumps was a tenth of a replay): `at` and the kind are plain
        # ASCII without quotes, the attempt an int or null.
        number = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else "null"
        step = f'["{at}","{entry.kind.value}",{number}]'
        row.lifecycle = f"{row.lifecycle[:-1]}{',' if row.lifecycle != '[]' else ''}{step}]"

    def _count(self, entry: Entry, metric: str, n: int = 1) -> None:
        self.rows.metrics[(self._interval, metric)] += n

    def _priority(
        self, entry: Entry, priority: str | None, decisions: int = 0, actions: int = 0
    ) -> None:
        key = (self._interval, priority or "")
        counts = self.rows.priorities.setdefault(key, [0, 0])
        counts[0] += decisions
        counts[1] += actions


def _text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    return value if isinstance(value, str) else None


def _int(document: dict[str, Any], key: str, default: int) -> int:
    value = document.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _moment(document: dict[str, Any], key: str) -> str | None:
    """A timestamp of the payload as the tables store it (None: absent or not one)."""
    value = document.get(key)
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return iso(moment) if moment.tzinfo is not None else None


def _attempt_of(payload: dict[str, Any]) -> int:
    return max(1, _int(payload, "attempt", 1))


def _open(status: str) -> int:
    return int(status != "" and status not in FINAL_STATUSES)


def _workspace_of(entry: Entry) -> str:
    # Decisions and action entries always name their workspace (topics/ledger.py).
    return entry.workspace_id or ""
