"""Priority lanes on the real broker: a shard's commands are carried out highest lane first.

The commands are written straight onto the lane topics, as the aggregate agent writes them (key =
workspace id), all for workspaces of one shard, so their outcomes share one ledger partition and
the ledger's order there is the order in which the executors carried them out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import wait_until_answers
from tests.integration.streams import workspaces_of_shard
from topics.catalog import lane_topic
from topics.commands import Action, Command, Priority
from topics.ledger import LedgerEntry, LedgerKind

pytestmark = pytest.mark.integration

SHARD = 2
# Highest first, as the executors are to serve them.
ORDER = (Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.LOW)
ACTIONS = {
    Priority.CRITICAL: Action.RUN_PROVISIONING,
    Priority.HIGH: Action.RESTART_INTEGRATION,
    Priority.MEDIUM: Action.RETRY_WEBHOOK,
    Priority.LOW: Action.SEND_FOLLOWUP,
}


def commands(lane: Priority, workspaces: list[str], count: int) -> list[Command]:
    """`count` valid commands of one lane, spread over the workspaces in turn."""
    return [
        Command(
            command_id=f"cmd-{lane.value}-{n:02d}",
            decision_id=f"dec-{lane.value}-{n:02d}",
            workspace_id=workspaces[n % len(workspaces)],
            action=ACTIONS[lane],
            priority=lane,
            rule_id=f"test.{lane.value}",
            policy_version="test-lanes",
            signal_ids=(f"sig-{lane.value}-{n:02d}",),
            correlation_id=f"sig-{lane.value}-{n:02d}",
        )
        for n in range(count)
    ]


async def produce(settings: Settings, lane: Priority, batch: list[Command]) -> None:
    """Write commands onto their lane topic keyed by workspace; all must land on SHARD."""
    assert settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        topic = settings.topic(lane_topic(lane.value))
        sent = [
            await producer.send(
                topic, command.model_dump_json().encode(), key=command.workspace_id.encode()
            )
            for command in batch
        ]
        for delivery in sent:
            assert (await delivery).partition == SHARD
    finally:
        await producer.stop()


async def ledger_until(
    settings: Settings, until: Callable[[list[LedgerEntry]], bool], timeout: float = WAIT_SECONDS
) -> list[LedgerEntry]:
    assert settings.kafka_bootstrap_servers
    return await read_ledger(
        settings.kafka_bootstrap_servers, settings.topic("ledger"), until=until, timeout=timeout
    )


def succeeded(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    return [e for e in entries if e.kind is LedgerKind.ACTION_SUCCEEDED]


async def test_each_lane_backlog_is_carried_out_after_the_higher_lanes_of_its_shard(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given 30 commands in each lane of one shard, queued lowest lane first, before any worker
    # runs (without the gate, medium and low would interleave: the lanes are fetched side by
    # side, and only by luck of the fetch does critical come first)
    workspaces = workspaces_of_shard(SHARD, 6)
    queued = {lane: commands(lane, workspaces, 30) for lane in reversed(ORDER)}
    for lane, batch in queued.items():
        await produce(settings, lane, batch)
    # When a worker starts
    worker = start_worker({"AUTOPILOT_EXECUTOR_CONCURRENCY": "1"})
    # Then all 120 are carried out once, and on the shard's ledger every critical outcome comes
    # before every high one, every high before every medium, every medium before every low
    entries = await ledger_until(settings, lambda got: len(succeeded(got)) >= 120)
    outcomes = succeeded(entries)
    assert len(outcomes) == 120
    # (each after its action.started: one slot, so one command at a time, in turn)
    assert len(entries) == 240
    order = "".join(e.payload.priority[0] for e in outcomes)
    assert order == "c" * 30 + "h" * 30 + "m" * 30 + "l" * 30, (order, worker.log_tail())
    # And each lane kept its own order
    for n, lane in enumerate(ORDER):
        ran = [e.payload.command_id for e in outcomes[30 * n : 30 * (n + 1)]]
        assert ran == [c.command_id for c in queued[lane]]
    assert worker.alive, worker.log_tail()


async def test_the_low_lane_runs_promptly_when_no_higher_lane_has_a_backlog(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a running worker with nothing queued in any lane
    worker = start_worker({"AUTOPILOT_EXECUTOR_CONCURRENCY": "1"})
    await wait_until_answers(worker)
    # When 20 low commands arrive for one shard
    low = commands(Priority.LOW, workspaces_of_shard(SHARD, 4), 20)
    started = time.monotonic()
    await produce(settings, Priority.LOW, low)
    # Then all are carried out within a few seconds: the idle higher lanes hold nothing up
    # (a gate that waited its 2 s bound per command would take 40 s)
    entries = await ledger_until(settings, lambda got: len(succeeded(got)) >= 20, timeout=10)
    elapsed = time.monotonic() - started
    outcomes = succeeded(entries)
    assert [e.payload.command_id for e in outcomes] == [c.command_id for c in low]
    assert elapsed < 6, (elapsed, worker.log_tail())
    spread = (outcomes[-1].recorded_at - outcomes[0].recorded_at).total_seconds()
    assert spread < 2, spread
