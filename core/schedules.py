"""Time in the policy: schedules (sweeps), timers and signals held until they are due. Pure.

Nothing here reads a clock. A schedule says which moments are its periods; the worker's ticker
(agents/ticker.py) writes one tick record per period onto each shard's input, and the shard
acts on the tick as it acts on a signal, with the period's start as the event time. So a sweep
or a timer decides the same when the ticks are read again (a replay, a new owner of the shard).
- A **schedule** (`[[schedules]]`): a cron expression (`croniter`, UTC; a sixth field is
  seconds) or a fixed interval. Each period's tick sweeps the shard: rules `on = ["sweep:ID"]`
  are evaluated for its workspaces, within the schedule's run limits.
- A **timer** (`[[timers]]`): armed for a workspace by each signal of its `armed_by` types (of
  one component when `component` is set), due `after_seconds` after that signal's event time;
  a later signal re-arms it. The first timer tick at or after it is due fires it once: rules
  `on = ["timer:ID"]` are evaluated; it fires again only after a new signal arms it.
- **Held signals** (`[timing] hold_until_due`): a signal of these types written before its
  event time waits in the shard's state and is folded when a timer tick reaches that time (a
  follow-up due tomorrow is sent tomorrow).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from topics.signal_attributes import Name
from topics.signals import SignalType

ScheduleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
# The schedule of timer ticks; no `[[schedules]]` entry may take its name.
TIMERS = "timers"
SWEEP_PREFIX = "sweep:"
TIMER_PREFIX = "timer:"
DAY_SECONDS = 86_400


class Schedule(BaseModel):
    """A sweep on a cron expression or a fixed interval, with its run limits."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: ScheduleId
    cron: str | None = None
    every_seconds: int | None = Field(default=None, ge=1, le=7 * DAY_SECONDS)
    # Per run, across the platform (split across shards as the platform cap is): how many
    # workspaces a sweep rule may be evaluated for (worst health first), and how many
    # commands the run may issue.
    max_workspaces: int = Field(default=100, ge=1, le=1_000_000)
    max_actions: int = Field(default=50, ge=0, le=100_000)
    # A period missed (no worker owned the shard when it began) still runs when the shard's
    # owner is back within this long; an older one is skipped. Default: an interval's period
    # (an hour at most); for a cron, an hour.
    catch_up_seconds: int | None = Field(default=None, ge=0, le=7 * DAY_SECONDS)
    description: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_timing(self) -> Schedule:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give exactly one of cron or every_seconds")
        if self.id == TIMERS:
            raise ValueError(f"'{TIMERS}' is the timer ticks' own schedule: choose another id")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"cron {self.cron!r} is not a cron expression (5 or 6 fields)")
        return self

    def period_start(self, now: float) -> int:
        """The start (epoch seconds) of the latest period that began at or before `now`."""
        moment = int(now)
        if self.every_seconds is not None:
            return moment - moment % self.every_seconds
        # croniter's get_prev is strictly before its start: from one second on, it is at or
        # before `now` (cron's finest step is a second).
        start = datetime.fromtimestamp(moment + 1, UTC)
        return int(croniter(self.cron, start).get_prev(float))

    @property
    def catch_up(self) -> int:
        """How late a period may still run (see `catch_up_seconds`)."""
        if self.catch_up_seconds is not None:
            return self.catch_up_seconds
        if self.every_seconds is not None:
            return min(self.every_seconds, 3600)
        return 3600


class Timer(BaseModel):
    """A deadline per workspace, re-armed by each signal of its types; see the module."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: ScheduleId
    armed_by: tuple[SignalType, ...] = Field(min_length=1)
    after_seconds: int = Field(ge=0, le=30 * DAY_SECONDS)
    # Only signals whose `component` attribute is this one arm it (heartbeats of one part).
    component: Name | None = None
    description: str = Field(default="", max_length=200)

    def arms(self, attributes: object) -> bool:
        """Whether a signal of one of its types with these attributes arms it."""
        if self.component is None:
            return True
        return isinstance(attributes, dict) and attributes.get("component") == self.component


class Timing(BaseModel):
    """How often timers are checked, and which signals wait until their event time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Timers fire, and held signals are folded, at the first tick at or after they are due.
    tick_seconds: int = Field(default=10, ge=1, le=3600)
    hold_until_due: tuple[SignalType, ...] = ()
    # A held signal may be this far ahead of the time its record was written.
    max_hold_seconds: int = Field(default=30 * DAY_SECONDS, ge=0, le=365 * DAY_SECONDS)


def timer_schedule(timing: Timing) -> Schedule:
    """The schedule of timer ticks: every `tick_seconds`, catching up one tick."""
    return Schedule.model_construct(
        id=TIMERS,
        cron=None,
        every_seconds=timing.tick_seconds,
        max_workspaces=1,
        max_actions=0,
        catch_up_seconds=7 * DAY_SECONDS,
        description="",
    )
