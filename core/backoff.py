"""Retry timing: exponential backoff with jitter and a cap (pure: the random draw is passed in).

Attempt n (1-based) that failed is followed, if attempts remain, by a wait of
    min(cap, base * 2 ** (n - 1)) scaled by a jitter factor in [1 - jitter, 1],
so waits grow 1, 2, 4, 8 s ... never beyond the cap and never in lock-step across commands.
A provider's own hint (Retry-After) is honoured when it asks for longer, up to the cap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a retryable failure is tried again."""

    max_attempts: int = 5
    base_seconds: float = 1.0
    cap_seconds: float = 300.0
    # The share of each wait that is random: 0.5 means between half and all of it.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 < self.base_seconds <= self.cap_seconds:
            raise ValueError("need 0 < base_seconds <= cap_seconds")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")


def backoff_seconds(policy: RetryPolicy, attempt: int, draw: float) -> float:
    """The wait after failed attempt `attempt`, for a uniform draw in [0, 1)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    if not 0 <= draw < 1:
        raise ValueError("draw must be within [0, 1)")
    # Cap the exponent too: 2 ** 1000 overflows a float long before the cap matters.
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2.0 ** min(attempt - 1, 64))
    return ceiling * (1 - policy.jitter * draw)


def next_wait(
    policy: RetryPolicy, attempt: int, draw: float, retry_after: float | None = None
) -> float | None:
    """Seconds until the next attempt after `attempt` failed retryably; None: dead-letter it."""
    if attempt >= policy.max_attempts:
        return None
    wait = backoff_seconds(policy, attempt, draw)
    if retry_after is not None and retry_after > wait:
        wait = min(retry_after, policy.cap_seconds)
    return wait
