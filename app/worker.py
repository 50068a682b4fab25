"""A worker: the Faust app with every agent and HTTP view attached."""

from __future__ import annotations

import logging

from agents import aggregate, execute, project
from agents.faust_app import Autopilot, create_app
from app import approval_views, operator_views, views
from app.settings import Settings

logger = logging.getLogger(__name__)


def build_worker(settings: Settings, bootstrap: str) -> Autopilot:
    """The app a worker process runs: aggregate (with decide), execute and the web views."""
    policy = settings.policy()
    logger.info(
        "policy loaded",
        extra={"policy_version": policy.version, "rules": len(policy.spec.rules)},
    )
    autopilot = create_app(settings, bootstrap)
    states = aggregate.attach(autopilot, policy, bootstrap)
    limits = policy.limits
    _, executor = execute.attach(
        autopilot, states, bootstrap, limits.interval_seconds * (limits.defer_max_intervals + 1)
    )
    views.attach(autopilot, states)
    operator_views.attach(autopilot, states, executor)
    approval_views.attach(autopilot)
    if settings.projector_enabled:
        project.attach(autopilot, bootstrap)
    return autopilot
