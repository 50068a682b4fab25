"""A deferred command (over the platform cap) waits for its interval without holding its lane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from topics.commands import Action, Command, Priority
from topics.ledger import LedgerKind

pytestmark = pytest.mark.integration


def command(n: str, workspace_id: str, not_before: datetime | None) -> Command:
    return Command(
        command_id=f"cmd-{n}",
        decision_id=f"dec-{n}",
        workspace_id=workspace_id,
        action=Action.RETRY_WEBHOOK,
        priority=Priority.MEDIUM,
        rule_id="seed.webhook_failed",
        policy_version="p-test",
        signal_ids=(f"sig-{n}",),
        correlation_id=f"sig-{n}",
        not_before=not_before,
    )


async def test_a_deferred_command_runs_at_its_time_and_later_commands_do_not_wait(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers
    # Given a running worker
    start_worker()
    # When a command deferred by 15 seconds is queued, then one due now, on the same lane
    # (a worker still starting on a busy machine must not find both due already)
    due_at = datetime.now(UTC) + timedelta(seconds=15)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for cmd in (command("later", "ws-a", due_at), command("now", "ws-a", None)):
            await producer.send_and_wait(
                settings.topic("commands.medium"),
                cmd.model_dump_json().encode(),
                key=cmd.workspace_id.encode(),
            )
    finally:
        await producer.stop()
    # Then the command due now ran first, and the deferred one only once its time had come
    entries = await read_ledger(
        bootstrap,
        settings.topic("ledger"),
        until=lambda got: sum(e.kind is LedgerKind.ACTION_SUCCEEDED for e in got) >= 2,
        timeout=WAIT_SECONDS,
    )
    outcomes = [e for e in entries if e.kind is LedgerKind.ACTION_SUCCEEDED]
    assert [e.payload.command_id for e in outcomes] == ["cmd-now", "cmd-later"]
    assert outcomes[1].recorded_at >= due_at
