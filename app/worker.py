"""A worker: the Faust app hosting the signal stage's engine, with the execute agents and every
HTTP view attached."""

from __future__ import annotations

import logging

from agents import execute, project
from agents.faust_app import Autopilot, create_app
from agents.signal_engine import SignalEngine
from app import approval_views, operator_views, views
from app.settings import Settings

logger = logging.getLogger(__name__)


def build_worker(settings: Settings, bootstrap: str) -> Autopilot:
    """The app a worker process runs: the signal stage (fold and decide), the executors and
    the web views."""
    policy = settings.policy()
    logger.info(
        "policy loaded",
        extra={"policy_version": policy.version, "rules": len(policy.spec.rules)},
    )
    autopilot = create_app(settings, bootstrap)
    signals = SignalEngine(settings, bootstrap, policy, str(autopilot.app.conf.canonical_url))
    autopilot.app.host(signals.engine)
    limits = policy.limits
    _, executor = execute.attach(
        autopilot, signals, bootstrap, limits.interval_seconds * (limits.defer_max_intervals + 1)
    )
    views.attach(autopilot, signals)
    operator_views.attach(autopilot, signals, executor)
    approval_views.attach(autopilot)
    if settings.projector_enabled:
        project.attach(autopilot, bootstrap)
    return autopilot
