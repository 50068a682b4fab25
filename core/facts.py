"""The facts a policy rule may check, read off a workspace's state as of one signal. Pure.

Facts are a flat mapping, so that rules stay data and so that a decision can record exactly
what it saw: the signal's type and number attributes (`signal.*`; text never becomes a fact),
the counts per type in the watermark's minute and in the last hour (`minute.*`, `hour.*`, only
non-zero ones), the fresh queue gauges (`queue.*`) and the derived health (`health.*`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

from core.health import Health, fresh_gauge, score_health
from core.windows import Observation, WorkspaceState, hour_counts, hour_start, minute_start
from topics.signals import SignalType

_PUBLISH_FAILED = SignalType.PUBLISH_FAILED.value
_ERROR_REPORTED = SignalType.ERROR_REPORTED.value
_GAUGES = {
    "queue.pending": SignalType.QUEUE_DEPTH,
    "queue.oldest_pending_age_seconds": SignalType.OLDEST_PENDING_AGE,
}


class FactReader(Mapping[str, Any]):
    """The facts as of the observation just folded into the state (or as of a sweep's or a
    timer's moment, `at`), each group computed when a check first reads it. Most signals fire
    no rule, and building every fact for each of them was a third of the time spent deciding;
    a decision records `as_dict()`.

    Read it before the state changes again (the next signal folded).
    """

    __slots__ = ("_attributes", "_health", "_hour", "_state", "_trigger", "_watermark")

    def __init__(
        self,
        state: WorkspaceState,
        observation: Observation | None,
        at: int | None = None,
        trigger: str | None = None,
    ) -> None:
        self._state = state
        # A signal's facts; a sweep or a timer has only its trigger's name (`signal.type`).
        self._trigger = observation.signal_type.value if observation is not None else trigger
        self._attributes: Mapping[str, Any] = (
            observation.attributes if observation is not None else {}
        )
        # The windows are read as of `at`, else as of the observation just folded (which moved
        # the watermark: it is set).
        self._watermark = at if at is not None else cast(int, state["watermark"])
        self._hour: dict[str, int] | None = None
        self._health: Health | None = None

    def get(self, name: str, default: Any = None) -> Any:
        group, _, key = name.partition(".")
        value: Any = None
        if group == "signal":
            value = self._trigger if key == "type" else self._number(key)
        elif group == "minute":
            value = self._minute().get(key)
        elif group == "hour":
            value = self.hour().get(key)
        elif group == "queue":
            gauge = _GAUGES.get(name)
            value = None if gauge is None else self._gauge(gauge)
        elif group == "health":
            health = self.health()
            if key == "score":
                value = health.score
            elif key == "status":
                value = health.status.value
        return default if value is None else value

    def __getitem__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def hour(self) -> dict[str, int]:
        """Per-type counts in the last hour (computed once)."""
        if self._hour is None:
            self._hour = hour_counts(self._state, self._watermark)
        return self._hour

    def health(self) -> Health:
        """The derived health (computed once)."""
        if self._health is None:
            hour = self.hour()
            self._health = score_health(
                self._watermark,
                self._gauge(SignalType.QUEUE_DEPTH),
                self._gauge(SignalType.OLDEST_PENDING_AGE),
                hour.get(_PUBLISH_FAILED, 0),
                hour.get(_ERROR_REPORTED, 0),
            )
        return self._health

    def as_dict(self) -> dict[str, Any]:
        """Every fact, as a decision records them."""
        facts: dict[str, Any] = {"signal.type": self._trigger}
        for name, value in self._attributes.items():
            if _is_number(value):
                facts[f"signal.{name}"] = value
        for type_name, count in self._minute().items():
            facts[f"minute.{type_name}"] = count
        for type_name, count in self.hour().items():
            facts[f"hour.{type_name}"] = count
        for name, gauge in _GAUGES.items():
            reading = self._gauge(gauge)
            if reading is not None:
                facts[name] = reading
        health = self.health()
        facts["health.score"] = health.score
        facts["health.status"] = health.status.value
        return facts

    def _number(self, name: str) -> Any:
        value = self._attributes.get(name)
        return value if _is_number(value) else None

    def _minute(self) -> dict[str, int]:
        return self._state["minutes"].get(str(minute_start(self._watermark)), {})

    def _gauge(self, gauge: SignalType) -> Any:
        return fresh_gauge(self._state, gauge, hour_start(self._watermark))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
