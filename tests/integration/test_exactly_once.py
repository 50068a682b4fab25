"""Exactly one decision per decision id, across a SIGKILL mid-stream, on the real broker.

Autopilot runs at-least-once with deterministic decision ids (docs/operations.md, delivery):
a worker killed between sending decisions and committing offsets decides the redelivered
records again, from the state stored with the last committed flush, so it sends the *same*
decisions with the same ids, and every ledger consumer keeps the first copy of an id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest

from app.client import SignalPublisher
from app.settings import Settings
from core.replay import replay_decisions
from projections.ledger_reader import read_ledger
from tests.integration.conftest import StartWorker
from tools.workload import realistic_stream
from topics.ledger import DECISION_KINDS, LedgerEntry

pytestmark = pytest.mark.integration

SIGNALS = 60_000
WORKSPACES = 400
DONE_WITHIN_SECONDS = 240.0


def decisions_of(entries: list[LedgerEntry]) -> dict[str, str]:
    return {e.entry_id: e.kind.value for e in entries if e.kind in DECISION_KINDS}


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

    # Then every consumer's (de-duplicated) view has exactly the expected decisions, once each

    view = await read_ledger(
        bootstrap,
        ledger,
        until=lambda got: len(decisions_of(got)) >= len(expected),
        timeout=DONE_WITHIN_SECONDS,
    )
    assert decisions_of(view) == expected
    made = Counter(e.entry_id for e in view if e.kind.value == "decision.made")
    assert set(made.values()) == {1}

    # And in the raw topic, every copy of a decision id is the same decision (same verdict,
    # rule and command): a redelivered record was decided again exactly as the first time
    raw = await read_ledger(
        bootstrap,
        ledger,
        until=lambda got: len(got) >= len(view),
        timeout=DONE_WITHIN_SECONDS,
        dedupe=False,
    )
    copies: dict[str, set[tuple[str, str, str | None]]] = defaultdict(set)
    for entry in raw:
        if entry.kind in DECISION_KINDS:
            copies[entry.entry_id].add(
                (entry.kind.value, entry.payload.rule_id, entry.payload.command_id)
            )
    assert all(len(variants) == 1 for variants in copies.values())
    repeated = sum(1 for e in raw if e.kind in DECISION_KINDS) - len(copies)
    print(
        f"decisions: {len(expected)} expected, {decided_before_kill} before the kill, "
        f"{repeated} written again after it (de-duplicated by every reader)"
    )


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
    # Then every reader's view has one verdict for each expected decision id, and nothing else
    view = await read_ledger(
        bootstrap,
        ledger,
        until=lambda got: len(decisions_of(got)) >= len(expected),
        timeout=DONE_WITHIN_SECONDS,
    )
    decided = decisions_of(view)
    assert decided.keys() == expected.keys()
    made = Counter(e.entry_id for e in view if e.kind.value == "decision.made")
    assert set(made.values()) <= {1}
    # Known gap (docs/operations.md, delivery): across a rebalance, a few decisions competing
    # for the platform cap's slots can get another verdict (deferred or suppressed) than a
    # single owner would give them; the count is printed, not asserted.
    differing = sum(1 for key, kind in expected.items() if decided[key] != kind)
    print(f"rebalance: {len(expected)} decisions, {differing} with another cap verdict")
