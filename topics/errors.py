"""The one root error of Autopilot, and the errors of the action contract (actions/reconciler.py);
infrastructure errors are translated with `raise ... from`."""

from __future__ import annotations

from typing import ClassVar


class AutopilotError(Exception):
    """Base of every error Autopilot raises on purpose; the message tells an operator what to do."""


class ConfigurationError(AutopilotError):
    """A setting is missing or invalid."""


class BrokerUnavailableError(AutopilotError):
    """No Kafka broker could be found or started."""


class ActionError(AutopilotError):
    """An action that did not succeed; `retryable` says whether another attempt may."""

    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, *, provider: str | None = None) -> None:
        super().__init__(reason)
        # The provider that failed, for its circuit breaker; None: the action's own provider.
        self.provider = provider


class RetryableError(ActionError):
    """A transient failure (timeout, connection refused, 5xx, 429): try again after a backoff."""

    retryable = True

    def __init__(
        self, reason: str, *, provider: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason, provider=provider)
        # Seconds the provider asked us to wait (Retry-After); the backoff cap still applies.
        self.retry_after = retry_after


class NotReadyError(RetryableError):
    """The provider answered, and what it reports is not there yet (a workspace not healthy
    yet): check again after a backoff. Its breaker counts the answer as a success."""


class TerminalError(ActionError):
    """A failure another attempt cannot fix (a 4xx, a missing setting): dead-letter it."""


class NotConfiguredError(TerminalError):
    """A setting the action needs is unset; the reason names the variable."""
