"""Per-workspace windows on event time: a pure fold over signals.

The state of one workspace is one JSON-ready dict, written once per batch as one table value:
- `minutes`: per-type counts in 1-minute tumbling windows (the current one, and any still open
  to late signals);
- `steps`: per-type counts and signal ids in 5-minute buckets; the last hour, in 5-minute steps,
  is the sum of the last 12 buckets, so a hopping hour costs one bucket write per signal, not 12;
- `last_seen` per type, and `gauges`: the latest reading of each gauge type (queue depth, oldest
  pending age) with its event time.

Window close and expiry follow event time (the workspace's watermark, the latest event time it
has sent) plus a grace period, never the wall clock, so a replay, or a worker restored from its
changelog, gives the same state as the live run. Duplicate ids within a 5-minute bucket count
once (ids live in the bucket of their event time, so a resent signal meets its first copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from topics.signals import GAUGE_ATTRIBUTE, Signal, SignalType

STATE_VERSION = 3
MINUTE_SECONDS = 60
STEP_SECONDS = 300
HOUR_SECONDS = 3600
STEPS_PER_HOUR = HOUR_SECONDS // STEP_SECONDS
# A late signal must still land in a bucket of the last hour: grace stays well inside it.
MAX_GRACE_SECONDS = 600
# Bounds a noisy workspace's state: past this many ids in one bucket, duplicates are no longer
# detected and are counted in `dedup_unchecked`, so the loss of precision is visible.
MAX_IDS_PER_WINDOW = 4096


class Step(TypedDict):
    """One 5-minute bucket: counts per signal type, and the ids seen (for duplicates)."""

    counts: dict[str, int]
    # A dict, not a set: membership is O(1) and it serialises to JSON as it is.
    ids: dict[str, int]


class PolicyMemory(TypedDict):
    """What the policy remembers of a workspace (event time, seconds since the epoch)."""

    # Action → when it was last issued, and when a decision on it was last suppressed.
    issued: dict[str, int]
    held: dict[str, int]
    # The UTC day (days since the epoch) `used` counts actions of.
    day: int | None
    used: int


class WorkspaceState(TypedDict):
    """A workspace's windowed state, one JSON value in the workspace-state table.

    Keys of `minutes` and `steps` are window starts (epoch seconds) as text, JSON's keys.
    """

    v: int
    # The latest event time folded; None until the first signal.
    watermark: int | None
    # Minute start → signal type → count (minutes still open for late signals).
    minutes: dict[str, dict[str, int]]
    # Step start → bucket, for the hour ending with the watermark's step.
    steps: dict[str, Step]
    # Signal type → the latest event time of that type.
    last_seen: dict[str, int]
    # Gauge signal type → [event time, reading] of its latest reading.
    gauges: dict[str, list[float]]
    late: int
    duplicates: int
    dedup_unchecked: int
    policy: PolicyMemory
    # Timer id → when it is due (event time): the workspace's armed timers (core/schedules.py).
    timers: NotRequired[dict[str, int]]
    # Run id → a playbook run of the workspace still running (core/playbooks.py).
    playbooks: NotRequired[dict[str, dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """How long after a 1-minute window's end it still accepts late signals."""

    grace_seconds: int

    def __post_init__(self) -> None:
        if not 0 <= self.grace_seconds <= MAX_GRACE_SECONDS:
            raise ValueError(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where a signal was read: the provenance carried into every decision."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Observation:
    """One counted signal and its 5-minute bucket as the policy sees it."""

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
        "minutes": {},
        "steps": {},
        "last_seen": {},
        "gauges": {},
        "late": 0,
        "duplicates": 0,
        "dedup_unchecked": 0,
        "policy": initial_policy_state(),
    }


def initial_policy_state() -> PolicyMemory:
    """What the policy remembers of a workspace: when it last issued each action and when it
    last suppressed a decision on each (event time), and how many actions it counted on which
    UTC day (days since the epoch)."""
    return {"issued": {}, "held": {}, "day": None, "used": 0}


