"""A shard's time in its store: the ticks it acted on, its armed timers and its held signals.

Kept beside the workspaces' states in the shard's store, so they commit (and move to a new owner)
with them:
- `\\x00tick:SCHEDULE`: the start of the last period of the schedule the shard acted on. A tick of
  that period or an earlier one is a copy (written again after a failover) and does nothing.
- `\\x00tick-requests`: the ids of the last operator-requested ticks acted on.
- `\\x01due:AT:WORKSPACE:t:TIMER`: a timer of the workspace is due at AT or later. When it is
  due exactly is in the workspace's state (`timers`), which a signal re-arming it rewrites
  anyway; the key is moved only when a tick reaches it and finds the timer pushed back. So a
  heartbeat every 30 s re-arms a 10-minute timer without writing anything but its state.
- `\\x01due:DUE:WORKSPACE:s:SIGNAL ID` → the signal and where it was read: a held signal.
- `\\x01due:DUE:WORKSPACE:p:RUN ID`: a playbook run's wait or deadline (core/playbooks.py); the
  run in the workspace's state says whether it still is due then.
Keys under `\\x01due:` sort by time (fixed-width epoch seconds), so a tick reads what is due up
to its moment with one range scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from core.windows import SourcePosition, WorkspaceState
from engine.partition_store import PartitionStore
from topics.signals import SIGNAL, Signal

_TICK = b"\x00tick:"
_REQUESTS = b"\x00tick-requests"
_DUE = b"\x01due:"
# Operator-requested tick ids remembered against a copy written twice.
_REQUESTS_KEPT = 32


@dataclass(frozen=True, slots=True)
class DueTimer:
    """A timer due at a tick."""

    key: bytes
    due: int
    workspace_id: str
    timer: str


@dataclass(frozen=True, slots=True)
class DueSignal:
    """A held signal due at a tick."""

    key: bytes
    due: int
    signal: Signal
    source: SourcePosition


@dataclass(frozen=True, slots=True)
class DueRun:
    """A playbook run's wait or deadline reached at a tick."""

    key: bytes
    due: int
    workspace_id: str
    run_id: str


def _due_key(due: int, workspace_id: str, kind: str, name: str) -> bytes:
    return b"%s%011d:%s:%s:%s" % (_DUE, due, workspace_id.encode(), kind.encode(), name.encode())


class ShardTimers:
    """Reads and stages a shard's ticks, timers and held signals (see the module)."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store

    @staticmethod
    def last_tick(store: PartitionStore, schedule: str) -> int | None:
        """The committed start of the last period of `schedule` the shard acted on."""
        raw = store.stored(_TICK + schedule.encode())
        return None if raw is None else int(raw)

    def take_tick(self, schedule: str, due: int) -> bool:
        """Whether a tick of this period is the first the shard sees (then it is noted)."""
        key = _TICK + schedule.encode()
        raw = self.store.get(key)
        if raw is not None and due <= int(raw):
            return False
        self.store.put(key, str(due).encode())
        return True

    def take_request(self, tick_id: str) -> bool:
        """Whether an operator-requested tick is seen for the first time (then it is noted)."""
        raw = self.store.get(_REQUESTS)
        seen: list[str] = [] if raw is None else orjson.loads(raw)
        if tick_id in seen:
            return False
        self.store.put(_REQUESTS, orjson.dumps([*seen, tick_id][-_REQUESTS_KEPT:]))
        return True

    def arm(self, state: WorkspaceState, workspace_id: str, timer: str, due: int) -> None:
        """Arm (or push back) a workspace's timer in its state; an earlier due time never
        replaces a later one (signals may arrive out of event-time order)."""
        timers = state.setdefault("timers", {})
        armed = timers.get(timer)
        if armed is not None and armed >= due:
            return
        timers[timer] = due
        if armed is None:
            self.store.put(_due_key(due, workspace_id, "t", timer), b"")

    def arm_run(self, workspace_id: str, run_id: str, due: int) -> None:
        """Wake a playbook run at `due` (its state says what for)."""
        self.store.put(_due_key(due, workspace_id, "p", run_id), b"")

    def hold(self, signal: Signal, source: SourcePosition, due: int) -> None:
        """Keep a signal until a tick reaches its due time (a copy of it is kept once)."""
        value = orjson.dumps(
            {
                "signal": signal.model_dump(mode="json"),
                "source": [source.topic, source.partition, source.offset],
            }
        )
        self.store.put(_due_key(due, signal.workspace_id, "s", signal.id), value)

    def due(
        self, at: int, state_of: Callable[[str], WorkspaceState]
    ) -> list[DueTimer | DueSignal | DueRun]:
        """Every timer and held signal due at or before `at`, by their keys' order; they are
        removed from the store (staged with the tick's batch) and the timers from their
        workspaces' states. A timer pushed back since is moved to its new time instead."""
        found: list[DueTimer | DueSignal | DueRun] = []
        # Every key due after `at` starts with its time, so sorts from this prefix on.
        for key, value in self.store.scan(_DUE, b"%s%011d" % (_DUE, at + 1)):
            _, workspace_id, kind, name = key[len(_DUE) :].decode().split(":", 3)
            self.store.delete(key)
            if kind == "t":
                state = state_of(workspace_id)
                timers = state.get("timers", {})
                due = timers.get(name)
                if due is None:
                    continue  # not armed any more
                if due > at:
                    self.store.put(_due_key(due, workspace_id, "t", name), b"")
                    continue
                del timers[name]
                if not timers:
                    state.pop("timers", None)
                found.append(DueTimer(key, due, workspace_id, name))
            elif kind == "p":
                due = int(key[len(_DUE) :].split(b":", 1)[0])
                found.append(DueRun(key, due, workspace_id, name))
            else:
                due = int(key[len(_DUE) :].split(b":", 1)[0])
                held = orjson.loads(value)
                topic, partition, offset = held["source"]
                found.append(
                    DueSignal(
                        key,
                        due,
                        SIGNAL.validate_python(held["signal"]),
                        SourcePosition(topic, partition, offset),
                    )
                )
        return found
