"""A worker: the Faust app hosting the signal stage's engine, with the execute agents and every
HTTP view attached."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, cast

from aiokafka.errors import KafkaError
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from agents import execute, project
from agents.faust_app import Autopilot, create_app
from agents.lanes import LaneGate
from agents.signal_engine import SignalEngine
from agents.ticker import TICK_CHECK_SECONDS, Ticker
from app import (
    approval_views,
    console_views,
    openapi_views,
    operator_views,
    parking_views,
    probe_views,
    views,
)
from app.http_access import Tokens, access_middleware
from app.metrics import WorkerMetrics
from app.probe_views import not_ready
from app.projection_reads import ProjectionReads
from app.settings import Settings
from core.rules import Policy

logger = logging.getLogger(__name__)

# How often /metrics' command counts and lane backlogs are read again.
COMMAND_COUNTS_SECONDS = 5.0


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
    gate, executor = execute.attach(
        autopilot,
        signals,
        bootstrap,
        limits.interval_seconds * (limits.defer_max_intervals + 1),
        policy.spec.parking,
        frozenset(policy.playbook_of),
    )
    ticker = run_ticker(autopilot, signals, policy)
    readiness = partial(not_ready, autopilot, signals)
    metrics = WorkerMetrics(signals, executor, readiness)
    probe_views.attach(autopilot, signals, metrics, policy.version)
    views.attach(autopilot, signals)
    operator_views.attach(autopilot, signals, executor, ticker)
    approval_views.attach(autopilot)
    reads = projection_reads(autopilot, metrics)
    count_lanes(autopilot, gate, metrics)
    console_views.attach(autopilot, signals, executor, readiness, reads, lambda: metrics.lanes)
    parking_views.attach(autopilot, reads)
    openapi_views.attach(autopilot)
    if settings.web_enabled:
        tokens = Tokens(settings.ingest_token, settings.control_token, settings.metrics_token)
        # Faust's aiohttp driver: its aiohttp Application, before the server freezes it.
        web = cast(AiohttpWeb, autopilot.app.web)
        web.web_app.middlewares.append(
            access_middleware(tokens, metrics.count_request, console_views.SIGN_IN)
        )
    if settings.projector_enabled:
        project.attach(autopilot, bootstrap)
    return autopilot


def run_ticker(autopilot: Autopilot, signals: SignalEngine, policy: Policy) -> Ticker:
    """The ticker writing the policy's schedules onto this worker's shards, every second."""
    control = autopilot.control.get_topic_name()

    async def send(shard: int, value: bytes) -> None:
        delivery = await autopilot.app.producer.send(
            control, None, value, partition=shard, timestamp=None, headers=None
        )
        await delivery

    ticker = Ticker(policy, signals.engine, send)

    async def tick() -> None:
        try:
            await ticker.tick()
        except KafkaError:
            # The next second writes it again: a tick is due until its shard acted on it.
            logger.warning("tick could not be written; trying again", exc_info=True)

    autopilot.app.timer(TICK_CHECK_SECONDS)(tick)
    return ticker


def count_lanes(autopilot: Autopilot, gate: LaneGate, metrics: WorkerMetrics) -> None:
    """/metrics' lane backlogs, counted on a timer over the lane partitions this worker has."""
    lanes = {topic.get_topic_name() for topic in autopilot.lanes.values()}

    async def count() -> None:
        assigned = autopilot.app.consumer.assignment()
        await metrics.refresh_lanes(
            gate, sorted({tp.partition for tp in assigned if tp.topic in lanes})
        )

    autopilot.app.timer(COMMAND_COUNTS_SECONDS)(count)


def projection_reads(autopilot: Autopilot, metrics: WorkerMetrics) -> ProjectionReads:
    """The worker's one reader of the projections (the console's platform reads and /metrics'
    command counts, refreshed on a timer), closed as the app shuts down."""
    reads = ProjectionReads(autopilot.settings.projections_database())

    async def count_commands() -> None:
        await metrics.refresh_commands(reads)

    async def close_reads(_app: Any, **_: Any) -> None:
        reads.close()

    autopilot.app.timer(COMMAND_COUNTS_SECONDS)(count_commands)
    # Faust types signal receivers as sync callables without keyword arguments.
    autopilot.app.on_before_shutdown.connect(close_reads)  # type: ignore[arg-type]
    return reads
