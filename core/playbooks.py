"""Playbooks: multi-step work as data, and how a run of one moves on. Pure.

A playbook is a list of steps in the policy file (`[[playbooks]]`, part of the policy's
version). A rule that names one starts a run when it fires: the run's id is the decision's,
and its first step's command is the decision's own command. A step is either
- an action: one command, or one per item a listing step before it found (`for_each = "STEP"`,
  a fan-out), then a fan-in: success once `need` of them succeeded (all by default), failure
  once that can no longer happen, or when `deadline_seconds` pass first; or
- a wait (`wait_seconds`): success when the time has passed; with `until` (signal types),
  success on such a signal of the workspace and failure (`timed_out`) when the time passes.
A step then goes to `on_success` or `on_failure`: a later step of the playbook, "complete" or
"fail". Steps only branch forward, so each runs at most once per run and its commands have
fixed ids (the run, the step and the item). A run that fails issues the compensations
(`compensate`) of its succeeded steps, latest first, and ends.

What moves a run is an input the shard's stage reads in offset order: its decision, a step's
outcome (written by the executor onto the shard's control partition), a timer tick reaching
the run's due time, or an awaited signal. Every transition is on the ledger with its cause and
the run as it is after it, so `autopilot policy replay` re-derives each transition from the
one before (`replay_transition`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from topics.commands import Action, Command, Priority
from topics.ids import stable_id
from topics.ledger import LedgerKind, PlaybookKinds
from topics.signals import SignalType

COMPLETE = "complete"
FAIL = "fail"
_ENDS = (COMPLETE, FAIL)
# How a step ended; the first goes on to on_success, the others to on_failure.
SUCCEEDED = "succeeded"
FAILED = "failed"
TIMED_OUT = "timed_out"

_MONTH_SECONDS = 30 * 86_400
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]

# A run as kept in its workspace's state and recorded on the ledger (JSON).
Run = dict[str, Any]


class Step(BaseModel):
    """One step: an action (maybe fanned out) or a wait; where it goes on success and failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Name
    description: str = Field(default="", max_length=200)
    action: Action | None = None
    # Fan out over the items the named earlier (listing) step found.
    for_each: Name | None = None
    # Fan-in: how many of the step's commands must succeed.
    need: Annotated[int, Field(ge=1)] | Literal["all"] = "all"
    deadline_seconds: int | None = Field(default=None, ge=1, le=_MONTH_SECONDS)
    wait_seconds: int | None = Field(default=None, ge=1, le=_MONTH_SECONDS)
    until: tuple[SignalType, ...] = ()
    on_success: Name = COMPLETE
    on_failure: Name = FAIL
    # Run when the playbook fails after this step succeeded.
    compensate: Action | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        if (self.action is None) == (self.wait_seconds is None):
            raise ValueError(f"step {self.id}: give either `action` or `wait_seconds`")
        if self.action is None and (
            self.for_each or self.deadline_seconds or self.compensate or self.need != "all"
        ):
            raise ValueError(
                f"step {self.id}: for_each, need, deadline_seconds and compensate belong to an "
                "action step"
            )
        if self.until and self.wait_seconds is None:
            raise ValueError(f"step {self.id}: `until` belongs to a wait step")
        if self.need != "all" and self.for_each is None:
            raise ValueError(f"step {self.id}: `need` belongs to a fan-out (for_each) step")
        if self.id in _ENDS:
            raise ValueError(f"step id {self.id} is reserved for the end of a run")
        return self


