"""Commands for integration tests: built by hand, written onto their lanes, waited for."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import WAIT_SECONDS
from topics.catalog import lane_topic
from topics.commands import Action, Command, Priority
from topics.ledger import TERMINAL_KINDS, LedgerEntry, LedgerKind


def command(
    n: str,
    workspace_id: str,
    action: Action = Action.RUN_PROVISIONING,
    priority: Priority = Priority.MEDIUM,
) -> Command:
    return Command(
        command_id=f"cmd-{n}",
        decision_id=f"dec-{n}",
        workspace_id=workspace_id,
        action=action,
        priority=priority,
        rule_id="test.executors",
        policy_version="test-executors",
        signal_ids=(f"sig-{n}",),
        correlation_id=f"sig-{n}",
    )


async def send(settings: Settings, commands: list[Command]) -> None:
    """Write commands onto their lanes, keyed by workspace, and wait for the broker."""
    assert settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for each in commands:
            await producer.send_and_wait(
                settings.topic(lane_topic(each.priority.value)),
                each.model_dump_json().encode(),
                key=each.workspace_id.encode(),
            )
    finally:
        await producer.stop()


async def ledger_until(
    settings: Settings,
    until: Callable[[list[LedgerEntry]], bool],
    timeout: float = WAIT_SECONDS,
    dedupe: bool = True,
) -> list[LedgerEntry]:
    assert settings.kafka_bootstrap_servers
    return await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=until,
        timeout=timeout,
        dedupe=dedupe,
    )


def counted(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    """The entries a test counts: without signals.folded, the per-record bookkeeping whose
    number depends on how the client cut the signals into records."""
    return [e for e in entries if e.kind is not LedgerKind.SIGNALS_FOLDED]


async def ledger_exactly(settings: Settings, count: int, quiet: float = 4.0) -> list[LedgerEntry]:
    """Read `count` counted entries, then make sure no further one arrives within `quiet`
    seconds; the counted entries."""
    entries = await ledger_until(settings, lambda got: len(counted(got)) >= count)
    with pytest.raises(TimeoutError):
        entries = await ledger_until(settings, lambda got: len(counted(got)) > count, timeout=quiet)
    return counted(entries)


def ended(*command_ids: str) -> Callable[[list[LedgerEntry]], bool]:
    """Until every one of these commands has a terminal entry."""

    def done(entries: list[LedgerEntry]) -> bool:
        finished = {e.payload.command_id for e in entries if e.kind in TERMINAL_KINDS}
        return set(command_ids) <= finished

    return done


ROOT = Path(__file__).parent.parent.parent


def autopilot_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`autopilot ARGS` as an operator runs it, against this test's deployment."""
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
        "AUTOPILOT_PARTITIONS": str(settings.partitions),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
