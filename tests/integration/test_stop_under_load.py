"""Workers of one group stopped with SIGTERM under a steady stream, again and again (issue #13).

A stop first lets the signal stage's engine commit what it processed and close its partition
stores, then closes the tables' RocksDB stores last, after the agents, the timers and the
executor's actions have ended and every changelog write was acknowledged (agents/faust_app.py,
agents/rocksdb_store.py). Each stop must end the worker with exit code 0 and a closed event
loop, never with a native crash; afterwards every store, the engine's and the executions
table's, reopens and holds only what its changelog holds.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from app.settings import Settings
from tests.integration.conftest import StartWorker
from tests.integration.http import wait_until_answers
from tests.integration.stores import (
    ENGINE_OFFSET_KEY,
    FAUST_OFFSET_KEY,
    engine_stores,
    faust_stores,
    store_problems,
)
from tests.integration.streams import publish_one_per_record
from tools.worker_process import WorkerProcess
from tools.workload import realistic_stream
from topics.catalog import EXECUTIONS_TABLE, SIGNAL_STAGE, stage_changelog

pytestmark = pytest.mark.integration

WORKERS = 3
STOPS = 6
# Signals per second, one per record, as any Kafka client sends them.
RATE = 200
SETTLE_SECONDS = 6.0
START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


async def stream_steadily(settings: Settings) -> None:
    """Publish RATE signals a second, one second's worth at a time, until cancelled."""
    seed = 0
    while True:
        seed += 1
        began = asyncio.get_running_loop().time()
        await publish_one_per_record(
            settings,
            realistic_stream(workspaces=200, signals=RATE, start=START, span_seconds=60, seed=seed),
        )
        await asyncio.sleep(max(0.0, 1.0 - (asyncio.get_running_loop().time() - began)))


def assert_stopped_cleanly(worker: WorkerProcess, returncode: int | None) -> None:
    """Exit code 0, the event loop closed, and no native crash in the log."""
    log = worker.log_path.read_text(errors="replace")
    assert returncode == 0, f"exit code {returncode}\n{worker.log_tail(80)}"
    assert "Fatal Python error" not in log, worker.log_tail(80)
    assert "Closing event loop" in log, worker.log_tail(80)


async def test_workers_stopped_under_load_exit_cleanly_and_keep_their_state(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    # Given three workers of one group, each on its own data directory, under a steady stream
    workers = [start_worker(data=f"data-{n}") for n in range(WORKERS)]
    for worker in workers:
        await wait_until_answers(worker)
    stream = asyncio.create_task(stream_steadily(settings))
    try:
        # When each in turn is stopped with SIGTERM and started again while records flow
        for stop in range(STOPS):
            n = stop % WORKERS
            returncode = await asyncio.to_thread(workers[n].stop)
            # Then every stop is clean
            assert_stopped_cleanly(workers[n], returncode)
            workers[n] = start_worker(data=f"data-{n}")
            await wait_until_answers(workers[n])
            await asyncio.sleep(SETTLE_SECONDS)
    finally:
        stream.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stream
    for worker in workers:
        assert_stopped_cleanly(worker, await asyncio.to_thread(worker.stop))

    # And every partition store reopens, holding only values its changelog holds
    data_dirs = [workers[0].log_path.parent / f"data-{n}" for n in range(WORKERS)]
    checks = {
        SIGNAL_STAGE: (
            stage_changelog(settings.app_id, SIGNAL_STAGE),
            engine_stores(data_dirs, SIGNAL_STAGE),
            ENGINE_OFFSET_KEY,
        ),
        EXECUTIONS_TABLE: (
            f"{settings.app_id}-{EXECUTIONS_TABLE}-changelog",
            faust_stores(data_dirs, EXECUTIONS_TABLE),
            FAUST_OFFSET_KEY,
        ),
    }
    for name, (changelog, stores, offset_key) in checks.items():
        problems, checked = await store_problems(
            settings.kafka_bootstrap_servers, changelog, stores, offset_key, settings.partitions
        )
        assert problems == [], "\n".join(problems[:20])
        assert checked > 0, f"no {name} value stored by any worker"
