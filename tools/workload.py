"""A realistic, reproducible stream of signals for the demo, the benchmark and the tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from topics.signals import Signal, SignalType, signal_from

# Roughly what the operator runtime this replaces saw: follow-ups and webhook failures dominate.
TYPE_WEIGHTS = {
    SignalType.FOLLOWUP_DUE: 35,
    SignalType.WEBHOOK_FAILED: 30,
    SignalType.HEALTH_DEGRADED: 15,
    SignalType.PROVISIONING_NEEDED: 10,
    SignalType.INTEGRATION_OFFLINE: 10,
}
SOURCES = {
    SignalType.FOLLOWUP_DUE: "crm-scheduler",
    SignalType.WEBHOOK_FAILED: "webhook-dispatcher",
    SignalType.HEALTH_DEGRADED: "health-monitor",
    SignalType.PROVISIONING_NEEDED: "provisioner",
    SignalType.INTEGRATION_OFFLINE: "integration-hub",
    SignalType.QUEUE_DEPTH: "job-queue",
    SignalType.OLDEST_PENDING_AGE: "job-queue",
    SignalType.PUBLISH_FAILED: "publisher",
    SignalType.ERROR_REPORTED: "api",
    SignalType.HEARTBEAT: "agent",
}
# What a platform's monitoring adds on top, when asked for (the demo): gauges, errors, liveness.
MONITORING_WEIGHTS = {
    SignalType.HEARTBEAT: 20,
    SignalType.QUEUE_DEPTH: 12,
    SignalType.OLDEST_PENDING_AGE: 6,
    SignalType.ERROR_REPORTED: 6,
    SignalType.PUBLISH_FAILED: 4,
}


def workspace_ids(count: int) -> list[str]:
    """Stable workspace ids of the platform's form."""
    return [f"ws-{n:06d}" for n in range(count)]


def realistic_stream(
    *,
    workspaces: int,
    signals: int,
    start: datetime,
    span_seconds: int,
    seed: int = 7,
    monitoring: bool = False,
) -> list[Signal]:
    """Signals in event-time order; a few noisy workspaces send far more than the rest.

    Operator signals only by default (the benchmark's workload, kept comparable across changes);
    `monitoring` mixes in gauges, errors and heartbeats, which move health scores.
    """
    rng = random.Random(seed)
    ids = workspace_ids(workspaces)
    # Zipf-like skew: the 1/(rank+1) weights make the first workspaces the noisy ones.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(workspaces)]
    chosen = rng.choices(ids, weights=weights, k=signals)
    mix = {**TYPE_WEIGHTS, **(_monitoring_mix() if monitoring else {})}
    types = rng.choices(list(mix), weights=list(mix.values()), k=signals)
    out = []
    for n, (workspace_id, signal_type) in enumerate(zip(chosen, types, strict=True)):
        out.append(
            signal_from(
                {
                    "id": f"{seed}-{n}",
                    "workspace_id": workspace_id,
                    "type": signal_type,
                    "occurred_at": start + timedelta(seconds=span_seconds * n / signals),
                    "source": SOURCES.get(signal_type, "monitor"),
                    "attributes": _attributes(signal_type, rng),
                }
            )
        )
    return out


def _monitoring_mix() -> dict[SignalType, int]:
    """MONITORING_WEIGHTS, then any other type a platform reports at weight 1 (a new signal
    type joins the demo's stream without an edit here)."""
    others = {t: 1 for t in SignalType if t not in TYPE_WEIGHTS and t not in MONITORING_WEIGHTS}
    return {**MONITORING_WEIGHTS, **others}


def _attributes(signal_type: SignalType, rng: random.Random) -> dict[str, Any]:
    if signal_type is SignalType.HEALTH_DEGRADED:
        return {"health_score": rng.randint(20, 79)}
    if signal_type is SignalType.WEBHOOK_FAILED:
        return {"status": rng.choice([500, 502, 503, 504])}
    if signal_type is SignalType.QUEUE_DEPTH:
        return {"pending": int(rng.expovariate(1 / 25))}
    if signal_type is SignalType.OLDEST_PENDING_AGE:
        return {"age_seconds": round(rng.expovariate(1 / 900), 1)}
    return {}
