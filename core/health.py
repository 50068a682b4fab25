"""The health score of a workspace (shared/DESIGN.md), derived from its windowed state. Pure.

Start at 100 and deduct: 20 when the queue is saturated (more than 50 pending), 15 when the
oldest pending job is older than 30 minutes, 10 when publishing failed in the last hour, 5 per
error in the last hour; never below 0. Healthy at 80 and above, degraded from 50, critical below.
A gauge reading counts only while it is inside the last hour: a queue that stopped reporting is
not saturated forever. Everything is as of the workspace's watermark (event time), never now.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from core.windows import WorkspaceState, hour_counts, hour_start
from topics.signals import SignalType

QUEUE_SATURATED_PENDING = 50
QUEUE_SATURATED_POINTS = 20
OLD_PENDING_SECONDS = 30 * 60
OLD_PENDING_POINTS = 15
PUBLISH_FAILURES_POINTS = 10
POINTS_PER_ERROR = 5
HEALTHY_FROM = 80
DEGRADED_FROM = 50


class HealthStatus(StrEnum):
    """The band a score falls in."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Deduction:
    """Points taken off, and why."""

    reason: str
    points: int


@dataclass(frozen=True, slots=True)
class Health:
    """A score, its band, the deductions that made it and the inputs they were read from."""

    score: int
    status: HealthStatus
    deductions: tuple[Deduction, ...]
    inputs: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """The JSON shape the HTTP view returns."""
        return {
            "score": self.score,
            "status": self.status.value,
            "deductions": [{"reason": d.reason, "points": d.points} for d in self.deductions],
            "inputs": self.inputs,
        }


def status_of(score: int) -> HealthStatus:
    """The band of a score."""
    if score >= HEALTHY_FROM:
        return HealthStatus.HEALTHY
    if score >= DEGRADED_FROM:
        return HealthStatus.DEGRADED
    return HealthStatus.CRITICAL


def health_of(state: WorkspaceState) -> Health:
    """The workspace's health as of its watermark."""
    watermark = state["watermark"]
    if watermark is None:
        return score_health(None, None, None, 0, 0)
    fresh_from = hour_start(watermark)
    hour = hour_counts(state)
    return score_health(
        watermark,
        fresh_gauge(state, SignalType.QUEUE_DEPTH, fresh_from),
        fresh_gauge(state, SignalType.OLDEST_PENDING_AGE, fresh_from),
        hour.get(SignalType.PUBLISH_FAILED.value, 0),
        hour.get(SignalType.ERROR_REPORTED.value, 0),
    )


def score_health(
    as_of: int | None,
    pending: Any,
    oldest_age: Any,
    publish_failures: int,
    errors: int,
) -> Health:
    """The health of these inputs (gauges already filtered for freshness)."""
    deductions = []
    if pending is not None and pending > QUEUE_SATURATED_PENDING:
        deductions.append(
            Deduction(
                f"queue saturated: {pending} pending > {QUEUE_SATURATED_PENDING}",
                QUEUE_SATURATED_POINTS,
            )
        )
    if oldest_age is not None and oldest_age > OLD_PENDING_SECONDS:
        deductions.append(
            Deduction(
                f"oldest pending job: {oldest_age:g} s > {OLD_PENDING_SECONDS} s",
                OLD_PENDING_POINTS,
            )
        )
    if publish_failures:
        deductions.append(
            Deduction(
                f"publish failures in the last hour: {publish_failures}",
                PUBLISH_FAILURES_POINTS,
            )
        )
    if errors:
        deductions.append(
            Deduction(f"errors in the last hour: {errors}", POINTS_PER_ERROR * errors)
        )
    score = max(0, 100 - sum(d.points for d in deductions))
    return Health(
        score=score,
        status=status_of(score),
        deductions=tuple(deductions),
        inputs={
            "as_of": as_of,
            "pending": pending,
            "oldest_pending_age_seconds": oldest_age,
            "publish_failures_last_hour": publish_failures,
            "errors_last_hour": errors,
        },
    )


def fresh_gauge(state: WorkspaceState, gauge: SignalType, fresh_from: int) -> Any:
    """The gauge's latest reading if it was taken inside the hour, else None."""
    reading = state["gauges"].get(gauge.value)
    if reading is None or reading[0] < fresh_from:
        return None
    return reading[1]
