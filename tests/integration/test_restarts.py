"""A worker stopped and started again on its data directory: the ledger's chains go on.

Every entry is sealed onto its chain's head (core/chain.py). A new worker learns the heads of
a workspace's decision chain from the signal stage's state (restored from its changelog), and
those of its actions' chain by reading the ledger. A restart, clean or not, must continue the
chains, never start them afresh: `autopilot ledger verify` holds, with entries of both sides of
the restart on the same chains.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from app.settings import Settings
from core.chain import read_link
from projections.ledger_reader import read_records_to_end
from tests.integration.commands import autopilot_cli
from tests.integration.conftest import StartWorker
from tests.integration.streams import publish_one_per_record, wait_folded
from tools.workload import realistic_stream

pytestmark = pytest.mark.integration

WORKSPACES = 40
SIGNALS = 400
START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def verify(settings: Settings) -> dict[str, object]:
    """`autopilot ledger verify --json`, asserted to exit 0 with no broken chain."""
    result = autopilot_cli(settings, "ledger", "verify", "--json")
    report = orjson.loads(result.stdout) if result.stdout.strip() else {}
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert report["broken"] == []
    return report


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
async def test_chains_go_on_across_a_worker_restart(
    settings: Settings, start_worker: StartWorker, stop: str
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap, ledger = settings.kafka_bootstrap_servers, settings.topic("ledger")
    # Given a worker that folded a first stream of signals (one per record, as kcat sends them)
    worker = start_worker()
    first = realistic_stream(
        workspaces=WORKSPACES, signals=SIGNALS, start=START, span_seconds=3600, monitoring=True
    )
    await publish_one_per_record(settings, first)
    await wait_folded(settings, SIGNALS)
    before = await read_records_to_end(bootstrap, ledger, timeout=60)
    # (the executors may have added outcomes since)
    assert verify(settings)["checked"] >= sum(len(records) for records in before.values())
    ends = {partition: len(records) and records[-1][0] + 1 for partition, records in before.items()}

    # When it is stopped and a new worker starts on the same data directory
    if stop == "SIGTERM":
        assert worker.stop() == 0, worker.log_tail()
    else:
        worker.kill()
    start_worker()
    second = realistic_stream(
        workspaces=WORKSPACES,
        signals=SIGNALS,
        start=START + timedelta(hours=1),
        span_seconds=3600,
        seed=8,
        monitoring=True,
    )
    await publish_one_per_record(settings, second)
    await wait_folded(settings, 2 * SIGNALS)

    # Then every chain holds
    verify(settings)
    # And the new worker's entries continue the chains the first one wrote
    after = await read_records_to_end(bootstrap, ledger, timeout=60)
    last_hash: dict[str, str] = {}
    continued: set[str] = set()
    for partition, records in after.items():
        for offset, raw in records:
            link = read_link(raw, partition, None)
            # A workspace's chains: its decisions' and its actions'.
            if link.hash is None or not link.chain.startswith(("ws-", "actions:")):
                continue
            if offset >= ends[partition] and link.chain in last_hash:
                assert link.prev_hash == last_hash[link.chain], f"{link.chain} started afresh"
                continued.add(link.chain.removeprefix("actions:"))
            last_hash[link.chain] = link.hash
    assert len(continued) >= WORKSPACES // 2