class Playbook(BaseModel):
    """A playbook: its steps, the first of which a starting decision's command runs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Name
    description: str = Field(default="", max_length=200)
    steps: tuple[Step, ...] = Field(min_length=1, max_length=32)

    @model_validator(mode="after")
    def _well_formed(self) -> Playbook:
        first = self.steps[0]
        if first.action is None or first.for_each is not None:
            raise ValueError(
                f"playbook {self.id}: the first step must be a single action (the starting "
                "decision's command)"
            )
        seen: dict[str, Step] = {}
        ids = [step.id for step in self.steps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"playbook {self.id}: step ids must be unique")
        for index, step in enumerate(self.steps):
            later = set(ids[index + 1 :]) | set(_ENDS)
            for branch in (step.on_success, step.on_failure):
                if branch not in later:
                    raise ValueError(
                        f"playbook {self.id}: step {step.id} goes to {branch}, which is not a "
                        f"later step, {COMPLETE!r} or {FAIL!r} (steps only branch forward)"
                    )
            if step.for_each is not None:
                listed = seen.get(step.for_each)
                if listed is None or listed.action is None or listed.for_each is not None:
                    raise ValueError(
                        f"playbook {self.id}: step {step.id} fans out over {step.for_each}, "
                        "which is not an earlier single-action step"
                    )
            seen[step.id] = step
        return self

    def step(self, step_id: str) -> Step:
        """The step with this id (KeyError if none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


@dataclass(frozen=True, slots=True)
class StepCommand:
    """A command a transition issues: a step's (one per item of a fan-out) or a compensation."""

    command_id: str
    step: str
    action: Action
    target: str | None


@dataclass(frozen=True, slots=True)
class Moved:
    """One ledger entry of a transition."""

    kind: PlaybookKinds
    step: str | None
    outcome: str | None
    next: str | None
    commands: tuple[StepCommand, ...]


@dataclass(frozen=True, slots=True)
class Advance:
    """What one input did to a run: its entries, the commands to issue, the run after it."""

    run: Run
    moves: tuple[Moved, ...]

    @property
    def ended(self) -> bool:
        """Whether the run completed or failed."""
        return self.run["step"] in _ENDS

    @property
    def commands(self) -> list[StepCommand]:
        """Every command the transition issues, in order."""
        return [command for move in self.moves for command in move.commands]


@dataclass(frozen=True, slots=True)
class Origin:
    """The decision that started a run, which its commands carry."""

    decision_id: str
    rule_id: str
    lane: Priority
    signal_id: str
    dry_run: bool


def start(
    playbook: Playbook, run_id: str, workspace_id: str, origin: Origin, command_id: str, at: int
) -> Advance:
    """A new run, its first step's command being `command_id` (the starting decision's)."""
    first = playbook.steps[0]
    assert first.action is not None  # the playbook's validator made sure
    run: Run = {
        "id": run_id,
        "playbook": playbook.id,
        "workspace": workspace_id,
        "origin": {
            "decision": origin.decision_id,
            "rule": origin.rule_id,
            "lane": origin.lane.value,
            "signal": origin.signal_id,
            "dry_run": origin.dry_run,
        },
        "started": at,
        "succeeded": [],
        "found": {},
    }
    commands = (StepCommand(command_id, first.id, first.action, None),)
    _enter_action(run, first, list(commands), at)
    return Advance(run, (Moved(LedgerKind.PLAYBOOK_STARTED, None, None, first.id, commands),))


def on_outcome(
    playbook: Playbook,
    run: Run,
    command_id: str,
    succeeded: bool,
    items: Sequence[str],
    at: int,
) -> Advance | None:
    """A command of the run ended; None when it is not one the current step waits for (a
    copy, or a fan-out's straggler after its step ended)."""
    if command_id not in run.get("pending", {}):
        return None
    run = copy.deepcopy(run)
    del run["pending"][command_id]
    run["ended"][command_id] = succeeded
    step = playbook.step(run["step"])
    if succeeded and step.for_each is None and items:
        run["found"][step.id] = list(items)
    total = run["total"]
    need = total if step.need == "all" else min(step.need, total)
    done = sum(run["ended"].values())
    if done >= need:
        return _leave(playbook, run, step, SUCCEEDED, at)
    if total - (len(run["ended"]) - done) < need:
        return _leave(playbook, run, step, FAILED, at)
    return Advance(run, ())


def on_due(playbook: Playbook, run: Run, at: int) -> Advance | None:
    """A timer tick at `at`: the current step's wait or deadline, if it is due."""
    due = run.get("due")
    if due is None or at < due:
        return None
    run = copy.deepcopy(run)
    step = playbook.step(run["step"])
    passed = step.action is None and not step.until
    return _leave(playbook, run, step, SUCCEEDED if passed else TIMED_OUT, at)


def on_signal(playbook: Playbook, run: Run, signal_type: str, at: int) -> Advance | None:
    """A signal of the workspace: ends a wait for its type (one not older than the wait)."""
    if signal_type not in run.get("until", ()) or at < run["since"]:
        return None
    run = copy.deepcopy(run)
    return _leave(playbook, run, playbook.step(run["step"]), SUCCEEDED, at)


def awaits(run: Run) -> tuple[str, ...]:
    """The signal types the run's current step waits for."""
    return tuple(run.get("until", ()))


def command_of_step(
    run: Run, command: StepCommand, workspace_id: str, policy_version: str
) -> Command:
    """The Command a step issues, carrying its run and its starting decision."""
    origin = run["origin"]
    return Command(
        command_id=command.command_id,
        decision_id=origin["decision"],
        workspace_id=workspace_id,
        action=command.action,
        priority=Priority(origin["lane"]),
        rule_id=origin["rule"],
        policy_version=policy_version,
        signal_ids=(origin["signal"],),
        correlation_id=origin["signal"],
        dry_run=origin["dry_run"],
        playbook_run=run["id"],
        target=command.target,
    )


def replay_transition(playbook: Playbook, before: Run, cause: Mapping[str, Any]) -> Advance | None:
    """The transition a recorded cause makes from the run as it was recorded before it. A
    fan-in's cause lists the step's outcomes that came before it, which moved no entry."""
    kind = cause.get("kind")
    at = int(cause["at"])
    if kind == "outcome":
        run = before
        for earlier, ok in cause.get("earlier", ()):
            moved = on_outcome(playbook, run, earlier, ok, (), at)
            if moved is None or moved.moves:
                return None  # not how the run went: an earlier outcome would have moved it
            run = moved.run
        return on_outcome(
            playbook, run, cause["id"], cause["succeeded"], cause.get("items", ()), at
        )
    if kind == "due":
        return on_due(playbook, before, at)
    if kind == "signal":
        return on_signal(playbook, before, cause["type"], at)
    return None


def _leave(playbook: Playbook, run: Run, step: Step, outcome: str, at: int) -> Advance:
    """End the current step, then enter the steps it leads to (a fan-out over nothing ends at
    once and goes on) until one waits or the run ends."""
    moves: list[Moved] = []
    while True:
        ended = step
        if outcome == SUCCEEDED:
            run["succeeded"].append(ended.id)
        target = ended.on_success if outcome == SUCCEEDED else ended.on_failure
        if target in _ENDS:
            moves.append(Moved(LedgerKind.PLAYBOOK_STEP_COMPLETED, ended.id, outcome, target, ()))
            moves.append(_end(playbook, run, target, at))
            return Advance(run, tuple(moves))
        step = playbook.step(target)
        commands = _enter(run, step, at)
        moves.append(
            Moved(LedgerKind.PLAYBOOK_STEP_COMPLETED, ended.id, outcome, step.id, commands)
        )
        if commands or step.action is None:
            return Advance(run, tuple(moves))
        # A fan-out over nothing: the step succeeds with nothing to do.
        outcome = SUCCEEDED


def _enter(run: Run, step: Step, at: int) -> tuple[StepCommand, ...]:
    """Enter a step: its commands, and when it is due."""
    if step.action is None:
        run.update(
            step=step.id,
            since=at,
            due=at + (step.wait_seconds or 0),
            until=[t.value for t in step.until],
            pending={},
            ended={},
            total=0,
        )
        return ()
    items: list[str | None] = (
        [None] if step.for_each is None else list(run["found"].get(step.for_each, ()))
    )
    commands = [
        StepCommand(stable_id("pbc", run["id"], step.id, item or ""), step.id, step.action, item)
        for item in items
    ]
    _enter_action(run, step, commands, at)
    return tuple(commands)


def _enter_action(run: Run, step: Step, commands: list[StepCommand], at: int) -> None:
    run.update(
        step=step.id,
        since=at,
        due=None if step.deadline_seconds is None else at + step.deadline_seconds,
        until=[],
        pending={command.command_id: command.target or "" for command in commands},
        ended={},
        total=len(commands),
    )


def _end(playbook: Playbook, run: Run, target: str, at: int) -> Moved:
    run.update(step=target, since=at, due=None, until=[], pending={}, total=0)
    if target == COMPLETE:
        return Moved(LedgerKind.PLAYBOOK_COMPLETED, None, None, None, ())
    compensations = tuple(
        StepCommand(stable_id("pbc", run["id"], step.id, "compensate"), step.id, action, None)
        for step in (playbook.step(step_id) for step_id in reversed(run["succeeded"]))
        if (action := step.compensate) is not None
    )
    return Moved(LedgerKind.PLAYBOOK_FAILED, None, None, None, compensations)
