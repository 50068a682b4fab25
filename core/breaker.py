"""Circuit breakers, one per provider (pure: time is passed in, transitions are returned).

closed --(N consecutive failures)--> open --(cool-down elapsed)--> half-open
half-open --(the one trial call succeeds)--> closed;  --(it fails)--> open again.
While open, callers are told when to come back (`retry_at`) rather than failing their command.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """When a breaker opens and how long it stays open."""

    failure_threshold: int = 5
    cooldown_seconds: float = 30.0


@dataclass(frozen=True, slots=True)
class Breaker:
    """One provider's breaker; `now` values are seconds on any monotonic-enough clock."""

    provider: str
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    # In half-open, one trial call is let through at a time; a trial that never reports back
    # (its worker lost the shard mid-call) is given up after one cool-down.
    trial_since: float | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a call may go ahead now; if not, when to ask again."""

    breaker: Breaker
    allowed: bool
    retry_at: float | None = None
    # Set when admitting changed the state (open -> half-open), for the ledger.
    transition: BreakerState | None = None


def admit(breaker: Breaker, config: BreakerConfig, now: float) -> Admission:
    """Ask to call the provider now."""
    if breaker.state is BreakerState.CLOSED:
        return Admission(breaker, allowed=True)
    reopen_at = breaker.opened_at + config.cooldown_seconds
    if breaker.state is BreakerState.OPEN:
        if now < reopen_at:
            return Admission(breaker, allowed=False, retry_at=reopen_at)
        trial = replace(breaker, state=BreakerState.HALF_OPEN, trial_since=now)
        return Admission(trial, allowed=True, transition=BreakerState.HALF_OPEN)
    if breaker.trial_since is not None and now - breaker.trial_since < config.cooldown_seconds:
        # Come back after a short while: the trial's result decides.
        return Admission(breaker, allowed=False, retry_at=now + min(1.0, config.cooldown_seconds))
    return Admission(replace(breaker, trial_since=now), allowed=True)


def record(
    breaker: Breaker, config: BreakerConfig, now: float, *, ok: bool
) -> tuple[Breaker, BreakerState | None]:
    """Fold one call's result in; returns the breaker and its new state if it changed."""
    if breaker.state is BreakerState.OPEN:
        # A call admitted before the breaker opened ended late: only the cool-down and a
        # trial close it, and another failure tells nothing new.
        return (breaker, None)
    if ok:
        if breaker.state is BreakerState.CLOSED:
            return (replace(breaker, failures=0), None)
        return (Breaker(breaker.provider), BreakerState.CLOSED)
    if breaker.state is BreakerState.HALF_OPEN:
        # The trial failed: open again for another cool-down, still counting the failures.
        return (
            replace(
                breaker,
                state=BreakerState.OPEN,
                opened_at=now,
                trial_since=None,
                failures=breaker.failures + 1,
            ),
            BreakerState.OPEN,
        )
    failures = breaker.failures + 1
    if failures >= config.failure_threshold:
        return (
            replace(breaker, state=BreakerState.OPEN, opened_at=now, failures=failures),
            BreakerState.OPEN,
        )
    return (replace(breaker, failures=failures), None)
