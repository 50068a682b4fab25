"""End to end on the real broker: signals in, the exact ledger entries out."""

from __future__ import annotations

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from tests.integration.commands import ledger_exactly, ledger_until
from tests.integration.conftest import StartWorker
from tests.integration.http import wait_for_workspace, wait_until_answers
from tests.integration.streams import T0S, publish, read_topic, signal
from tools.sandbox import Sandbox
from topics.ledger import TERMINAL_KINDS, LedgerEntry, LedgerKind
from topics.signals import SignalType

pytestmark = pytest.mark.integration


def decisions(entries: list[LedgerEntry]) -> set[tuple[str | None, str, str]]:
    return {
        (e.workspace_id, e.payload.rule_id, e.payload.priority)
        for e in entries
        if e.kind is LedgerKind.DECISION_MADE
    }


async def test_known_signals_give_exactly_the_expected_ledger_entries(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox
) -> None:
    # Given a running worker
    start_worker()
    # When these signals are published (two records' worth, across workspaces and windows)
    await publish(
        settings,
        [
            signal("a1", "ws-a", SignalType.WEBHOOK_FAILED, 0, status=503),
            signal("a2", "ws-a", SignalType.WEBHOOK_FAILED, 1),  # within the 5-min cooldown
            signal("a3", "ws-a", SignalType.FOLLOWUP_DUE, 2),
            signal("b1", "ws-b", SignalType.HEALTH_DEGRADED, 0, health_score=31),
            signal("c1", "ws-c", SignalType.INTEGRATION_OFFLINE, 3),
            signal("c1", "ws-c", SignalType.INTEGRATION_OFFLINE, 3),  # duplicate id: once
            signal("d1", "ws-d", SignalType.PROVISIONING_NEEDED, 0),
            signal("d2", "ws-d", SignalType.PROVISIONING_NEEDED, 6),  # within the 15-min cooldown
        ],
    )
    # Then the ledger holds exactly five decisions, five starts and five outcomes, nothing else
    entries = await ledger_exactly(settings, 15)
    # ws-b's reported score (31) is critical: the emergency rule fires first, in the critical
    # lane, and its run_provisioning puts the plain health_degraded rule in cooldown
    assert decisions(entries) == {
        ("ws-a", "seed.webhook_failed", "medium"),
        ("ws-a", "seed.followup_due", "low"),
        ("ws-b", "emergency.reported_critical", "critical"),
        ("ws-c", "seed.integration_offline", "high"),
        ("ws-d", "seed.provisioning_needed", "medium"),
    }
    made = [e for e in entries if e.kind is LedgerKind.DECISION_MADE]
    assert len(made) == 5
    # Each decision's command ran once and its outcome names the decision as its cause
    outcomes = {e.payload.command_id: e for e in entries if e.kind in TERMINAL_KINDS}
    assert {e.kind for e in outcomes.values()} == {LedgerKind.ACTION_SUCCEEDED}
    assert set(outcomes) == {e.payload.command_id for e in made}
    started = [e.payload.command_id for e in entries if e.kind is LedgerKind.ACTION_STARTED]
    assert sorted(started) == sorted(outcomes)
    # And the platform saw each command's effect once, under the command id as its key
    by_key = {effect.key: effect for effect in sandbox.effects}
    assert len(by_key) == len(sandbox.effects) == 5
    operations = {
        ("ws-a", "messages"),
        ("ws-a", "hook"),
        ("ws-b", "provision"),
        ("ws-c", "restart-integration"),
        ("ws-d", "provision"),
    }
    assert {(effect.workspace_id, effect.operation) for effect in sandbox.effects} == operations
    assert {key.split(":")[0] for key in by_key} == set(outcomes)
    for decision in made:
        outcome = outcomes[decision.payload.command_id]
        assert outcome.causation_id == decision.entry_id
        assert outcome.workspace_id == decision.workspace_id
        assert outcome.payload.action == decision.payload.action
    # And every decision carries the signal, its source position, and what the policy saw
    assert {e.causation_id for e in made} == {"a1", "a3", "b1", "c1", "d1"}
    assert all(e.payload.input["signal"]["source"][0] == settings.topic("signals") for e in made)
    b1 = next(e for e in made if e.causation_id == "b1")
    assert b1.payload.input["facts"]["signal.health_score"] == 31
    assert b1.payload.input["facts"]["hour.health_degraded"] == 1
    assert b1.payload.input["facts"]["health.score"] == 100
    assert {e.policy_version for e in made} == {settings.policy().version}

    # And the shards recorded the signals they folded, for the run metrics: all eight, the
    # duplicate included (it was read, then de-duplicated by the window)
    def folded(got: list[LedgerEntry]) -> int:
        return sum(e.payload.signals for e in got if e.kind is LedgerKind.SIGNALS_FOLDED)

    assert folded(await ledger_until(settings, lambda got: folded(got) >= 8)) == 8


