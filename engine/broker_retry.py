"""Riding out a broker that is away: Kafka calls retried with capped backoff until it answers.

A rolling restart of a cluster takes a broker away for seconds to minutes; a worker whose call
fails meanwhile waits and tries again instead of crashing, since nothing it could do instead
would help. Errors that say the request itself is wrong are raised at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka.errors import KafkaError, KafkaTimeoutError

logger = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 5.0


def broker_away(exc: BaseException) -> bool:
    """Whether an error says the broker could not be reached or answered too late, rather than
    that the request was wrong (aiokafka marks the former retriable, but for its timeouts)."""
    return isinstance(exc, KafkaError) and (exc.retriable or isinstance(exc, KafkaTimeoutError))


async def retrying(
    operation: Callable[[], Awaitable[T]],
    doing: str,
    first_wait: float = FIRST_WAIT_SECONDS,
    max_wait: float = MAX_WAIT_SECONDS,
) -> T:
    """`operation()`, tried again with capped exponential backoff while the broker is away."""
    wait = first_wait
    while True:
        try:
            result = await operation()
        except KafkaError as exc:
            if not broker_away(exc):
                raise
            logger.warning(
                "broker away, retrying",
                extra={"doing": doing, "error": type(exc).__name__, "retry_in": wait},
            )
            await asyncio.sleep(wait)
            wait = min(wait * 2, max_wait)
        else:
            return result
