"""A realistic, reproducible stream of signals for the demo, the benchmark and the tests."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from topics.signals import Signal, SignalType

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
}


def workspace_ids(count: int) -> list[str]:
    """Stable workspace ids of the platform's form."""
    return [f"ws-{n:06d}" for n in range(count)]


def realistic_stream(
    *, workspaces: int, signals: int, start: datetime, span_seconds: int, seed: int = 7
) -> list[Signal]:
    """Signals in event-time order; a few noisy workspaces send far more than the rest."""
    rng = random.Random(seed)
    ids = workspace_ids(workspaces)
    # Zipf-like skew: the 1/(rank+1) weights make the first workspaces the noisy ones.
    weights = [1 / (rank + 1) ** 0.8 for rank in range(workspaces)]
    chosen = rng.choices(ids, weights=weights, k=signals)
    types = rng.choices(list(TYPE_WEIGHTS), weights=list(TYPE_WEIGHTS.values()), k=signals)
    out = []
    for n, (workspace_id, signal_type) in enumerate(zip(chosen, types, strict=True)):
        attributes: dict[str, str | int | float | bool | None] = {}
        if signal_type is SignalType.HEALTH_DEGRADED:
            attributes["health_score"] = rng.randint(20, 79)
        elif signal_type is SignalType.WEBHOOK_FAILED:
            attributes["status"] = rng.choice([500, 502, 503, 504])
        out.append(
            Signal(
                id=f"{seed}-{n}",
                workspace_id=workspace_id,
                type=signal_type,
                occurred_at=start + timedelta(seconds=span_seconds * n / signals),
                source=SOURCES[signal_type],
                attributes=attributes,
            )
        )
    return out
