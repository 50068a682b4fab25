"""A worker: the Faust app with every agent attached."""

from __future__ import annotations

from agents import aggregate, decide, execute
from app.faust_app import Autopilot, create_app
from app.settings import Settings


def build_worker(settings: Settings, bootstrap: str) -> Autopilot:
    """The app a worker process runs: aggregate, decide and execute on one broker."""
    autopilot = create_app(settings, bootstrap)
    aggregate.attach(autopilot)
    decide.attach(autopilot)
    execute.attach(autopilot)
    return autopilot
