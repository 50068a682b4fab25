"""A Kafka client's error repeated at every retry is logged once per interval, with a count of
what was held back; other loggers' lines are never held back."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from agents.log_repeats import RepeatFilter
from tests.support.clock import Clock


@pytest.fixture
def logged() -> Iterator[tuple[list[io.StringIO], Clock]]:
    """Two handlers on the root of the test's loggers, sharing one filter, as a worker's root
    logger's handlers do."""
    root = logging.getLogger("rt")
    root.propagate = False
    clock = Clock()
    repeats = RepeatFilter(interval=10.0, loggers=("rt.aiokafka",), clock=clock)
    streams = [io.StringIO(), io.StringIO()]
    for stream in streams:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        handler.addFilter(repeats)
        root.addHandler(handler)
    try:
        yield streams, clock
    finally:
        root.handlers.clear()


def lines(streams: list[io.StringIO]) -> list[str]:
    [first, second] = [stream.getvalue().splitlines() for stream in streams]
    assert first == second  # every handler writes the same lines
    return first


def test_a_repeated_client_error_is_logged_once_per_interval_with_a_count(
    logged: tuple[list[io.StringIO], Clock],
) -> None:
    streams, clock = logged
    client = logging.getLogger("rt.aiokafka.client")
    # When the same error is logged five times within the interval (other nodes' arguments)
    for node in range(5):
        client.error("Unable connect to node with id %s: %s", node, "refused")
        clock.now += 1.0
    # And another message once
    client.error("Unable to update metadata from [%s]", 1)
    # And the first error again once the interval has passed
    clock.now += 10.0
    client.error("Unable connect to node with id %s: %s", 7, "refused")
    # Then the first of each is logged, and the next says how many were held back
    assert lines(streams) == [
        "rt.aiokafka.client ERROR Unable connect to node with id 0: refused",
        "rt.aiokafka.client ERROR Unable to update metadata from [1]",
        "rt.aiokafka.client ERROR Unable connect to node with id 7: refused "
        "(4 more like it in the 15 s before, not logged)",
    ]


def test_lines_of_other_loggers_and_below_warning_are_never_held_back(
    logged: tuple[list[io.StringIO], Clock],
) -> None:
    streams, _ = logged
    own = logging.getLogger("rt.engine")
    own.setLevel(logging.INFO)
    client = logging.getLogger("rt.aiokafka.consumer")
    client.setLevel(logging.INFO)
    for _ in range(3):
        own.warning("commit failed; the partition resumes")
        client.info("Discovered coordinator %s", 1)
    assert (
        lines(streams)
        == [
            "rt.engine WARNING commit failed; the partition resumes",
            "rt.aiokafka.consumer INFO Discovered coordinator 1",
        ]
        * 3
    )
