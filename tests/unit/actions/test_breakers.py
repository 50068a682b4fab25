"""The worker's breakers, one per provider: what callers are told, the state changes reported
for the ledger (in order, with their failure counts), and providers kept apart."""

from __future__ import annotations

from actions.breakers import Breakers
from core.breaker import BreakerConfig, BreakerState

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CONFIG = BreakerConfig(failure_threshold=3, cooldown_seconds=30.0)
T0 = 1_000.0

Change = tuple[str, BreakerState, int]


class World:
    """Breakers on a clock the test moves, with every reported change kept in order."""

    def __init__(self) -> None:
        self.clock = [T0]
        self.changes: list[Change] = []

        async def on_change(provider: str, state: BreakerState, failures: int) -> None:
            self.changes.append((provider, state, failures))

        self.breakers = Breakers(CONFIG, on_change, clock=lambda: self.clock[-1])

    def at(self, now: float) -> None:
        self.clock.append(now)

    async def fail(self, provider: str, times: int) -> None:
        for _ in range(times):
            await self.breakers.record(provider, ok=False)


async def test_a_provider_never_called_is_closed_and_admitted() -> None:
    """Given a fresh worker, then any provider is closed, admitted, and not yet listed."""
    world = World()

    assert world.breakers.state("smtp") is CLOSED
    assert world.breakers.states() == {}
    assert await world.breakers.admit("smtp") is None
    assert world.breakers.states() == {"smtp": "closed"}
    assert world.changes == []


async def test_open_half_open_closed_is_reported_once_each_in_order() -> None:
    """Given three failures at T0, a trial admitted at T0 + 30 and its success at T0 + 31,
    then on_change saw exactly OPEN (3 failures), HALF_OPEN (3) and CLOSED (3)."""
    world = World()
    await world.fail("smtp", 3)
    world.at(T0 + 30.0)
    assert await world.breakers.admit("smtp") is None
    world.at(T0 + 31.0)

    await world.breakers.record("smtp", ok=True)

    assert world.changes == [("smtp", OPEN, 3), ("smtp", HALF_OPEN, 3), ("smtp", CLOSED, 3)]
    assert world.breakers.state("smtp") is CLOSED


async def test_failures_below_the_threshold_report_nothing() -> None:
    """Given two failures and a success, then nothing changed and nothing was reported."""
    world = World()
    await world.fail("smtp", 2)
    await world.breakers.record("smtp", ok=True)
    await world.fail("smtp", 2)

    assert world.changes == []
    assert world.breakers.states() == {"smtp": "closed"}


async def test_a_refused_caller_is_told_how_many_seconds_to_wait() -> None:
    """Given a breaker opened at T0 with a 30 s cool-down, then a caller at T0 + 10 waits 20 s,
    and one at T0 + 30 is admitted as the trial."""
    world = World()
    await world.fail("smtp", 3)

    world.at(T0 + 10.0)
    assert await world.breakers.admit("smtp") == 20.0
    world.at(T0 + 30.0)
    assert await world.breakers.admit("smtp") is None
    assert world.breakers.state("smtp") is HALF_OPEN


async def test_a_second_caller_during_the_trial_waits_a_second() -> None:
    """Given a trial admitted at T0 + 30, then a caller at T0 + 30.5 is told to wait 1 s, and
    no second HALF_OPEN is reported."""
    world = World()
    await world.fail("smtp", 3)
    world.at(T0 + 30.0)
    await world.breakers.admit("smtp")

    world.at(T0 + 30.5)

    assert await world.breakers.admit("smtp") == 1.0
    assert world.changes == [("smtp", OPEN, 3), ("smtp", HALF_OPEN, 3)]


async def test_a_failed_trial_reports_open_again() -> None:
    """Given a trial admitted at T0 + 30, when it fails at T0 + 32, then OPEN is reported
    again and callers wait until T0 + 62."""
    world = World()
    await world.fail("smtp", 3)
    world.at(T0 + 30.0)
    await world.breakers.admit("smtp")
    world.at(T0 + 32.0)

    await world.fail("smtp", 1)

    assert world.changes == [("smtp", OPEN, 3), ("smtp", HALF_OPEN, 3), ("smtp", OPEN, 4)]
    world.at(T0 + 40.0)
    assert await world.breakers.admit("smtp") == 22.0


async def test_each_failed_trial_reports_one_more_consecutive_failure() -> None:
    """Given three failures, then two failed trials without a success in between, then the
    breaker.opened entries count 3, 4 and 5 consecutive failures."""
    world = World()
    await world.fail("smtp", 3)
    for now in (T0 + 30.0, T0 + 60.0):
        world.at(now)
        await world.breakers.admit("smtp")
        await world.fail("smtp", 1)

    opened = [failures for _, state, failures in world.changes if state is OPEN]
    assert opened == [3, 4, 5]


async def test_a_failure_reported_while_open_reports_nothing() -> None:
    """Given an open breaker, when a call admitted earlier fails, then nothing is reported."""
    world = World()
    await world.fail("smtp", 3)
    world.at(T0 + 5.0)

    await world.fail("smtp", 2)

    assert world.changes == [("smtp", OPEN, 3)]
    assert await world.breakers.admit("smtp") == 25.0


async def test_providers_are_independent() -> None:
    """Given the control API failing three times and the LLM once, then only the control API
    is open: the LLM is still admitted and states() lists both, sorted."""
    world = World()
    await world.fail("control_api", 3)
    await world.fail("llm", 1)

    assert await world.breakers.admit("llm") is None
    assert await world.breakers.admit("control_api") == 30.0
    assert world.breakers.states() == {"control_api": "open", "llm": "closed"}
    assert world.changes == [("control_api", OPEN, 3)]

    await world.fail("llm", 2)
    assert world.breakers.states() == {"control_api": "open", "llm": "open"}
    assert world.changes == [("control_api", OPEN, 3), ("llm", OPEN, 3)]
