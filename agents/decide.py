"""The decide agent: observations in, the policy applied, decisions to the ledger, commands out."""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from agents.boundary import crash_on_unexpected
from agents.emit import send_command, send_entry
from agents.policy import SEED_POLICY, Policy, decide, decision_events
from app.faust_app import Autopilot
from topics.observations import decode_observations


def attach(autopilot: Autopilot, policy: Policy = SEED_POLICY) -> None:
    """Register the decide agent on the app."""

    @autopilot.app.agent(autopilot.observations, name="decide")
    async def decide_agent(stream: faust.StreamT[bytes]) -> None:
        with crash_on_unexpected("decide"):
            async for raw in stream:
                recorded_at = datetime.now(UTC)
                for observation in decode_observations(raw):
                    for decision in decide(observation, policy):
                        entry, command = decision_events(decision, recorded_at)
                        # The decision is on the ledger before its command can be executed.
                        await send_entry(autopilot, entry)
                        await send_command(autopilot, command)