async def test_worker_survives_malformed_input_and_keeps_processing(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    bootstrap = settings.kafka_bootstrap_servers
    # Given a running worker
    worker = start_worker()
    # When a plain Kafka client sends three malformed records, then a batch with one bad item
    bad = [
        b"{not json at all",
        b'{"workspace_id": "ws-x", "type": "disk_full", "occurred_at": "2026-11-21T10:00:00Z"}',
        b'{"workspace_id": "../../etc", "type": "followup_due", '
        b'"occurred_at": "2026-11-21T10:00:00Z"}',
    ]
    # A plain client's single signal, without an id (derived from its content)
    good = {
        "workspace_id": "ws-good",
        "type": "followup_due",
        "occurred_at": "2026-11-21T10:00:00Z",
    }
    good_in_batch = {
        "id": "g2",
        "workspace_id": "ws-good2",
        "type": "integration_offline",
        "occurred_at": "2026-11-21T10:00:00Z",
    }
    batch_bad_item = {
        "id": "g3",
        "workspace_id": "ws-good2",
        "type": "webhook_failed",
        "occurred_at": "2026-11-21T10:00:00+00:00",
        "attributes": {"error": "y" * 300},
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in bad:
            await producer.send_and_wait(settings.topic("signals"), value, key=b"ws-x")
        await producer.send_and_wait(settings.topic("signals"), orjson.dumps(good), key=b"ws-good")
        await producer.send_and_wait(
            settings.topic("signals"), orjson.dumps([good_in_batch, batch_bad_item])
        )
    finally:
        await producer.stop()

    # Then each bad input has a signal.rejected entry with its reason, and the good signals
    # around them were decided and acted on: two decisions, two starts and two outcomes
    entries = await ledger_exactly(settings, 10)
    rejected = sorted(e.payload.reason for e in entries if e.kind is LedgerKind.SIGNAL_REJECTED)
    assert len(rejected) == 4
    assert rejected[0] == "invalid: attributes.error: String should have at most 256 characters"
    assert rejected[1].startswith("invalid: type: unknown or missing signal type")
    assert rejected[2].startswith("invalid: workspace_id: String should match pattern")
    assert rejected[3] == (
        "undecodable: not JSON: unexpected character, expected a string key at byte 1"
    )
    assert all("etc" not in reason and "disk_full" not in reason for reason in rejected)
    assert decisions(entries) == {
        ("ws-good", "seed.followup_due", "low"),
        ("ws-good2", "seed.integration_offline", "high"),
    }
    succeeded = [e.workspace_id for e in entries if e.kind is LedgerKind.ACTION_SUCCEEDED]
    assert sorted(succeeded) == ["ws-good", "ws-good2"]
    derived = next(e for e in entries if e.workspace_id == "ws-good")
    assert derived.causation_id.startswith("d-")

    # And the dead-letter topic has the original bytes with where they came from and why
    dead = await read_topic(bootstrap, settings.topic("signals.dlq"), 4)
    values = {record.value for record in dead}
    assert set(bad) <= values
    assert orjson.dumps(batch_bad_item) in values
    for record in dead:
        headers = dict(record.headers)
        assert headers["autopilot.source.topic"] == settings.topic("signals").encode()
        assert headers["autopilot.reason"]
        if record.value == orjson.dumps(batch_bad_item):
            assert headers["autopilot.source.index"] == b"1"
    # And the worker is still running
    assert worker.alive, worker.log_tail()


async def test_state_survives_a_worker_restart(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker that has decided on one webhook failure for ws-r at 10:00
    first = start_worker()
    await publish(settings, [signal("r1", "ws-r", SignalType.WEBHOOK_FAILED, 0)])
    await ledger_exactly(settings, 3)
    # When it is stopped and a new worker takes over the same data directory and group
    assert first.stop() == 0, first.log_tail()
    start_worker()
    # And a second failure two minutes later, a redelivered first one, and one seven minutes
    # later arrive
    await publish(
        settings,
        [
            signal("r2", "ws-r", SignalType.WEBHOOK_FAILED, 2),
            signal("r1", "ws-r", SignalType.WEBHOOK_FAILED, 0),
            signal("r3", "ws-r", SignalType.WEBHOOK_FAILED, 7),
        ],
    )
    # Then only the signal past the 5-minute cooldown decides again: the restarted worker
    # remembered when it last issued retry_webhook and the id it had already seen
    entries = await ledger_exactly(settings, 6)
    made = [e for e in entries if e.kind is LedgerKind.DECISION_MADE]
    assert [e.causation_id for e in made] == ["r1", "r3"]


async def test_windows_and_health_are_recovered_from_the_changelog_and_expire_after(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker that holds windows, gauges and a degraded health for ws-s
    first = start_worker()
    await wait_until_answers(first)
    await publish(
        settings,
        [
            signal("s1", "ws-s", SignalType.QUEUE_DEPTH, 0, pending=90),
            signal("s2", "ws-s", SignalType.OLDEST_PENDING_AGE, 1, age_seconds=2400.0),
            signal("s3", "ws-s", SignalType.ERROR_REPORTED, 2),
            signal("s4", "ws-s", SignalType.ERROR_REPORTED, 12),
        ],
    )
    before = await wait_for_workspace(first, "ws-s", lambda b: b["as_of"] == T0S + 12 * 60)
    # 100 - 20 (90 pending) - 15 (2400 s old) - 2 x 5 (errors) = 55
    assert (before["health"]["score"], before["health"]["status"]) == (55, "degraded")
    # When it stops and a worker with an empty data directory takes over
    assert first.stop() == 0, first.log_tail()
    second = start_worker(data="data-empty")
    await wait_until_answers(second)
    # Then it answers with the very same windows and health, recovered from the changelog
    after = await wait_for_workspace(second, "ws-s", lambda b: b["as_of"] is not None)
    assert after == before

    # When ws-s reports again two hours of event time later
    await publish(settings, [signal("s5", "ws-s", SignalType.HEARTBEAT, 132)])
    # Then the old windows have expired and the stale gauges no longer count
    later = await wait_for_workspace(second, "ws-s", lambda b: b["as_of"] == T0S + 132 * 60)
    assert later["hour"]["counts"] == {"heartbeat": 1}
    assert later["minute"]["counts"] == {"heartbeat": 1}
    assert later["health"]["score"] == 100
    assert later["gauges"]["queue_depth"] == {"at": T0S, "value": 90}  # kept, but stale
    # And a signal back in the expired hour is recorded as late, not counted
    await publish(settings, [signal("s6", "ws-s", SignalType.ERROR_REPORTED, 3)])
    late = await wait_for_workspace(second, "ws-s", lambda b: b["late"] == 1)
    assert late["hour"]["counts"] == {"heartbeat": 1}
    assert late["health"]["score"] == 100
