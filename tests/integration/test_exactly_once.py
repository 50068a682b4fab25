"""Exactly one decision per decision id, across a SIGKILL mid-stream, on the real broker, for a
plain `read_committed` reader that de-duplicates nothing.

The signal stage commits each shard's batch (its ledger entries, commands, state changelog and
input offsets) in one transaction (docs/engine.md): a worker killed mid-batch leaves that
batch aborted, and whoever runs the shard next decides it again from the committed state. So
the ledger holds each decision once, and the decisions, verdicts under the platform cap
included, are the offline replay's. Afterwards `autopilot ledger verify` and `autopilot policy
replay` agree.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from app.client import SignalPublisher
from app.settings import Settings
from core.replay import replay_decisions
from projections.ledger_reader import read_ledger
from tests.integration.commands import autopilot_cli
from tests.integration.conftest import StartWorker
from tools.workload import realistic_stream
from topics.ledger import DECISION_KINDS, LedgerEntry

pytestmark = pytest.mark.integration

SIGNALS = 60_000
WORKSPACES = 400
DONE_WITHIN_SECONDS = 240.0


def decisions_of(entries: list[LedgerEntry]) -> dict[str, str]:
    return {e.entry_id: e.kind.value for e in entries if e.kind in DECISION_KINDS}


async def every_decision_once(settings: Settings, expected: dict[str, str]) -> None:
    """The ledger, read as written (no de-duplication): each decision id once, the offline
    replay's decisions exactly; and the ledger's own checks agree."""
    assert settings.kafka_bootstrap_servers
    raw = await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=lambda got: len(decisions_of(got)) >= len(expected),
        timeout=DONE_WITHIN_SECONDS,
        dedupe=False,
    )
    written = Counter(e.entry_id for e in raw if e.kind in DECISION_KINDS)
    assert [i for i, n in written.items() if n > 1] == []
    assert decisions_of(raw) == expected
    verified = autopilot_cli(settings, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    replayed = autopilot_cli(settings, "policy", "replay")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert " 0 diverging" in replayed.stdout, replayed.stdout


async def backlog(settings: Settings) -> dict[str, str]:
    """Publish the workload; the decisions (id -> verdict) an offline replay expects of it."""
    assert settings.kafka_bootstrap_servers
    signals = realistic_stream(
        workspaces=WORKSPACES,
        signals=SIGNALS,
        start=datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        span_seconds=2 * 3600,
        monitoring=True,
    )
    async with SignalPublisher(settings.kafka_bootstrap_servers, settings.topic("signals")) as pub:
        await pub.publish_many(signals)
    return {
        d.decision_id: d.kind.value
        for d in replay_decisions(
            signals, settings.window_config(), settings.policy(), settings.partitions
        )
    }


async def test_a_worker_killed_mid_stream_leaves_exactly_one_decision_per_id(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap, ledger = settings.kafka_bootstrap_servers, settings.topic("ledger")
    # Given a backlog of signals, and what the policy decides for them offline
    expected = await backlog(settings)
    assert len(expected) > 2_000

    # When a worker has decided part of it and is killed with SIGKILL
    first = start_worker()
    seen = await read_ledger(
        bootstrap,
        ledger,
        until=lambda got: sum(e.kind in DECISION_KINDS for e in got) >= len(expected) // 5,
        timeout=DONE_WITHIN_SECONDS,
    )
    first.kill()
    decided_before_kill = sum(e.kind in DECISION_KINDS for e in seen)
    assert decided_before_kill < len(expected), "the kill came after the stream was done"

    # And a new worker takes over the same data directory and consumer group
    start_worker()

    # Then a plain read_committed reader sees exactly the expected decisions, once each
    await every_decision_once(settings, expected)
    print(f"decisions: {len(expected)} expected, {decided_before_kill} before the kill")


async def test_a_rebalance_after_a_kill_leaves_exactly_one_decision_per_id(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap, ledger = settings.kafka_bootstrap_servers, settings.topic("ledger")
    # Given a backlog, and two workers of one group, each with its own data directory
    expected = await backlog(settings)
    doomed = start_worker(data="data-0")
    start_worker(data="data-1")
    # When one is killed mid-stream, so the other takes its shards over (their state, cap
    # slots and policy memory restored from the changelog into a data directory that never
    # held them)
    seen = await read_ledger(
        bootstrap,
        ledger,
        until=lambda got: len(decisions_of(got)) >= len(expected) // 4,
        timeout=DONE_WITHIN_SECONDS,
    )
    doomed.kill()
    assert len(decisions_of(seen)) < len(expected), "the kill came after the stream was done"
    # Then a plain read_committed reader sees exactly the expected decisions, once each, with
    # the verdicts a single owner gives (the cap's slots are committed with the decisions)
    await every_decision_once(settings, expected)