def upcast(state: dict[str, Any]) -> WorkspaceState:
    """A stored state of any earlier version, in the current shape."""
    version = state.get("v")
    if version == STATE_VERSION:
        return cast(WorkspaceState, state)
    if version == 1:
        # Version 1 kept 5-minute tumbling windows (counts and ids): they are version 2's steps.
        current = initialize()
        current["watermark"] = state["watermark"]
        current["steps"] = state["windows"]
        current["late"] = state["late"]
        current["duplicates"] = state["duplicates"]
        current["dedup_unchecked"] = state["dedup_unchecked"]
        return current
    # Version 2 had no policy memory: nothing was issued under the cooldowns and budgets.
    return cast(WorkspaceState, {**state, "v": STATE_VERSION, "policy": initial_policy_state()})


def step_start(occurred_at: int) -> int:
    """The start (epoch seconds) of the 5-minute bucket holding this event time."""
    return occurred_at - occurred_at % STEP_SECONDS


def minute_start(occurred_at: int) -> int:
    """The start (epoch seconds) of the 1-minute window holding this event time."""
    return occurred_at - occurred_at % MINUTE_SECONDS


def is_late(occurred_at: int, watermark: int | None, config: WindowConfig) -> bool:
    """Late: the signal's minute closed (its end plus the grace period has passed)."""
    return (
        watermark is not None
        and minute_start(occurred_at) + MINUTE_SECONDS + config.grace_seconds <= watermark
    )


def hour_start(watermark: int) -> int:
    """The first 5-minute bucket of the hour that ends with the watermark's bucket."""
    return step_start(watermark) - (STEPS_PER_HOUR - 1) * STEP_SECONDS


def add(
    state: WorkspaceState,
    signals: Iterable[Signal],
    source: SourcePosition,
    config: WindowConfig,
) -> FoldResult:
    """Fold signals (in arrival order) into the state, updating it in place, and return it.

    In place on purpose: copying a bucket's ids on every batch made the fold O(ids) per batch,
    measured at 26k signals/s against 140k/s in place. The state belongs to the caller, which
    replaces it anyway; determinism (no clock, I/O or randomness) is unchanged.
    """
    result = FoldResult(state, [], [], [])
    horizon = late_horizon(config)
    for signal in signals:
        outcome = fold_signal(state, signal, source, horizon)
        if isinstance(outcome, Observation):
            result.observations.append(outcome)
        elif outcome is LATE:
            result.late.append(signal)
        else:
            result.duplicates.append(signal)
    expire(state, config)
    return result


class _SetAside:
    """Why a signal was not counted (a marker; compare with `is`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LATE = _SetAside("LATE")
DUPLICATE = _SetAside("DUPLICATE")


def late_horizon(config: WindowConfig) -> int:
    """Seconds after a minute's start beyond which the watermark makes its signals late."""
    return MINUTE_SECONDS + config.grace_seconds


def fold_signal(
    state: WorkspaceState, signal: Signal, source: SourcePosition, horizon: int
) -> Observation | _SetAside:
    """Fold one signal in place: its observation, or LATE / DUPLICATE if it was set aside.

    The watermark moves with each signal, so a caller that reads the state between signals
    (the policy) sees it exactly as of that signal, however the signals were batched. Call
    `expire` once after a batch.
    """
    at = int(signal.occurred_at.timestamp())
    watermark: int | None = state["watermark"]
    # is_late, inlined: this runs once per signal on the hot path.
    if watermark is not None and at - at % MINUTE_SECONDS + horizon <= watermark:
        state["late"] += 1
        return LATE
    start = at - at % STEP_SECONDS
    key = str(start)
    steps = state["steps"]
    step = steps.get(key)
    if step is None:
        step = steps[key] = {"counts": {}, "ids": {}}
    ids = step["ids"]
    if signal.id in ids:
        state["duplicates"] += 1
        return DUPLICATE
    if len(ids) < MAX_IDS_PER_WINDOW:
        # A dict keeps membership O(1) and serialises to JSON as it is.
        ids[signal.id] = 1
    else:
        state["dedup_unchecked"] += 1
    signal_type = signal.type
    type_name = signal_type.value
    counts = step["counts"]
    count = counts[type_name] = counts.get(type_name, 0) + 1
    minutes = state["minutes"]
    minute_key = str(at - at % MINUTE_SECONDS)
    minute = minutes.get(minute_key)
    if minute is None:
        minute = minutes[minute_key] = {}
    minute[type_name] = minute.get(type_name, 0) + 1
    last_seen = state["last_seen"]
    if last_seen.get(type_name, at - 1) < at:
        last_seen[type_name] = at
    gauge = GAUGE_ATTRIBUTE.get(signal_type)
    if gauge is not None:
        gauges = state["gauges"]
        reading = gauges.get(type_name)
        if reading is None or reading[0] <= at:
            gauges[type_name] = [at, signal.attributes[gauge]]  # type: ignore[literal-required]
    if watermark is None or at > watermark:
        state["watermark"] = at
    return Observation(
        signal_id=signal.id,
        workspace_id=signal.workspace_id,
        signal_type=signal_type,
        occurred_at=at,
        attributes=signal.attributes,
        window_start=start,
        count=count,
        source=source,
    )


