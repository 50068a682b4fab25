"""The facts a policy rule may check, read off a workspace's state as of one signal. Pure.

Facts are a flat dict, so that rules stay data and so that a decision can record exactly what
it saw: the signal's type and number attributes (`signal.*`; text never becomes a fact), the
counts per type in the watermark's minute and in the last hour (`minute.*`, `hour.*`, only
non-zero ones), the fresh queue gauges (`queue.*`) and the derived health (`health.*`).
"""

from __future__ import annotations

from typing import Any, cast

from core.health import fresh_gauge, score_health
from core.windows import Observation, WorkspaceState, hour_counts, hour_start, minute_counts
from topics.signals import SignalType

_PUBLISH_FAILED = SignalType.PUBLISH_FAILED.value
_ERROR_REPORTED = SignalType.ERROR_REPORTED.value


def facts_of(state: WorkspaceState, observation: Observation) -> dict[str, Any]:
    """The facts as of the observation just folded into the state."""
    facts: dict[str, Any] = {"signal.type": observation.signal_type.value}
    for name, value in observation.attributes.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            facts[f"signal.{name}"] = value
    for type_name, count in minute_counts(state).items():
        facts[f"minute.{type_name}"] = count
    hour = hour_counts(state)
    for type_name, count in hour.items():
        facts[f"hour.{type_name}"] = count
    # The observation just folded moved the watermark: it is set.
    watermark = cast(int, state["watermark"])
    fresh_from = hour_start(watermark)
    pending = fresh_gauge(state, SignalType.QUEUE_DEPTH, fresh_from)
    oldest_age = fresh_gauge(state, SignalType.OLDEST_PENDING_AGE, fresh_from)
    if pending is not None:
        facts["queue.pending"] = pending
    if oldest_age is not None:
        facts["queue.oldest_pending_age_seconds"] = oldest_age
    health = score_health(
        watermark,
        pending,
        oldest_age,
        hour.get(_PUBLISH_FAILED, 0),
        hour.get(_ERROR_REPORTED, 0),
    )
    facts["health.score"] = health.score
    facts["health.status"] = health.status.value
    return facts
