"""The operator's switches on the real broker: pause, resume, dry-run, as the ledger records them.

A switch is applied by each shard when its owner reads the control record, so a phase's signals
are published only once every shard has recorded the switch on the ledger. Each phase uses its
own workspaces: a decision starts its action's cooldown (seed policy), suppressed or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration import commands
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import CONTROL_TOKEN, INGEST_TOKEN, request, wait_until_answers
from tests.integration.streams import publish, signal
from tools.sandbox import Sandbox
from tools.worker_process import WorkerProcess
from topics.catalog import LANES, lane_topic
from topics.ledger import OPERATOR_KINDS, LedgerEntry, LedgerKind
from topics.signals import SignalType

pytestmark = pytest.mark.integration

SHARDS = [0, 1, 2, 3]
PAUSED_REASON = "operator paused autonomous decisions"
QUIET_SECONDS = 4.0


async def operator(
    worker: WorkerProcess, name: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """POST /operator/{name} with the control token and an optional JSON body."""
    raw = None if body is None else orjson.dumps(body)
    return await request("POST", f"{worker.web_url}/operator/{name}", body=raw, token=CONTROL_TOKEN)


async def ledger_until(
    settings: Settings, until: Callable[[list[LedgerEntry]], bool]
) -> list[LedgerEntry]:
    assert settings.kafka_bootstrap_servers
    return await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=until,
        timeout=WAIT_SECONDS,
    )


async def ledger_exactly(settings: Settings, count: int) -> list[LedgerEntry]:
    """Read `count` entries (bookkeeping aside), then make sure no further one arrives."""
    return await commands.ledger_exactly(settings, count, QUIET_SECONDS)


def of_kind(entries: list[LedgerEntry], *kinds: LedgerKind) -> list[LedgerEntry]:
    return [e for e in entries if e.kind in kinds]


async def switched_everywhere(
    settings: Settings, kind: LedgerKind, request_id: str
) -> list[LedgerEntry]:
    """Wait until every shard has recorded this request's operator entry; those entries."""

    def mine(entries: list[LedgerEntry]) -> list[LedgerEntry]:
        return [e for e in of_kind(entries, kind) if e.correlation_id == request_id]

    entries = await ledger_until(settings, lambda got: len(mine(got)) >= len(SHARDS))
    return sorted(mine(entries), key=lambda e: e.payload.shard)


async def switch_and_wait(
    settings: Settings,
    worker: WorkerProcess,
    name: str,
    kind: LedgerKind,
    body: dict[str, Any] | None = None,
) -> list[LedgerEntry]:
    status, answer = await operator(worker, name, body)
    assert status == 202, (answer, worker.log_tail())
    return await switched_everywhere(settings, kind, answer["request_id"])


