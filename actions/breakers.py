"""The worker's circuit breakers, one per provider, and the ledger entries of their changes.

The state machine is pure (core/breaker.py); this keeps one Breaker per provider in memory
(each worker judges the providers it calls) and reports every state change to `on_change`,
which the executor turns into a breaker.* ledger entry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from core.breaker import Breaker, BreakerConfig, BreakerState, admit, record

logger = logging.getLogger(__name__)

# (provider, new state, consecutive failures before the change) -> recorded somewhere durable.
OnChange = Callable[[str, BreakerState, int], Awaitable[None]]


class Breakers:
    """One breaker per provider, created closed on first use."""

    def __init__(
        self,
        config: BreakerConfig,
        on_change: OnChange,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._on_change = on_change
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}

    def state(self, provider: str) -> BreakerState:
        """The provider's breaker state (closed if never used)."""
        return self._breakers.get(provider, Breaker(provider)).state

    def states(self) -> dict[str, str]:
        """Every known breaker's state, for the operator view."""
        return {name: breaker.state.value for name, breaker in sorted(self._breakers.items())}

    async def admit(self, provider: str) -> float | None:
        """None if a call may go ahead now; else seconds until it may be tried again."""
        now = self._clock()
        admission = admit(self._breakers.get(provider, Breaker(provider)), self._config, now)
        self._breakers[provider] = admission.breaker
        if admission.transition is not None:
            await self._changed(provider, admission.transition, admission.breaker.failures)
        if admission.allowed:
            return None
        return max(0.0, (admission.retry_at or now) - now)

    async def record(self, provider: str, *, ok: bool) -> None:
        """Fold a call's result into the provider's breaker."""
        before = self._breakers.get(provider, Breaker(provider))
        breaker, transition = record(before, self._config, self._clock(), ok=ok)
        self._breakers[provider] = breaker
        if transition is not None:
            await self._changed(provider, transition, before.failures + (0 if ok else 1))

    async def _changed(self, provider: str, state: BreakerState, failures: int) -> None:
        logger.warning("circuit breaker changed", extra={"provider": provider, "state": state})
        await self._on_change(provider, state, failures)
