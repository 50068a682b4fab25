"""aiokafka 0.14's KeyError from a produce request whose batch had already failed is logged as
what it is, not as an exception never retrieved; every other unhandled error still reaches the
loop's handler."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from engine.transactions import tolerate_stale_produce_requests


class Sender:
    """Stands in for aiokafka's sender: its produce request task has the same name."""

    async def _send_produce_req(self) -> None:
        raise KeyError("a batch no longer pending")

    async def _other_request(self) -> None:
        raise ValueError("a real bug")


async def test_only_the_stale_produce_request_error_is_told_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    tolerate_stale_produce_requests(loop)
    sender = Sender()

    with caplog.at_level(logging.WARNING, logger="engine.transactions"):
        for coroutine in (sender._send_produce_req(), sender._other_request()):
            task = asyncio.create_task(coroutine)
            await asyncio.sleep(0)
            del task  # never awaited: collected with its exception unretrieved
            gc.collect()

    assert [type(context["exception"]).__name__ for context in seen] == ["ValueError"]
    # (A worker's log filter may have added the extras to the message: its start is ours.)
    (logged,) = caplog.records
    assert logged.getMessage().startswith(
        "a produce request of a failed batch ended in aiokafka's KeyError; nothing lost"
    )
    loop.set_exception_handler(None)
