"""A worker: the Faust app with every agent and HTTP view attached."""

from __future__ import annotations

from agents import aggregate, decide, execute
from app import views
from app.faust_app import Autopilot, create_app
from app.settings import Settings


def build_worker(settings: Settings, bootstrap: str) -> Autopilot:
    """The app a worker process runs: aggregate, decide, execute and the web views."""
    autopilot = create_app(settings, bootstrap)
    states = aggregate.attach(autopilot)
    decide.attach(autopilot)
    execute.attach(autopilot)
    views.attach(autopilot, states)
    return autopilot
