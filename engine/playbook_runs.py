"""A shard's playbook runs in its stage: started by decisions, moved on by step outcomes, due
times and awaited signals (core/playbooks.py says how).

A run lives in its workspace's state (`playbooks`: run id → run) while it runs, so it commits,
and moves to a new owner, with the workspace; its wait or deadline is a key of the shard's timers
(engine/shard_timers.py). Every transition is recorded on the workspace's decision chain with
the commands it issues, in the batch's transaction: a run moves exactly once per input, however
often a batch is read again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from core.ledger_entries import playbook_entry
from core.playbooks import (
    COMPLETE,
    FAIL,
    Advance,
    Origin,
    Playbook,
    Run,
    awaits,
    command_of_step,
    on_due,
    on_outcome,
    on_signal,
    start,
)
from core.policy import Decision
from core.rules import Policy
from core.windows import WorkspaceState
from engine.shard_timers import DueRun, ShardTimers
from topics.approvals import ParkingRequest
from topics.commands import Command
from topics.control import StepOutcome
from topics.ids import stable_id
from topics.ledger import LedgerEntry
from topics.signals import Signal


class PlaybookRuns:
    """One batch's view of its shard's runs; it records and issues through the batch."""

    def __init__(
        self,
        policy: Policy,
        state_of: Callable[[str], WorkspaceState],
        record: Callable[[LedgerEntry], None],
        issue: Callable[[Command], None],
        park: Callable[[ParkingRequest], None],
        timers: ShardTimers,
        tally: Counter[tuple[str, ...]],
        now: datetime,
    ) -> None:
        self.policy = policy
        self.state_of = state_of
        self.record = record
        self.issue = issue
        self.park = park
        self.timers = timers
        self.tally = tally
        self.now = now

    def start(self, playbook: Playbook, decision: Decision, command: Command) -> Command:
        """Start a run for a decision that issued `command` (its first step's); the command
        to issue, now carrying its run."""
        at = decision.inputs.at
        origin = Origin(
            decision.decision_id,
            decision.rule_id,
            decision.lane,
            decision.inputs.signal_id,
            decision.dry_run,
        )
        advance = start(
            playbook, decision.decision_id, decision.workspace_id, origin, command.command_id, at
        )
        cause = {"kind": "decision", "id": decision.decision_id, "at": at}
        self.tally["playbook", playbook.id, "started"] += 1
        self._apply(decision.workspace_id, None, advance, cause, issue=False)
        return command.model_copy(update={"playbook_run": decision.decision_id})

    def outcome(self, outcome: StepOutcome) -> None:
        """A step's command ended (a copy, or one the run no longer waits for, does nothing)."""
        found = self._run(outcome.workspace_id, outcome.run_id)
        if found is None:
            return
        playbook, run = found
        at = int(outcome.at.timestamp())
        advance = on_outcome(
            playbook, run, outcome.command_id, outcome.succeeded, outcome.items, at
        )
        if advance is None:
            self.tally["playbook_ignored", "copy"] += 1
            return
        cause: dict[str, Any] = {
            "kind": "outcome",
            "id": outcome.command_id,
            "at": at,
            "succeeded": outcome.succeeded,
            "ended": outcome.ended,
        }
        if outcome.items:
            cause["items"] = list(outcome.items)
        if run["ended"]:
            # The step's earlier outcomes, which moved nothing: a replay applies them first.
            cause["earlier"] = [[command_id, ok] for command_id, ok in run["ended"].items()]
        self._apply(outcome.workspace_id, run.get("due"), advance, cause)

    def due(self, item: DueRun) -> None:
        """A run's wait or deadline reached (unless the run moved on since it was set)."""
        found = self._run(item.workspace_id, item.run_id)
        if found is None or found[1].get("due") != item.due:
            return
        playbook, run = found
        advance = on_due(playbook, run, item.due)
        if advance is not None:
            cause = {"kind": "due", "id": stable_id("due", run["id"], item.due), "at": item.due}
            self._apply(item.workspace_id, item.due, advance, cause)

    def signal(self, signal: Signal) -> None:
        """A signal of a type some step may wait for: the workspace's waiting runs see it."""
        runs = self.state_of(signal.workspace_id).get("playbooks")
        if not runs:
            return
        at = int(signal.occurred_at.timestamp())
        for run_id in [run_id for run_id, run in runs.items() if signal.type in awaits(run)]:
            found = self._run(signal.workspace_id, run_id)
            if found is None:
                continue
            playbook, run = found
            advance = on_signal(playbook, run, signal.type.value, at)
            if advance is not None:
                cause = {"kind": "signal", "id": signal.id, "type": signal.type.value, "at": at}
                self._apply(signal.workspace_id, run.get("due"), advance, cause)

    def _parking(
        self, workspace_id: str, run: Run, advance: Advance, cause: dict[str, Any]
    ) -> None:
        """Ask the shard's executor to park the workspace of a run that failed."""
        ended = next(move for move in advance.moves if move.next == FAIL)
        step = self.policy.playbooks[run["playbook"]].step(ended.step or "")
        self.park(
            ParkingRequest(
                workspace_id=workspace_id,
                run_id=run["id"],
                playbook=run["playbook"],
                step=step.id,
                outcome=ended.outcome or "",
                action="wait" if step.action is None else step.action.value,
                command_id=cause["id"] if cause["kind"] == "outcome" else run["id"],
                requested_at=datetime.fromtimestamp(cause["at"], UTC),
            )
        )

    def _run(self, workspace_id: str, run_id: str) -> tuple[Playbook, Run] | None:
        """A running run and its playbook; None when it is not running here, or the policy
        no longer has its playbook or its current step (it stays as it is)."""
        run = self.state_of(workspace_id).get("playbooks", {}).get(run_id)
        if run is None:
            self.tally["playbook_ignored", "unknown_run"] += 1
            return None
        playbook = self.policy.playbooks.get(run["playbook"])
        if playbook is None or run["step"] not in {step.id for step in playbook.steps}:
            self.tally["playbook_ignored", "unknown_playbook"] += 1
            return None
        return playbook, run

    def _apply(
        self,
        workspace_id: str,
        due_before: int | None,
        advance: Advance,
        cause: dict[str, Any],
        *,
        issue: bool = True,
    ) -> None:
        """Record the transition, issue its commands and keep the run (or drop it, ended)."""
        run = advance.run
        version = self.policy.version
        for move in advance.moves:
            self.record(playbook_entry(run, move, cause, version, self.now))
        if issue:
            for command in advance.commands:
                self.issue(command_of_step(run, command, workspace_id, version))
        state = self.state_of(workspace_id)
        runs = state.setdefault("playbooks", {})
        if advance.ended:
            runs.pop(run["id"], None)
            if not runs:
                del state["playbooks"]
            ended = "completed" if run["step"] == COMPLETE else "failed"
            self.tally["playbook", run["playbook"], ended] += 1
            if run["step"] == FAIL and self.policy.spec.parking.playbooks:
                self._parking(workspace_id, run, advance, cause)
            return
        runs[run["id"]] = run
        if run["due"] is not None and run["due"] != due_before:
            self.timers.arm_run(workspace_id, run["id"], run["due"])
