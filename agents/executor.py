"""The executor: carries commands out one workspace at a time, idempotently, and records how.

For each command, under its workspace's lock (other workspaces of the shard go on meanwhile):
1. A command already finished, or an attempt already superseded, does nothing (idempotency by
   command_id, remembered in the `executions` table).
2. Dry-run: `action.skipped` with what it would have done; nothing outside is touched.
3. A workspace parked by a dead letter (or a playbook's failed run) holds the command:
   `action.parked`, and it waits in the table, in the order it came, until an operator
   releases the workspace (the held commands then run in that order) or drops them (each
   `action.skipped`), or until the parking is older than the policy's `[parking]
   ttl_seconds` when the workspace's next command comes. Commands begun before the parking go
   on: the next attempt of a failed one, one an operator approved (it asked before the
   parking: a held command asks once released), a re-issued one (`autopilot dlq replay`, an
   operator's own act), and the compensations of the failed run that parked it.
4. A compliance-tagged action waits, parked in the table, for an operator's approval.
5. A live lease of another worker (the shard moved while it acted) is waited out, until it
   expires or the ledger shows how that attempt ended.
6. Its provider's circuit breaker open: `action.deferred` and back on `commands.retry` for when
   the breaker half-opens; no attempt is used.
7. The lease is written and flushed, `action.started`, then the handler runs. Done ->
   `action.succeeded`; retryable -> the next attempt on `commands.retry` after a backoff, then
   `action.failed`; terminal or out of attempts -> `commands.dlq` and `action.dead_lettered`,
   then, for an action the policy's `[parking] actions` name, `workspace.parked`.
Every ledger entry and record is on the broker before the table is written and the command's
record acked, so a crash at any point repeats at most an attempt whose outside effect the
Idempotency-Key de-duplicates.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from actions import spec_of
from actions.breakers import Breakers
from actions.content import ContentWriter
from actions.reconciler import (
    ActionContext,
    ActionError,
    ActionSpec,
    Done,
    NotConfiguredError,
    NotReadyError,
    TerminalError,
    WorkspaceSnapshot,
)
from agents.dead_letter_writer import DeadLetterWriter
from agents.emit import record_sender, send_entry, send_step_outcome
from agents.faust_app import Autopilot
from agents.ledger_watch import LedgerWatch
from core import execution_state as memory
from core.backoff import next_wait
from core.breaker import BreakerState
from core.execution_state import ExecutionState, Lease
from core.health import health_of
from core.ledger_entries import (
    approval_requested_entry,
    breaker_entry,
    dead_lettered_entry,
    deferred_entry,
    error_of,
    failed_entry,
    held_entry,
    parked_entry,
    parking_id,
    reissued_entry_of,
    released_entry,
    run_parked_entry,
    skipped_entry,
    started_entry,
    succeeded_entry,
    verdict_entry,
)
from core.rules import Parking
from core.windows import SourcePosition, WorkspaceState
from topics import headers
from topics.approvals import ApprovalGiven, ParkingRelease, ParkingRequest, Verdict
from topics.commands import Command
from topics.control import StepOutcome, found_items
from topics.headers import header_of
from topics.ledger import ActionDeadLettered, CommandPayload, LedgerEntry, LedgerKind

logger = logging.getLogger(__name__)

# How often a waiting worker looks on the ledger for the end of another's leased attempt.
LEASE_POLL_SECONDS = 2.0
# Commands deferred by an open breaker come back spread over this much more than its cool-down.
DEFER_SPREAD_SECONDS = 1.0
# Why a command held behind a parking ended when an operator dropped the parking.
DROPPED = "dropped by operator"


class Executor:
    """Runs commands for the shards this worker owns; one per workspace at a time."""

    def __init__(
        self,
        autopilot: Autopilot,
        state_of: Callable[[str], WorkspaceState | None],
        bootstrap: str,
        parking: Parking,
        playbook_rules: frozenset[str] = frozenset(),
    ) -> None:
        settings = autopilot.settings
        self._autopilot = autopilot
        self._producer = autopilot.app.producer
        self._dead_letters = DeadLetterWriter(
            record_sender(autopilot), autopilot.commands_dlq.get_topic_name()
        )
        self._table = autopilot.executions
        # A workspace's state, when this worker runs its shard's signals (for content only).
        self._state_of = state_of
        self._config = settings.executor_config()
        self._retry = settings.retry_policy()
        self._ttl = settings.lease_ttl_seconds
        self._horizon = settings.idempotency_horizon_hours * 3600
        self._approval_tags = settings.approval_tags
        self._parks = frozenset(action.value for action in parking.actions)
        self._parking_ttl = parking.ttl_seconds
        # A playbook's commands carry its starting rule: their dead letters park nothing (the
        # playbook's branches handle them), also when read off the ledger after a crash.
        self._playbook_rules = playbook_rules
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.breakers = Breakers(settings.breaker_config(), self._breaker_changed)
        self._watch = LedgerWatch(
            bootstrap, autopilot.ledger.get_topic_name(), settings.kafka_security()
        )
        self._running = asyncio.Semaphore(settings.executor_concurrency)
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        self._generation: dict[int, int] = {}
        self._stopping = False
        self._random = random.Random()
        self._http: aiohttp.ClientSession | None = None
        self._content: ContentWriter | None = None
        # (action, outcome) → entries this worker recorded: started, succeeded, failed, ...
        self.outcomes: Counter[tuple[str, str]] = Counter()

    def revoked(self, partition: int) -> None:
        """The shard moved away: work begun for it must not write its table or ack any more."""
        self._generation[partition] = self._generation.get(partition, 0) + 1

    def stopping(self) -> None:
        """The worker stops: work under way records its outcome but writes no table, acks none."""
        self._stopping = True

    def generation(self, partition: int) -> int:
        """The partition's current assignment generation (-1 once the worker stops)."""
        return -1 if self._stopping else self._generation.get(partition, 0)

    async def carry_out(self, event: Any, command: Command, source: SourcePosition) -> None:
        """Run one command to the end of this step and ack its record (unless the shard moved)."""
        if self._stopping:
            return  # handed over as the worker stops: unacked, the shard's next owner runs it
        began = self.generation(source.partition)
        async with self._workspace(command.workspace_id):
            if self.generation(source.partition) != began:
                return  # unacked: the shard's next owner gets the record again
            reissued = await self._note_reissue(event, command)
            settled = await self._step(command, source, began, hold=not reissued)
        if settled and self.generation(source.partition) == began:
            event.ack()

    async def _note_reissue(self, event: Any, command: Command) -> bool:
        """Append the action.reissued entry a re-issued command carries, before it runs (again
        for a copy not yet finished: the same entry id, which readers keep once). Whether the
        command is a re-issued one."""
        raw = header_of(event.message.headers, headers.REISSUE)
        if raw is None:
            return False
        if memory.finished(self._load(command.workspace_id), command.command_id) is not None:
            return True
        entry = reissued_entry_of(raw, command)
        if entry is None:
            logger.warning(
                "re-issued command carries an unreadable action.reissued entry; runs without it",
                extra={"workspace_id": command.workspace_id, "command_id": command.command_id},
            )
            return True
        await self._record(entry)
        return True

    async def give_verdict(self, event: Any, approval: ApprovalGiven, partition: int) -> None:
        """Apply an operator's verdict: record it, then run or end the parked command."""
        if self._stopping:
            return  # as in carry_out
        began = self.generation(partition)
        async with self._workspace(approval.workspace_id):
            if self.generation(partition) != began:
                return
            state = self._load(approval.workspace_id)
            state, parked = memory.give_verdict(
                state, approval.command_id, approval.verdict, approval.by or "operator", time.time()
            )
            if parked is None:
                logger.warning(
                    "verdict for a command not awaiting approval ignored",
                    extra={
                        "workspace_id": approval.workspace_id,
                        "command_id": approval.command_id,
                    },
                )
                event.ack()
                return
            command = Command.model_validate_json(parked)
            approved = approval.verdict is Verdict.APPROVED
            if not approved:
                await self._report_step(command, LedgerKind.ACTION_REJECTED, succeeded=False)
            await self._record(
                verdict_entry(
                    command, _now(), approved, approval.by or "operator", approval.reason or ""
                )
            )
            if not approved:
                state = memory.finish(
                    state, command.command_id, LedgerKind.ACTION_REJECTED.value, time.time()
                )
            self._save(approval.workspace_id, state)
            await self._producer.flush()
            source = SourcePosition("approvals", partition, -1)
            settled = await self._step(command, source, began) if approved else True
        if settled and self.generation(partition) == began:
            event.ack()

    async def stop(self) -> None:
        """Close the outside clients."""
        await self._watch.stop()
        if self._content is not None:
            await self._content.close()
        if self._http is not None:
            await self._http.close()

    async def _step(
        self, command: Command, source: SourcePosition, began: int, hold: bool = True
    ) -> bool:
        """One pass over the command; True when its record may be acked. `hold`: a parked
        workspace holds it (not for a held command being released, nor a re-issued one)."""
        workspace_id = command.workspace_id
        state = self._load(workspace_id)
        ended = memory.finished(state, command.command_id)
        if ended is not None or memory.superseded(state, command.command_id, command.attempt):
            logger.info(
                "command already carried out, copy ignored",
                extra={
                    "workspace_id": workspace_id,
                    "command_id": command.command_id,
                    "attempt": command.attempt,
                    "ended": ended,
                },
            )
            return True
        spec = spec_of(command.action)
        if command.dry_run:
            would = spec.describe(command, self._config)
            await self._report_step(command, LedgerKind.ACTION_SKIPPED, succeeded=True)
            await self._record(skipped_entry(command, _now(), "dry_run", would))
            return await self._settle(
                workspace_id,
                memory.finish(state, command.command_id, LedgerKind.ACTION_SKIPPED, time.time()),
                source,
                began,
            )
        if (
            hold
            and (memory.parked_of(state) is not None or memory.queued_of(state))
            and not memory.begun(state, command.command_id)
            and not memory.parked_by_run(state, command.playbook_run)
        ):
            return await self._hold(command, state, source, began)
        tags = spec.tags & self._approval_tags
        if tags:
            verdict = memory.approval_of(state, command.command_id)
            if verdict is None:
                if command.command_id in state["pending"]:
                    return True  # a copy of a parked command: it waits once
                would = spec.describe(command, self._config)
                await self._record(approval_requested_entry(command, _now(), tags, would))
                logger.warning(
                    "action waits for approval",
                    extra={"workspace_id": workspace_id, "command_id": command.command_id},
                )
                parked = memory.park(state, command.command_id, command.model_dump_json())
                stored = await self._settle(workspace_id, parked, source, began)
                # The table is where the parked command lives once its record is acked.
                await self._producer.flush()
                return stored
            if verdict is Verdict.REJECTED:
                return True
        lease = memory.lease_of(state)
        if lease is not None:
            # Settling clears the lease: one still here is an attempt that did not settle (its
            # worker died, or the shard moved mid-call, maybe back to this worker).
            settled = await self._settle_lease(lease, source.partition, began, workspace_id)
            if settled is None:
                return False
            return await self._step(command, source, began, hold)
        wait = await self.breakers.admit(spec.provider)
        if wait is not None:
            await self._defer(command, spec.provider, wait)
            return True
        return await self._attempt(command, spec, state, source, began)

    async def _attempt(
        self,
        command: Command,
        spec: ActionSpec,
        state: ExecutionState,
        source: SourcePosition,
        began: int,
    ) -> bool:
        # The slot covers the whole attempt: with one slot, commands run (and are recorded)
        # in the order they were handed over, which is the lanes' priority order.
        async with self._running:
            if self.generation(source.partition) != began:
                return False  # the shard moved while this waited for a slot: not ours to start
            now = time.time()
            until = now + self._ttl
            lease = Lease(command.command_id, command.attempt, self.holder, now, until)
            self._save(command.workspace_id, memory.take_lease(state, lease))
            started = started_entry(command, _now(), _at(until), self.holder)
            await send_entry(self._autopilot, started)
            self._count(started)
            # The lease (and action.started) are on the broker before anything outside is
            # touched: a new owner of the shard finds it even if this worker dies mid-call.
            await self._producer.flush()
            result = await self._run_handler(command, spec)
            await self._count_for_breaker(spec, result)
            return await self._conclude(command, result, state, source, began)

    async def _conclude(
        self,
        command: Command,
        result: Done | ActionError,
        state: ExecutionState,
        source: SourcePosition,
        began: int,
    ) -> bool:
        now = time.time()
        if isinstance(result, Done):
            await self._report_step(
                command, LedgerKind.ACTION_SUCCEEDED, succeeded=True, detail=result.detail
            )
            await self._record(succeeded_entry(command, _now(), result.detail))
            state = memory.finish(state, command.command_id, LedgerKind.ACTION_SUCCEEDED, now)
            return await self._settle(command.workspace_id, state, source, began)
        wait = None
        if result.retryable:
            wait = next_wait(
                self._retry, command.attempt, self._random.random(), _retry_after(result)
            )
        if wait is not None:
            retry_at = _at(now + wait)
            # The next attempt is queued before action.failed says it will run: a new owner
            # that finds action.failed on the ledger takes the next attempt as queued.
            await self._send_retry(
                command.model_copy(update={"attempt": command.attempt + 1, "not_before": retry_at})
            )
            await self._record(failed_entry(command, _now(), result, retry_at))
            state = memory.record_attempt(state, command.command_id, command.attempt, now)
            return await self._settle(command.workspace_id, state, source, began)
        await self._report_step(command, LedgerKind.ACTION_DEAD_LETTERED, succeeded=False)
        dead = await self._dead_letter(command, result, source)
        state = memory.finish(state, command.command_id, LedgerKind.ACTION_DEAD_LETTERED, now)
        if command.playbook_run is None:
            # A playbook's step does not park its workspace: the playbook's branches handle it.
            state = await self._park(dead, command.action.value, state)
        return await self._settle(command.workspace_id, state, source, began)

    async def _run_handler(self, command: Command, spec: ActionSpec) -> Done | ActionError:
        context = ActionContext(
            command=command,
            workspace=self._snapshot(command.workspace_id),
            config=self._config,
            http=self._session(),
            content=self._writer(),
            now=_now(),
        )
        try:
            return await spec.handler(context)
        except ActionError as error:
            logger.warning(
                "action attempt failed",
                extra={
                    "workspace_id": command.workspace_id,
                    "command_id": command.command_id,
                    "correlation_id": command.correlation_id,
                    "attempt": command.attempt,
                    "error": type(error).__name__,
                    "retryable": error.retryable,
                },
            )
            return error
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A handler bug is this command's problem, not the worker's: dead-letter it
            # (replayable once fixed) rather than crash on it at every redelivery.
            logger.exception(
                "action handler crashed",
                extra={"workspace_id": command.workspace_id, "command_id": command.command_id},
            )
            return TerminalError(
                f"the {command.action.value} handler failed unexpectedly "
                f"({type(exc).__name__}); see the worker log"
            )

    async def _count_for_breaker(self, spec: ActionSpec, result: Done | ActionError) -> None:
        if isinstance(result, Done):
            await self.breakers.record(spec.provider, ok=True)
        elif isinstance(result, NotConfiguredError):
            return  # nothing was called
        elif isinstance(result, NotReadyError):
            await self.breakers.record(result.provider or spec.provider, ok=True)
        else:
            # A terminal answer is still an answer: the provider is up.
            await self.breakers.record(result.provider or spec.provider, ok=not result.retryable)

    async def _settle_lease(
        self, lease: Lease, partition: int, began: int, workspace_id: str
    ) -> ExecutionState | None:
        """Settle a lease left by an attempt that did not: by its outcome on the ledger, else
        once it is not a live lease of another worker. None if the shard moved meanwhile."""
        waiting = False
        while True:
            if self.generation(partition) != began:
                return None
            ended = await self._watch.ended(partition, lease)
            if ended is not None:
                # Likely written by the worker that took the lease, maybe after this one read
                # the partition's chain heads: read them again before writing there, or this
                # workspace's next entry forks its chain from the entry before that outcome.
                self._autopilot.chain.forget([partition])
            state = self._load(workspace_id)
            if ended is LedgerKind.ACTION_FAILED:
                state = memory.record_attempt(state, lease.command_id, lease.attempt, time.time())
            elif ended is not None:
                state = memory.finish(state, lease.command_id, ended.value, time.time())
                if ended is LedgerKind.ACTION_DEAD_LETTERED:
                    parked = await self._parked_by_ledger(partition, lease, state)
                    if parked is None:
                        await asyncio.sleep(LEASE_POLL_SECONDS)
                        continue
                    state = parked
            elif memory.foreign_lease(state, self.holder, time.time()) is not None:
                if not waiting:
                    waiting = True
                    logger.info(
                        "workspace leased by another worker, waiting",
                        extra={"workspace_id": workspace_id, "command_id": lease.command_id},
                    )
                await asyncio.sleep(min(LEASE_POLL_SECONDS, max(0.0, lease.until - time.time())))
                continue
            else:
                logger.warning(
                    "lease left without an outcome on the ledger: the attempt runs again",
                    extra={"workspace_id": workspace_id, "command_id": lease.command_id},
                )
                state = {**state, "lease": None}
            if self.generation(partition) != began:
                return None
            self._save(workspace_id, state)
            return state

    async def _defer(self, command: Command, provider: str, wait: float) -> None:
        until = _at(time.time() + wait + self._random.random() * DEFER_SPREAD_SECONDS)
        await self._record(deferred_entry(command, _now(), provider, until))
        await self._send_retry(command.model_copy(update={"not_before": until}))

    async def _dead_letter(
        self, command: Command, error: ActionError, source: SourcePosition
    ) -> ActionDeadLettered:
        summary = error_of(error)
        written = [
            (headers.REASON, summary.reason.encode()),
            (headers.ERROR_CLASS, summary.error_class.encode()),
            (headers.DEAD_LETTERED_AT, _now().isoformat().encode()),
            (headers.ATTEMPTS, str(command.attempt).encode()),
            (headers.SOURCE_TOPIC, source.topic.encode()),
            (headers.SOURCE_PARTITION, str(source.partition).encode()),
            (headers.SOURCE_OFFSET, str(source.offset).encode()),
        ]
        delivery = await self._dead_letters.send(
            command.workspace_id.encode(), command.model_dump_json().encode(), written
        )
        await delivery
        await self._record(failed_entry(command, _now(), error, None))
        dead = dead_lettered_entry(command, _now(), error)
        await self._record(dead)
        logger.error(
            "command dead-lettered",
            extra={
                "workspace_id": command.workspace_id,
                "command_id": command.command_id,
                "error": summary.error_class,
            },
        )
        return dead

    # Parking

    async def end_parking(self, event: Any, release: ParkingRelease, partition: int) -> None:
        """Apply an operator's release (or drop) of a workspace's parking, then ack its record
        (after the held commands ran, so a crash meanwhile hands the rest over again)."""
        if self._stopping:
            return  # as in carry_out
        began = self.generation(partition)
        async with self._workspace(release.workspace_id):
            if self.generation(partition) != began:
                return
            settled = await self._release(release, partition, began)
        if settled and self.generation(partition) == began:
            event.ack()

    async def park_for_run(self, event: Any, request: ParkingRequest, partition: int) -> None:
        """A playbook's failed run parks its workspace (a copy of the request does nothing,
        nor does a workspace parked already), then ack the request."""
        if self._stopping:
            return  # as in carry_out
        began = self.generation(partition)
        workspace_id = request.workspace_id
        async with self._workspace(workspace_id):
            if self.generation(partition) != began:
                return
            state = self._load(workspace_id)
            # Remembered as done under its entry's id, so a copy after a release parks nothing.
            parking = parking_id(request.command_id)
            if memory.finished(state, parking) is None and memory.parked_of(state) is None:
                now = time.time()
                queued = len(memory.queued_of(state))
                entry = run_parked_entry(request, _at(now), self._parking_ttl, queued, _now())
                await self._record(entry)
                logger.error(
                    "workspace parked: its playbook failed; its later commands wait for an "
                    "operator",
                    extra={"workspace_id": workspace_id, "run_id": request.run_id},
                )
                state = memory.park_workspace(
                    state, request.command_id, entry.payload.reason, now, request.run_id
                )
            state = memory.finish(state, parking, LedgerKind.WORKSPACE_PARKED, time.time())
            source = SourcePosition("approvals", partition, -1)
            settled = await self._settle(workspace_id, state, source, began)
            await self._producer.flush()
        if settled and self.generation(partition) == began:
            event.ack()

    async def _release(self, release: ParkingRelease, partition: int, began: int) -> bool:
        workspace_id = release.workspace_id
        state = self._load(workspace_id)
        if memory.applied(state, release.request_id):
            # A copy of a release already applied: its commands not run yet go on; a parking
            # begun since (one of them was dead-lettered) is not this release's to end.
            if memory.parked_of(state) is not None:
                return True
            return await self._drain(workspace_id, partition, began)
        if memory.parked_of(state) is None:
            logger.warning(
                "release of a workspace that is not parked ignored",
                extra={"workspace_id": workspace_id, "request_id": release.request_id},
            )
            return True
        if release.drop:
            return await self._drop(state, release, partition, began)
        if not await self._unpark(workspace_id, state, release, partition, began):
            return False
        return await self._drain(workspace_id, partition, began)

    async def _park(
        self, dead: ActionDeadLettered, action: str, state: ExecutionState
    ) -> ExecutionState:
        """After a dead letter: park the workspace when the policy says its action parks."""
        if action not in self._parks or memory.parked_of(state) is not None:
            return state
        now = time.time()
        waiting = [h for h in memory.queued_of(state) if h["command_id"] != dead.payload.command_id]
        entry = parked_entry(dead, _at(now), self._parking_ttl, len(waiting), _now())
        await self._record(entry)
        logger.error(
            "workspace parked: its later commands wait for an operator",
            extra={"workspace_id": dead.workspace_id, "command_id": dead.payload.command_id},
        )
        return memory.park_workspace(state, dead.payload.command_id, entry.payload.reason, now)

    async def _parked_by_ledger(
        self, partition: int, lease: Lease, state: ExecutionState
    ) -> ExecutionState | None:
        """A leased attempt found dead-lettered on the ledger: park the workspace as its worker
        did (or, if that worker stopped before recording it, as it would have). None while
        its worker, its lease live, has yet to record the parking that follows the dead letter:
        writing one here meanwhile would give the workspace's chain two writers."""
        if memory.parked_of(state) is not None:
            return state
        dead, parked = await self._watch.dead_letter(partition, lease)
        if parked is not None:
            found = parked.payload
            since = found.since.timestamp()
            return memory.park_workspace(state, found.dead_lettered, found.reason, since)
        if (
            dead is None
            or dead.payload.action not in self._parks
            or dead.payload.rule_id in self._playbook_rules
        ):
            return state
        if lease.until > time.time():
            return None
        return await self._park(dead, dead.payload.action, state)

    async def _hold(
        self, command: Command, state: ExecutionState, source: SourcePosition, began: int
    ) -> bool:
        """Hold the command behind its workspace's parking. A parking past its TTL ends first,
        and held commands left by a release (or that TTL) run first, in order; then the
        command is looked at afresh."""
        workspace_id = command.workspace_id
        parking = memory.parked_of(state)
        if parking is None or memory.expired(state, time.time(), self._parking_ttl):
            if parking is not None and not await self._unpark(
                workspace_id, state, None, source.partition, began
            ):
                return False
            if not await self._drain(workspace_id, source.partition, began):
                return False
            return await self._step(command, source, began)
        if memory.position_of(state, command.command_id) is not None:
            return True  # a copy of a held command: it waits once
        where = [source.topic, source.partition, source.offset]
        state = memory.queue_parked(
            state, command.command_id, command.model_dump_json(), where, time.time()
        )
        place = memory.position_of(state, command.command_id) or 0
        await self._record(held_entry(command, parking["command_id"], place, _now()))
        logger.warning(
            "command held: its workspace is parked",
            extra={"workspace_id": workspace_id, "command_id": command.command_id},
        )
        stored = await self._settle(workspace_id, state, source, began)
        # The table is where the held command lives once its record is acked.
        await self._producer.flush()
        return stored

    async def _unpark(
        self,
        workspace_id: str,
        state: ExecutionState,
        release: ParkingRelease | None,
        partition: int,
        began: int,
    ) -> bool:
        """End the parking (an operator's release, or None: its TTL): `workspace.released`, and
        the workspace no longer parked; its held commands stay queued until each has run."""
        parking = memory.parked_of(state)
        assert parking is not None
        state, held = memory.release(state, None if release is None else release.request_id)
        await self._record(
            released_entry(
                workspace_id,
                parking["command_id"],
                _at(parking["since"]),
                release,
                len(held),
                _now(),
            )
        )
        logger.warning(
            "workspace parking released",
            extra={"workspace_id": workspace_id, "held": len(held), "by": _by(release)},
        )
        if self.generation(partition) != began:
            return False
        self._save(workspace_id, state)
        await self._producer.flush()
        return True

    async def _drain(self, workspace_id: str, partition: int, began: int) -> bool:
        """Run the released commands in the order they came, each leaving the queue once it
        ran, until none is left or one parks the workspace again; False if the shard moved."""
        while True:
            state = self._load(workspace_id)
            queued = memory.queued_of(state)
            if not queued or memory.parked_of(state) is not None:
                return True
            head = queued[0]
            command = Command.model_validate_json(head["command"])
            source = SourcePosition(*head["source"])
            if not await self._step(command, source, began, hold=False):
                return False
            if self.generation(partition) != began:
                return False
            self._save(workspace_id, memory.unqueue(self._load(workspace_id), head["command_id"]))

    async def _drop(
        self, state: ExecutionState, release: ParkingRelease, partition: int, began: int
    ) -> bool:
        """End the parking and its held commands: `workspace.released` (dropped), then each
        held command's terminal `action.skipped`."""
        workspace_id = release.workspace_id
        parking = memory.parked_of(state)
        assert parking is not None
        state, dropped = memory.drop(state, release.request_id, time.time())
        since = _at(parking["since"])
        await self._record(
            released_entry(
                workspace_id, parking["command_id"], since, release, len(dropped), _now()
            )
        )
        for held in dropped:
            command = Command.model_validate_json(held["command"])
            would = spec_of(command.action).describe(command, self._config)
            await self._report_step(command, LedgerKind.ACTION_SKIPPED, succeeded=False)
            await self._record(skipped_entry(command, _now(), DROPPED, would))
        logger.warning(
            "workspace parking dropped",
            extra={"workspace_id": workspace_id, "held": len(dropped), "by": _by(release)},
        )
        stored = await self._settle(
            workspace_id, state, SourcePosition("approvals", partition, -1), began
        )
        await self._producer.flush()
        return stored

    async def _send_retry(self, command: Command) -> None:
        delivery = await self._producer.send(
            self._autopilot.commands_retry.get_topic_name(),
            command.workspace_id.encode(),
            command.model_dump_json().encode(),
            partition=None,
            timestamp=None,
            headers=None,
        )
        await delivery

    async def _settle(
        self, workspace_id: str, state: ExecutionState, source: SourcePosition, began: int
    ) -> bool:
        """Store the workspace's memory unless the shard moved meanwhile.

        Not flushed here: should this write be lost, the lease it clears is still stored, and a
        copy of the command settles that lease from the outcome already on the ledger.
        """
        if self.generation(source.partition) != began:
            return False
        self._save(workspace_id, memory.prune(state, time.time(), self._horizon))
        return True

    async def _report_step(
        self,
        command: Command,
        ended: LedgerKind,
        *,
        succeeded: bool,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Hand a playbook step's end to its run, before the ledger's terminal entry: once that
        entry is there, the run has its outcome too (a copy after a crash is ignored by it)."""
        if command.playbook_run is None:
            return
        outcome = StepOutcome(
            run_id=command.playbook_run,
            command_id=command.command_id,
            workspace_id=command.workspace_id,
            ended=ended.value,
            succeeded=succeeded,
            items=found_items(detail),
            at=_now(),
        )
        await (await send_step_outcome(self._autopilot, outcome))

    async def _record(self, entry: LedgerEntry, shard: int | None = None) -> None:
        # Awaited to the broker's ack: nothing after it (table, ack) may get ahead of it.
        delivery = await send_entry(self._autopilot, entry, shard)
        await delivery
        self._count(entry)

    def _count(self, entry: LedgerEntry) -> None:
        if isinstance(entry.payload, CommandPayload):
            self.outcomes[entry.payload.action, entry.kind.value.removeprefix("action.")] += 1

    async def _breaker_changed(self, provider: str, state: BreakerState, failures: int) -> None:
        await self._record(breaker_entry(provider, state.value, failures, self.holder, _now()), 0)

    @asynccontextmanager
    async def _workspace(self, workspace_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(workspace_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[workspace_id]

    def _load(self, workspace_id: str) -> ExecutionState:
        raw = self._table.get(workspace_id)
        return memory.initial() if raw is None else orjson.loads(raw)

    def _save(self, workspace_id: str, state: ExecutionState) -> None:
        # Table writes go to the changelog partition of the current event: the command's
        # record, on the workspace's shard (tasks keep the context they were created in).
        self._table[workspace_id] = orjson.dumps(state)

    def _snapshot(self, workspace_id: str) -> WorkspaceSnapshot | None:
        state = self._state_of(workspace_id)
        if state is None:
            return None
        health = health_of(state)
        return WorkspaceSnapshot(health_score=health.score, health_status=health.status.value)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def _writer(self) -> ContentWriter:
        if self._content is None:
            self._content = ContentWriter(self._config, self.breakers)
        return self._content


def _by(release: ParkingRelease | None) -> str:
    return "ttl" if release is None else release.by or "operator"


def _retry_after(error: ActionError) -> float | None:
    return getattr(error, "retry_after", None)


def _now() -> datetime:
    return datetime.now(UTC)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
