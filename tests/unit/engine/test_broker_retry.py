"""Kafka calls retried while the broker is away, and only then."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NodeNotReadyError,
)

from engine.broker_retry import broker_away, retrying


class Flaky:
    """Fails with the given errors, in order, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "answer"


async def test_a_call_is_retried_until_the_broker_answers() -> None:
    """Given a call that fails three times because the broker is away, when it is retried, then
    the fourth try's answer comes back."""
    call = Flaky(KafkaConnectionError(), NodeNotReadyError(), KafkaTimeoutError())

    assert await retrying(call, "testing", first_wait=0.001, max_wait=0.002) == "answer"
    assert call.calls == 4


async def test_a_wrong_request_is_raised_at_once() -> None:
    """Given a call the broker refuses for good, then it is raised on the first try."""
    call = Flaky(MessageSizeTooLargeError())

    with pytest.raises(MessageSizeTooLargeError):
        await retrying(call, "testing", first_wait=0.001)
    assert call.calls == 1


def test_which_errors_mean_the_broker_is_away() -> None:
    """Connection, readiness and timeouts are the broker being away; a refusal is not."""
    assert broker_away(KafkaConnectionError())
    assert broker_away(KafkaTimeoutError())
    assert not broker_away(MessageSizeTooLargeError())
    assert not broker_away(ValueError())
