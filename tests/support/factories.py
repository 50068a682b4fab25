"""Builders and constants shared by the tests."""

from __future__ import annotations

from core.rules import seed_policy

# The policy shipped with Autopilot, as every test that does not bring its own uses it.
SEED_POLICY = seed_policy()
