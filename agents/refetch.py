"""Making Faust's consumer fetch a partition again from an offset, safely.

Faust runs its aiokafka consumer in a thread of its own, and its `Consumer.seek` calls aiokafka
from the event loop's thread, racing the fetch: the fetcher then crashed with a KeyError and the
worker read nothing more (found by tests/integration/test_exactly_once.py). `seek_wait` runs the
seek in the consumer's thread.
"""

from __future__ import annotations

import logging

import faust
from aiokafka.errors import IllegalStateError
from faust.types import TP

logger = logging.getLogger(__name__)


async def fetch_again(app: faust.App, topic: str, partition: int, offset: int) -> None:
    """Make the consumer deliver the partition again from `offset` (no-op if it was revoked)."""
    try:
        await app.consumer.seek_wait({TP(topic, partition): offset})
    except IllegalStateError:
        # Revoked meanwhile: its next owner starts from the committed offset anyway.
        logger.info(
            "seek skipped: partition no longer assigned",
            extra={"topic": topic, "partition": partition},
        )
