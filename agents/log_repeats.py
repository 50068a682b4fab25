"""Kafka client errors said once per interval, not once per retry.

While the broker is away, every aiokafka client of a worker (the engine's consumer and one
transactional producer per shard, Faust's consumer and producer, the peek and watch readers)
logs the same connection and metadata errors at each retry: a 15 s broker restart wrote about
60,000 lines to a worker's log, burying the lines that say what the worker did about it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

# The client libraries whose retries repeat (Faust's own messages are left as they are).
REPEATING_LOGGERS = ("aiokafka",)
INTERVAL_SECONDS = 10.0
_DECIDED = "_autopilot_repeat_passed"


@dataclass
class _Seen:
    since: float
    held_back: int = 0


class RepeatFilter(logging.Filter):
    """Passes the first record of each message (by logger, level and format string) in an
    interval; the first after it says how many like it were held back."""

    def __init__(
        self,
        interval: float = INTERVAL_SECONDS,
        loggers: tuple[str, ...] = REPEATING_LOGGERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._interval = interval
        self._loggers = loggers
        self._clock = clock
        self._seen: dict[tuple[str, int, str], _Seen] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a repeat within the interval; the record otherwise (noting repeats)."""
        if record.levelno < logging.WARNING or not record.name.startswith(self._loggers):
            return True
        # Every handler of the record gets the same answer (the first one's).
        decided = getattr(record, _DECIDED, None)
        if decided is not None:
            return bool(decided)
        passed = self._decide(record)
        setattr(record, _DECIDED, passed)
        return passed

    def _decide(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen.since < self._interval:
            seen.held_back += 1
            return False
        if seen is not None and seen.held_back:
            record.msg = (
                f"{record.getMessage()} ({seen.held_back} more like it in the "
                f"{now - seen.since:.0f} s before, not logged)"
            )
            record.args = ()
        self._seen[key] = _Seen(now)
        return True


def hold_back_repeats(logger: logging.Logger) -> None:
    """Add the filter to each of the logger's handlers (the root's, as a worker set them up)."""
    repeats = RepeatFilter()
    for handler in logger.handlers:
        handler.addFilter(repeats)