def expire(state: WorkspaceState, config: WindowConfig) -> None:
    """Drop minutes closed past their grace and buckets older than the hour (event time)."""
    watermark = state["watermark"]
    if watermark is not None:
        _expire(state, watermark, config)


def _expire(state: WorkspaceState, watermark: int, config: WindowConfig) -> None:
    minutes = state["minutes"]
    for key in [key for key in minutes if is_late(int(key), watermark, config)]:
        del minutes[key]
    first = hour_start(watermark)
    steps = state["steps"]
    for key in [key for key in steps if int(key) < first]:
        del steps[key]


def hour_counts(state: WorkspaceState, at: int | None = None) -> dict[str, int]:
    """Per-type counts in the hour that ends with the 5-minute bucket of `at` (by default the
    watermark's)."""
    watermark = state["watermark"] if at is None else at
    hour: dict[str, int] = {}
    if watermark is None:
        return hour
    steps = state["steps"]
    first = hour_start(watermark)
    for start in range(first, first + HOUR_SECONDS, STEP_SECONDS):
        step = steps.get(str(start))
        if step is not None:
            for type_name, count in step["counts"].items():
                hour[type_name] = hour.get(type_name, 0) + count
    return hour


def minute_counts(state: WorkspaceState) -> dict[str, int]:
    """Per-type counts in the watermark's 1-minute window."""
    watermark = state["watermark"]
    if watermark is None:
        return {}
    return dict(state["minutes"].get(str(minute_start(watermark)), {}))


def view(state: WorkspaceState) -> dict[str, Any]:
    """The readable view of a workspace as of its watermark: last minute, last hour, gauges."""
    watermark = state["watermark"]
    counters = {name: state[name] for name in ("late", "duplicates", "dedup_unchecked")}
    if watermark is None:
        return {
            "as_of": None,
            "minute": None,
            "hour": None,
            "last_seen": {},
            "gauges": {},
            **counters,
        }
    minute = minute_start(watermark)
    first = hour_start(watermark)
    steps = []
    hour: dict[str, int] = {}
    for start in range(first, first + HOUR_SECONDS, STEP_SECONDS):
        step = state["steps"].get(str(start))
        counts = step["counts"] if step is not None else {}
        steps.append({"start": start, "counts": dict(counts)})
        for type_name, count in counts.items():
            hour[type_name] = hour.get(type_name, 0) + count
    return {
        "as_of": watermark,
        "minute": {
            "start": minute,
            "end": minute + MINUTE_SECONDS,
            "counts": dict(state["minutes"].get(str(minute), {})),
        },
        "hour": {"start": first, "end": first + HOUR_SECONDS, "counts": hour, "steps": steps},
        "last_seen": dict(state["last_seen"]),
        "gauges": {
            type_name: {"at": at, "value": value}
            for type_name, (at, value) in state["gauges"].items()
        },
        **counters,
    }
