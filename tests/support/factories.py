"""Builders and constants shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.rules import seed_policy
from topics.signals import Signal, SignalType, signal_from

# The policy shipped with Autopilot, as every test that does not bring its own uses it.
SEED_POLICY = seed_policy()

# The unit tests' epoch: a multiple of 60 and of 86,400 (day 19,723 since 1970), so minute,
# hour and day windows all start on it.
T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200


def signal_at(
    signal_id: str,
    at: float,
    signal_type: SignalType,
    workspace_id: str = "ws-1",
    **attributes: Any,
) -> Signal:
    """A signal `at` seconds after T0."""
    return signal_from(
        {
            "id": signal_id,
            "workspace_id": workspace_id,
            "type": signal_type,
            "occurred_at": T0 + timedelta(seconds=at),
            "attributes": attributes,
        }
    )


# Credentials of the in-process sandbox platform in unit tests: test values, not secrets.
CONTROL_TOKEN = "control-token-for-tests"
SIGNING_KEY = "signing-key-for-tests"
LLM_KEY = "llm-key-for-tests"
