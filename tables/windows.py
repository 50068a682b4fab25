"""Per-workspace tumbling windows on event time: a pure fold over signals.

The state of one workspace is one JSON-ready dict, so it is written once per batch as one table
value. Window close and expiry follow event time (the workspace's watermark) plus a grace
period, never the wall clock, so a replay gives the same state as the live run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from topics.signals import Signal, SignalType

STATE_VERSION = 1
# Bounds a noisy workspace's state: past this many ids in one window, duplicates are no longer
# detected and are counted in `dedup_unchecked`, so the loss of precision is visible.
MAX_IDS_PER_WINDOW = 4096

WorkspaceState = dict[str, Any]


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Window size and how long after its end a window still accepts late signals."""

    size_seconds: int
    grace_seconds: int


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a signal was read: the provenance carried into every decision."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Observation:
    """One counted signal and its window as the policy sees it."""

    signal_id: str
    workspace_id: str
    signal_type: SignalType
    occurred_at: int
    attributes: Mapping[str, Any]
    window_start: int
    count: int
    source: SourcePosition


@dataclass(frozen=True, slots=True)
class FoldResult:
    """The new state, the observations for the policy, and what was set aside."""

    state: WorkspaceState
    observations: list[Observation]
    duplicates: list[Signal]
    late: list[Signal]


def initialize() -> WorkspaceState:
    """The state of a workspace that has sent nothing yet."""
    return {
        "v": STATE_VERSION,
        "watermark": None,
        "windows": {},
        "late": 0,
        "duplicates": 0,
        "dedup_unchecked": 0,
    }


def window_start(occurred_at: int, config: WindowConfig) -> int:
    """The start (epoch seconds) of the tumbling window holding this event time."""
    return occurred_at - occurred_at % config.size_seconds


def is_closed(start: int, watermark: int | None, config: WindowConfig) -> bool:
    """A window closes once event time has passed its end plus the grace period."""
    return watermark is not None and start + config.size_seconds + config.grace_seconds <= watermark


def add(
    state: WorkspaceState,
    signals: Iterable[Signal],
    source: SourcePosition,
    config: WindowConfig,
) -> FoldResult:
    """Fold signals (in arrival order) into a copy of the state; the input state is not touched."""
    windows = dict(state["windows"])
    copied: set[str] = set()
    seen: dict[str, set[str]] = {}
    watermark: int | None = state["watermark"]
    counters = {key: state[key] for key in ("late", "duplicates", "dedup_unchecked")}
    observations: list[Observation] = []
    duplicates: list[Signal] = []
    late: list[Signal] = []

    for signal in signals:
        at = int(signal.occurred_at.timestamp())
        start = window_start(at, config)
        if is_closed(start, watermark, config):
            counters["late"] += 1
            late.append(signal)
            continue
        key = str(start)
        if key not in copied:
            old = windows.get(key, {"counts": {}, "ids": []})
            windows[key] = {"counts": dict(old["counts"]), "ids": list(old["ids"])}
            copied.add(key)
        window = windows[key]
        ids = seen.setdefault(key, set(window["ids"]))
        if signal.id in ids:
            counters["duplicates"] += 1
            duplicates.append(signal)
            continue
        if len(ids) < MAX_IDS_PER_WINDOW:
            ids.add(signal.id)
            window["ids"].append(signal.id)
        else:
            counters["dedup_unchecked"] += 1
        count = window["counts"].get(signal.type.value, 0) + 1
        window["counts"][signal.type.value] = count
        watermark = at if watermark is None else max(watermark, at)
        observations.append(
            Observation(
                signal_id=signal.id,
                workspace_id=signal.workspace_id,
                signal_type=signal.type,
                occurred_at=at,
                attributes=signal.attributes,
                window_start=start,
                count=count,
                source=source,
            )
        )

    expired = [key for key in windows if is_closed(int(key), watermark, config)]
    for key in expired:
        del windows[key]
    new_state = {**state, **counters, "watermark": watermark, "windows": windows}
    return FoldResult(new_state, observations, duplicates, late)


def result(state: WorkspaceState) -> dict[str, Any]:
    """The readable view of a workspace's state: open windows and their counts per type."""
    return {
        "watermark": state["watermark"],
        "windows": {
            int(start): dict(window["counts"]) for start, window in sorted(state["windows"].items())
        },
        "late": state["late"],
        "duplicates": state["duplicates"],
    }
