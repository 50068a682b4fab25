"""A monotonic clock the test moves by hand, for code that takes its clock as a callable."""

from __future__ import annotations


class Clock:
    """Starts at 1,000 s; a test moves it with `clock.now += seconds`."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now
