"""Integration fixtures: one real broker per test session, fresh topics and worker per test."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from app.kafka_admin import ensure_topics
from app.settings import Settings, load_settings
from tests.integration.http import SANDBOX_KEYS, TOKENS
from tests.integration.postgres import (
    PostgresUnavailableError,
    create_database,
    drop_database,
    postgres_server,
)
from tools.broker import provide_bootstrap
from tools.sandbox import Sandbox, SandboxThread
from tools.worker_process import WorkerProcess

WAIT_SECONDS = 60.0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS, else a container, else the local Maven-assembled broker."""
    settings = load_settings()
    with provide_bootstrap(settings.kafka_bootstrap_servers, settings.cache_dir) as bootstrap:
        yield bootstrap


async def fresh_deployment(bootstrap: str, partitions: int = 4) -> Settings:
    """Settings of a deployment of its own on the broker: topic prefix and consumer group,
    topics created."""
    run = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings(
        kafka_bootstrap_servers=bootstrap,
        topic_prefix=f"{run}.",
        app_id=f"autopilot-{run}",
        partitions=partitions,
    )
    await ensure_topics(settings, bootstrap)
    return settings


async def delete_deployment(settings: Settings) -> None:
    """Delete a test's topics once it is done: the broker of a whole run holds every test's
    partitions open otherwise, and a run's worth of them came near the open-files limit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        mine = [
            name
            for name in await admin.list_topics()
            if name.startswith((settings.topic_prefix, settings.app_id))
        ]
        if mine:
            await admin.delete_topics(mine)
    finally:
        await admin.close()


@pytest.fixture
async def settings(kafka_bootstrap: str) -> AsyncIterator[Settings]:
    """Settings for one test: its own topic prefix and consumer group, topics created (and
    deleted after the test)."""
    deployment = await fresh_deployment(kafka_bootstrap)
    yield deployment
    await delete_deployment(deployment)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (installed by `make tools`) for the browser tests; a test skips,
    saying so, without it."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip(
            "chromium is not installed: run `make tools` (Debian: apt-get install chromium)"
        )
    return binary


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """The platform's control API, a webhook receiver and an LLM: a real server on loopback."""
    with SandboxThread(
        control_token=SANDBOX_KEYS["control_token"],
        signing_key=SANDBOX_KEYS["signing_key"],
        llm_key=SANDBOX_KEYS["llm_key"],
    ) as server:
        yield server


def sandbox_env(server: Sandbox) -> dict[str, str]:
    """A worker's settings for reaching the sandbox (fast retries, so tests stay short)."""
    return {
        "AUTOPILOT_CONTROL_API_URL": server.url,
        "AUTOPILOT_CONTROL_API_TOKEN": SANDBOX_KEYS["control_token"],
        "AUTOPILOT_WEBHOOK_SIGNING_KEY": SANDBOX_KEYS["signing_key"],
        "AUTOPILOT_LLM_BASE_URL": server.llm_base_url,
        "AUTOPILOT_LLM_API_KEY": SANDBOX_KEYS["llm_key"],
        "AUTOPILOT_LLM_MODEL": "sandbox-writer",
        "AUTOPILOT_RETRY_BASE_SECONDS": "0.2",
        "AUTOPILOT_RETRY_CAP_SECONDS": "1",
        "AUTOPILOT_HTTP_TIMEOUT_SECONDS": "5",
    }


@pytest.fixture
def start_worker(
    settings: Settings, kafka_bootstrap: str, tmp_path: Path, sandbox: Sandbox
) -> Iterator[StartWorker]:
    """Start `python -m app worker` processes for this test; all are stopped afterwards.

    Workers get the test tokens (tests/integration/http.py) and this test's sandbox as the
    platform; `env` adds or overrides variables, and `data` names the data dir (workers sharing
    one, in turn, find each other's state).
    """
    started: list[WorkerProcess] = []

    def start(env: dict[str, str] | None = None, data: str = "data") -> WorkerProcess:
        worker = WorkerProcess.for_deployment(
            settings, kafka_bootstrap, tmp_path, log_level="info", name=f"worker-{len(started)}"
        )
        worker.env.update(
            {
                **TOKENS,
                **sandbox_env(sandbox),
                "AUTOPILOT_DATA_DIR": str(tmp_path / data),
                # The live projector is the projection tests' subject (they switch it on); off
                # elsewhere, so timing-sensitive tests do not share their two cores with it.
                "AUTOPILOT_PROJECTOR_ENABLED": "false",
                **(env or {}),
            }
        )
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """AUTOPILOT_TEST_POSTGRES_URL, else a throwaway local server; skips, saying why, without."""
    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailableError as exc:
            pytest.skip(f"no PostgreSQL for the tests: {exc}")
        yield url


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new, empty database on the session's PostgreSQL server for one test; dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = create_database(postgres_url, name)
    yield url
    drop_database(postgres_url, name)
