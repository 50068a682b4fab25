"""Making Faust's consumer fetch a partition again from an offset, safely; and writing a
partition's table state outside its stream.

Faust runs its aiokafka consumer in a thread of its own, and its `Consumer.seek` calls aiokafka
from the event loop's thread, racing the fetch: the fetcher then crashed with a KeyError and the
worker read nothing more (found by tests/integration/test_exactly_once.py). `seek_wait` runs the
seek in the consumer's thread.

A partition can also stall for good: observed, a shard's last seven records never delivered
after a rebalance, seek or not. The cause is not proven; one candidate is Faust's back-pressure,
which stops fetching a partition whose stream buffer fills and starts again on a callback that
a rebalance can lose. So the aggregate reads such a tail itself (agents/gap_reader.py) rather
than rely on the seek, and releases the partition from back-pressure (`release`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from aiokafka.errors import IllegalStateError
from faust import streams as faust_streams
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


def release(app: faust.App, topic: str, partition: int) -> None:
    """Fetch the partition again if Faust still holds it back for a full stream buffer. Only
    for a partition whose stream is idle: a lane waiting its turn has a full buffer for real,
    and fetching more for it blocks every stream of the worker until the lane moves."""
    app.consumer.on_buffer_drop(TP(topic, partition))


@contextmanager
def current(event: Any) -> Iterator[None]:
    """Make `event` the current one in this task, as Faust's stream does for each event it
    yields: a table's writes go to the store and changelog partition of the current event."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)