async def read_raw(bootstrap: str, topic: str, quiet: float = 2.0) -> list[ConsumerRecord]:
    """Every record of a topic: read from the start until nothing new arrives for `quiet` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            last_new = time.monotonic()
            while time.monotonic() - last_new < quiet:
                for batch in (await consumer.getmany(timeout_ms=300)).values():
                    records.extend(batch)
                    last_new = time.monotonic()
    finally:
        await consumer.stop()
    return records


async def test_pause_suppresses_every_decision_and_resume_restores_actions(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a running worker whose operator paused autonomous decisions
    worker = start_worker()
    await wait_until_answers(worker)
    paused = await switch_and_wait(
        settings,
        worker,
        "pause",
        LedgerKind.OPERATOR_PAUSED,
        {"by": "oncall.alice", "reason": "incident 4711"},
    )
    assert [e.payload.mode for e in paused] == [{"paused": True, "dry_run": False}] * 4

    # When signals arrive that would each fire a rule, one of them in the critical lane
    await publish(
        settings,
        [
            signal("p1", "ws-paused-1", SignalType.WEBHOOK_FAILED, 0, status=503),
            signal("p2", "ws-paused-2", SignalType.INTEGRATION_OFFLINE, 0),
            signal("p3", "ws-paused-3", SignalType.HEALTH_DEGRADED, 0, health_score=31),
        ],
    )
    # Then each is a suppressed decision with the operator's reason, no command, and no action
    entries = await ledger_exactly(settings, 4 + 3)
    suppressed = of_kind(entries, LedgerKind.DECISION_SUPPRESSED)
    assert {(e.workspace_id, e.payload.rule_id, e.payload.priority) for e in suppressed} == {
        ("ws-paused-1", "seed.webhook_failed", "medium"),
        ("ws-paused-2", "seed.integration_offline", "high"),
        ("ws-paused-3", "emergency.reported_critical", "critical"),
    }
    for entry in suppressed:
        assert entry.payload.reason == PAUSED_REASON
        assert entry.payload.command_id is None
        assert entry.payload.input["mode"] == {"paused": True, "dry_run": False}
    assert of_kind(entries, LedgerKind.DECISION_MADE, LedgerKind.DECISION_DEFERRED) == []
    assert [e for e in entries if e.kind.value.startswith("action.")] == []

    # When the operator resumes and new signals arrive for other workspaces
    resumed = await switch_and_wait(
        settings, worker, "resume", LedgerKind.OPERATOR_RESUMED, {"by": "oncall.alice"}
    )
    assert [e.payload.mode for e in resumed] == [{"paused": False, "dry_run": False}] * 4
    await publish(
        settings,
        [
            signal("r1", "ws-resumed-1", SignalType.WEBHOOK_FAILED, 1, status=503),
            signal("r2", "ws-resumed-2", SignalType.HEALTH_DEGRADED, 1, health_score=31),
        ],
    )
    # Then they are decided as usual and their actions succeed
    entries = await ledger_exactly(settings, 4 + 3 + 4 + 2 + 2 + 2)
    made = of_kind(entries, LedgerKind.DECISION_MADE)
    assert {(e.workspace_id, e.payload.rule_id) for e in made} == {
        ("ws-resumed-1", "seed.webhook_failed"),
        ("ws-resumed-2", "emergency.reported_critical"),
    }
    assert all(e.payload.reason is None and not e.payload.dry_run for e in made)
    succeeded = of_kind(entries, LedgerKind.ACTION_SUCCEEDED)
    assert {e.payload.command_id for e in succeeded} == {e.payload.command_id for e in made}
    assert {e.causation_id for e in succeeded} == {e.entry_id for e in made}
    assert len(of_kind(entries, LedgerKind.DECISION_SUPPRESSED)) == 3


def skipped_would(skipped: dict[str, LedgerEntry], workspace_id: str) -> str:
    [would] = [e.payload.would for e in skipped.values() if e.workspace_id == workspace_id]
    return str(would)


async def test_dry_run_decides_but_records_skipped_actions_until_switched_off(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox
) -> None:
    assert settings.kafka_bootstrap_servers
    # Given a running worker in dry-run
    worker = start_worker()
    await wait_until_answers(worker)
    enabled = await switch_and_wait(
        settings,
        worker,
        "dry-run",
        LedgerKind.OPERATOR_DRY_RUN_ENABLED,
        {"enabled": True, "by": "oncall.bob", "reason": "trying the new policy"},
    )
    assert [e.payload.mode for e in enabled] == [{"paused": False, "dry_run": True}] * 4

    # When signals arrive that fire a medium and a critical rule
    await publish(
        settings,
        [
            signal("d1", "ws-dry-1", SignalType.WEBHOOK_FAILED, 0, status=503),
            signal("d2", "ws-dry-2", SignalType.HEALTH_DEGRADED, 0, health_score=31),
        ],
    )
    # Then both are decided, marked dry-run, and their commands are skipped, not carried out:
    # the platform saw no request at all
    entries = await ledger_exactly(settings, 4 + 2 + 2)
    assert sandbox.requests == []
    made = of_kind(entries, LedgerKind.DECISION_MADE)
    assert {(e.workspace_id, e.payload.rule_id) for e in made} == {
        ("ws-dry-1", "seed.webhook_failed"),
        ("ws-dry-2", "emergency.reported_critical"),
    }
    assert all(e.payload.dry_run is True for e in made)
    assert all(e.payload.input["mode"] == {"paused": False, "dry_run": True} for e in made)
    skipped = {e.payload.command_id: e for e in of_kind(entries, LedgerKind.ACTION_SKIPPED)}
    assert set(skipped) == {e.payload.command_id for e in made}
    for decision in made:
        outcome = skipped[decision.payload.command_id]
        assert outcome.causation_id == decision.entry_id
        assert outcome.payload.reason == "dry_run"
        assert outcome.payload.action == decision.payload.action
    # And each says what it would have done, with the platform URL it would have called
    assert skipped_would(skipped, "ws-dry-2") == f"POST {sandbox.url}/workspaces/ws-dry-2/provision"
    assert skipped_would(skipped, "ws-dry-1").startswith(
        f"GET {sandbox.url}/workspaces/ws-dry-1/webhooks/failed, then POST each failed delivery"
    )
    assert (
        of_kind(
            entries,
            LedgerKind.ACTION_STARTED,
            LedgerKind.ACTION_SUCCEEDED,
            LedgerKind.ACTION_FAILED,
        )
        == []
    )

    # When dry-run is switched off and a signal arrives for another workspace
    await switch_and_wait(
        settings, worker, "dry-run", LedgerKind.OPERATOR_DRY_RUN_DISABLED, {"enabled": False}
    )
    await publish(settings, [signal("e1", "ws-live-1", SignalType.WEBHOOK_FAILED, 1)])
    # Then its action is carried out
    entries = await ledger_exactly(settings, 4 + 2 + 2 + 4 + 3)
    live = [e for e in entries if e.workspace_id == "ws-live-1"]
    assert [e.kind for e in live] == [
        LedgerKind.DECISION_MADE,
        LedgerKind.ACTION_STARTED,
        LedgerKind.ACTION_SUCCEEDED,
    ]
    assert live[0].payload.dry_run is False

    # And the commands on the lanes say which were dry runs
    commands = []
    for lane in LANES:
        topic = settings.topic(lane_topic(lane))
        records = await read_raw(settings.kafka_bootstrap_servers, topic, quiet=1.0)
        commands.extend(orjson.loads(r.value) for r in records)
    assert sorted((c["workspace_id"], c["dry_run"]) for c in commands) == [
        ("ws-dry-1", True),
        ("ws-dry-2", True),
        ("ws-live-1", False),
    ]


async def test_each_shard_records_who_switched_and_why_and_never_the_token(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    # Given a running worker
    worker = start_worker()
    await wait_until_answers(worker)
    # When the operator pauses with a name and a reason, then turns dry-run on without either
    status, answer = await operator(
        worker, "pause", {"by": "oncall.carol@example.com", "reason": "maintenance window"}
    )
    assert status == 202, answer
    assert answer["switch"] == "pause"
    assert answer["shards"] == 4
    assert answer["request_id"].startswith("req-")
    paused = await switched_everywhere(settings, LedgerKind.OPERATOR_PAUSED, answer["request_id"])
    dry_run = await switch_and_wait(
        settings, worker, "dry-run", LedgerKind.OPERATOR_DRY_RUN_ENABLED, {"enabled": True}
    )

    # Then every shard recorded each switch once, with who, why and the mode it is now in
    assert [e.payload.shard for e in paused] == SHARDS
    for entry in paused:
        assert entry.workspace_id is None
        assert entry.causation_id == answer["request_id"]
        assert entry.payload.switch == "pause"
        assert entry.payload.by == "oncall.carol@example.com"
        assert entry.payload.reason == "maintenance window"
        assert entry.payload.mode == {"paused": True, "dry_run": False}
        requested = entry.payload.requested_at
        assert abs((datetime.now(UTC) - requested).total_seconds()) < WAIT_SECONDS
    assert [e.payload.shard for e in dry_run] == SHARDS
    for entry in dry_run:
        assert (entry.payload.switch, entry.payload.by, entry.payload.reason) == (
            "dry_run_on",
            None,
            None,
        )
        assert entry.payload.mode == {"paused": True, "dry_run": True}
    # And each shard's entry is on that shard's ledger partition
    raw_ledger = await read_raw(settings.kafka_bootstrap_servers, settings.topic("ledger"))
    operator_records = [
        (r.partition, orjson.loads(r.value))
        for r in raw_ledger
        if orjson.loads(r.value)["kind"] in OPERATOR_KINDS
    ]
    assert len(operator_records) == 8
    assert all(partition == value["payload"]["shard"] for partition, value in operator_records)
    # And the worker reports the mode of its shards, and no breaker (it called no provider)
    status, modes = await request("GET", f"{worker.web_url}/operator", token=CONTROL_TOKEN)
    assert status == 200, modes
    assert modes == {
        "shards": {str(s): {"paused": True, "dry_run": True} for s in SHARDS},
        "breakers": {},
    }

    # And no token is on the ledger or the control topic
    raw_control = await read_raw(settings.kafka_bootstrap_servers, settings.topic("control"))
    # (the ticker's timer ticks share the topic: one per shard every 10 s)
    switches = [r for r in raw_control if "switch" in orjson.loads(r.value)]
    assert len(switches) == 8
    for record in raw_ledger + raw_control:
        assert CONTROL_TOKEN.encode() not in record.value
        assert INGEST_TOKEN.encode() not in record.value
        assert all(CONTROL_TOKEN.encode() not in value for _, value in record.headers)


async def test_switch_requests_without_the_token_or_with_a_bad_body_are_refused(
    settings: Settings, start_worker: StartWorker
) -> None:
    assert settings.kafka_bootstrap_servers
    # Given a running worker
    worker = start_worker()
    await wait_until_answers(worker)
    url = worker.web_url

    async def post(name: str, body: bytes | None, token: str | None = CONTROL_TOKEN) -> int:
        status, answer = await request("POST", f"{url}/operator/{name}", body=body, token=token)
        assert "error" in answer, answer
        return status

    # When switches are requested without the control token, or with the ingest token
    # Then they are refused as unauthorized
    assert await post("pause", None, token=None) == 401
    assert await post("pause", None, token="not-the-control-token") == 401
    assert await post("resume", b"{}", token=INGEST_TOKEN) == 401
    assert await post("dry-run", b'{"enabled": true}', token=None) == 401
    status, _ = await request("GET", f"{url}/operator", token=None)
    assert status == 401
    # And an unknown switch is not found, which only a caller with the token is told
    assert await post("shutdown", None) == 404
    assert await post("shutdown", None, token=None) == 401
    # And a body that is not JSON is malformed
    assert await post("pause", b"{pause") == 400
    assert await post("dry-run", b"enabled=true") == 400
    # And a JSON body of the wrong shape is unprocessable
    assert await post("pause", b'{"force": true}') == 422
    assert await post("pause", b'{"request_id": "req-mine"}') == 422
    assert await post("resume", b'{"switch": "pause"}') == 422
    assert await post("pause", b'{"enabled": true}') == 422
    assert await post("pause", b'["oncall"]') == 422
    assert await post("pause", b'{"by": "two words"}') == 422
    assert await post("pause", orjson.dumps({"reason": "x" * 257})) == 422
    assert await post("dry-run", None) == 422
    assert await post("dry-run", b'{"enabled": "yes"}') == 422
    assert await post("dry-run", b'{"enabled": 1}') == 422
    assert await post("dry-run", b'{"enabled": true, "token": "abc"}') == 422

    # When one valid switch follows
    status, answer = await operator(worker, "resume")
    assert status == 202, answer
    await switched_everywhere(settings, LedgerKind.OPERATOR_RESUMED, answer["request_id"])
    # Then it is the only one on the control topic and the ledger: the refused ones sent nothing
    control = await read_raw(settings.kafka_bootstrap_servers, settings.topic("control"))
    switches = [orjson.loads(r.value) for r in control if "switch" in orjson.loads(r.value)]
    assert [s["request_id"] for s in switches] == [answer["request_id"]] * 4
    entries = await ledger_exactly(settings, 4)
    assert {e.kind for e in entries} == {LedgerKind.OPERATOR_RESUMED}
    assert worker.alive, worker.log_tail()
