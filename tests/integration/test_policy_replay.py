"""`autopilot policy replay` against the ledger topic of a real run, and a forged entry in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from app.settings import Settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.streams import publish, signal
from topics.ledger import DECISION_KINDS, LedgerKind
from topics.signals import SignalType

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent.parent


def replay(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "policy", "replay", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_the_ledger_of_a_live_run_replays_identically_and_a_forged_entry_is_flagged(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    assert settings.kafka_bootstrap_servers
    # Given a worker that decided on signals of three workspaces
    start_worker()
    await publish(
        settings,
        [
            signal("a1", "ws-a", SignalType.WEBHOOK_FAILED, 0),
            signal("b1", "ws-b", SignalType.HEALTH_DEGRADED, 0, health_score=20.0),
            signal("c1", "ws-c", SignalType.QUEUE_DEPTH, 1, pending=75),
            signal("c2", "ws-c", SignalType.FOLLOWUP_DUE, 2),
        ],
    )
    entries = await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=lambda got: sum(e.kind in DECISION_KINDS for e in got) >= 4,
        timeout=WAIT_SECONDS,
    )
    # When `autopilot policy replay` reads that ledger from the broker
    clean = replay(settings)
    # Then every evaluation is identical and it exits 0
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "4 evaluations in 3 workspaces: 3 identical, 0 diverging" in clean.stdout

    # When someone appends a forged decision for ws-a: another action, under a new id
    made = next(e for e in entries if e.kind is LedgerKind.DECISION_MADE and e.causation_id == "a1")
    forged = made.model_copy(
        update={
            "entry_id": "dec-forged",
            "payload": made.payload.model_copy(
                update={"decision_id": "dec-forged", "action": "send_followup"}
            ),
        }
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic("ledger"), forged.model_dump_json().encode(), key=b"ws-a"
        )
    finally:
        await producer.stop()
    # Then the replay names ws-a as diverging and exits 1
    tampered = replay(settings)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "1 diverging" in tampered.stdout
    assert [line.split()[0] for line in tampered.stdout.splitlines() if " diverging " in line] == [
        "ws-a"
    ]
    assert "- seed.webhook_failed decision.made send_followup" in tampered.stdout

    # And a what-if that puts webhook retries in the high lane reports ws-a as changed, not
    # diverging (the forged entry too was recorded under another version), and exits 0
    whatif = tmp_path / "whatif.toml"
    seed = (ROOT / "core" / "seed_policy.toml").read_text()
    retry = 'action = "retry_webhook"\npriority = 6'
    assert retry in seed
    whatif.write_text(seed.replace(retry, 'action = "retry_webhook"\npriority = 8'))
    changed = replay(settings, "--policy", str(whatif), "--json")
    assert changed.returncode == 0, changed.stdout + changed.stderr
    report = orjson.loads(changed.stdout)
    assert (report["diverging"], report["changed"]) == ([], ["ws-a"])
    [difference] = report["workspaces"]["ws-a"]["differences"]
    assert [row["priority"] for row in difference["derived"]] == ["high"]


def test_a_ledger_topic_that_does_not_exist_is_a_clear_error(settings: Settings) -> None:
    """Given a topic prefix with no ledger on the broker, then the replay exits 2 and says
    what to check, without creating the topic."""
    wrong = settings.model_copy(update={"topic_prefix": "nowhere."})

    missing = replay(wrong)

    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "no ledger topic nowhere.ledger on the broker" in missing.stderr
    assert "AUTOPILOT_TOPIC_PREFIX" in missing.stderr
