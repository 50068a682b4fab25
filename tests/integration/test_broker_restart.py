"""A worker rides out a broker restart: the broker stopped for 15 s under a steady stream and
started again on the same data and address, as a rolling restart does. The worker never exits,
every signal is folded once, and the ledger's chains hold."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from app.settings import load_settings
from tests.integration.commands import autopilot_cli
from tests.integration.conftest import fresh_deployment, sandbox_env
from tests.integration.http import (
    TOKENS,
    get_workspace,
    ready_answers,
    request,
    wait_until_answers,
)
from tools.local_kafka import LocalKafka, assemble
from tools.sandbox import Sandbox
from tools.worker_process import WorkerProcess
from tools.workload import realistic_stream
from topics.signals import Signal

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 15.0
WORKSPACES = 20
SIGNALS = 1_200
STREAM_SECONDS = 30.0
# How often one error may appear in the worker's log over the outage and the catch-up after it
# (about once per 10 s; without holding repeats back, over 30,000 times).
MAX_REPEATS = 200


@pytest.fixture
def own_broker() -> Iterator[LocalKafka]:
    """A broker of this test's own, since it is stopped and started again."""
    with LocalKafka(assemble(load_settings().cache_dir)) as kafka:
        yield kafka


async def stream(bootstrap: str, topic: str, signals: list[Signal]) -> None:
    """Publish at a steady rate, one signal per record; each is delivered once, outage or not
    (an idempotent producer retries through it)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        enable_idempotence=True,
        request_timeout_ms=120_000,
        linger_ms=5,
    )
    await producer.start()
    try:
        pause = STREAM_SECONDS / len(signals)
        deliveries = []
        for each in signals:
            deliveries.append(
                await producer.send(
                    topic, each.model_dump_json().encode(), key=each.workspace_id.encode()
                )
            )
            await asyncio.sleep(pause)
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()


async def test_a_worker_rides_out_a_broker_restart(
    own_broker: LocalKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap_servers
    settings = await fresh_deployment(bootstrap)
    # Signals of 30 minutes of event time: each workspace's hour window holds all of its own
    signals = realistic_stream(
        workspaces=WORKSPACES,
        signals=SIGNALS,
        start=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        span_seconds=1800,
        monitoring=True,
    )
    sent = {
        workspace: Counter(s.type.value for s in signals if s.workspace_id == workspace)
        for workspace in {s.workspace_id for s in signals}
    }
    worker = WorkerProcess.for_deployment(settings, bootstrap, tmp_path, log_level="info")
    worker.env.update({**TOKENS, **sandbox_env(sandbox), "AUTOPILOT_PROJECTOR_ENABLED": "false"})
    worker.start()
    try:
        await wait_until_answers(worker)
        # Given a steady stream of signals
        publishing = asyncio.create_task(stream(bootstrap, settings.topic("signals"), signals))
        await asyncio.sleep(5)
        # When the broker stops for 15 s and starts again on the same data and address
        await asyncio.to_thread(own_broker.halt)
        away = await ready_while(worker, OUTAGE_SECONDS)
        assert worker.alive, f"the worker exited while the broker was away\n{worker.log_tail()}"
        await asyncio.to_thread(own_broker.start)
        await asyncio.wait_for(publishing, timeout=180)
        # Meanwhile it said it was not ready, and why; and it is ready again
        assert (503, "the broker is unreachable (no group coordinator)") in away, away
        assert (await ready_answers(worker, timeout=120))[-1][0] == 200

        # Then every workspace holds exactly what was sent to it, each signal once
        deadline = time.monotonic() + 180
        states: dict[str, dict[str, object]] = {}
        while time.monotonic() < deadline:
            assert worker.alive, f"the worker exited\n{worker.log_tail()}"
            for workspace in sent:
                status, body = await get_workspace(worker, workspace)
                if status == 200:
                    states[workspace] = body
            if all(
                workspace in states and (states[workspace]["hour"] or {}).get("counts") == counts
                for workspace, counts in sent.items()
            ):
                break
            await asyncio.sleep(1)
        assert {w: (states.get(w, {}).get("hour") or {}).get("counts") for w in sent} == {
            w: dict(counts) for w, counts in sent.items()
        }
        assert {w: states[w]["duplicates"] for w in sent} == dict.fromkeys(sent, 0)
        # And the worker never exited, and every chain holds
        assert worker.alive, worker.log_tail()
        verified = autopilot_cli(settings, "ledger", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # And the worker's log stays readable: each client error that repeats at every retry
        # is there, but not tens of thousands of times
        lines = worker.log_path.read_text(errors="replace").splitlines()
        errors = Counter(_message_of(line) for line in lines if "[ERROR]" in line)
        assert errors and max(errors.values()) <= MAX_REPEATS, errors.most_common(3)
        # And no failure is left unhandled (a failed commit's records fail with it)
        assert [line for line in lines if "never retrieved" in line] == []
    finally:
        worker.stop()


async def ready_while(worker: WorkerProcess, seconds: float) -> set[tuple[int, str | None]]:
    """What GET /ready answered (status, reason), polled for `seconds`."""
    seen: set[tuple[int, str | None]] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = await request("GET", f"{worker.web_url}/ready")
        seen.add((status, body.get("reason") if isinstance(body, dict) else None))
        await asyncio.sleep(0.5)
    return seen


def _message_of(line: str) -> str:
    """A log line's message up to its first number (ids, hosts and counts differ)."""
    message = line.split("[ERROR]", 1)[1]
    return message[: next((i for i, c in enumerate(message) if c.isdigit()), len(message))]
