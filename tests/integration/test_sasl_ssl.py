"""Managed Kafka: a worker on a SASL_SSL listener (SCRAM-SHA-512, TLS with a certificate made at
start) folds, decides and acts; with a wrong password it stops, naming the setting to fix."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.client import SignalPublisher
from app.kafka_admin import ensure_topics
from app.settings import Settings, load_settings
from projections.ledger_reader import read_ledger
from tests.integration.conftest import sandbox_env
from tests.integration.http import TOKENS, wait_until_answers
from tests.integration.streams import signal
from tools.local_kafka import LocalKafka, SaslSslListener, assemble
from tools.sandbox import Sandbox
from tools.worker_process import WorkerProcess
from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import SignalType

pytestmark = pytest.mark.integration

USER = "autopilot"
# Made per run, so finding it in a log can only mean the log printed it.
PASSWORD = f"pw-{secrets.token_hex(12)}"
WRONG_PASSWORD = f"pw-{secrets.token_hex(12)}"
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def secure_kafka() -> Iterator[LocalKafka]:
    """One broker for this module, with a SASL_SSL listener and the user USER."""
    if shutil.which("java") is None or shutil.which("keytool") is None:
        pytest.skip("needs a JDK (java and keytool) for a broker with a SASL_SSL listener")
    listener = SaslSslListener({USER: PASSWORD})
    with LocalKafka(assemble(load_settings().cache_dir), sasl_ssl=listener) as kafka:
        yield kafka


def secure_env(kafka: LocalKafka, password: str) -> dict[str, str]:
    """A worker's settings for the SASL_SSL listener."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka.sasl_ssl_bootstrap_servers,
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUTOPILOT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AUTOPILOT_KAFKA_SASL_USERNAME": USER,
        "AUTOPILOT_KAFKA_SASL_PASSWORD": password,
        "AUTOPILOT_KAFKA_SSL_CA_FILE": str(kafka.ca_file),
    }


def deployment(kafka: LocalKafka) -> Settings:
    """Settings of a fresh deployment reaching the broker over SASL_SSL only."""
    run = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        kafka_bootstrap_servers=kafka.sasl_ssl_bootstrap_servers,
        topic_prefix=f"{run}.",
        app_id=f"autopilot-{run}",
        partitions=2,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=PASSWORD,
        kafka_ssl_ca_file=kafka.ca_file,
    )


def worker_for(settings: Settings, env: dict[str, str], workdir: Path) -> WorkerProcess:
    assert settings.kafka_bootstrap_servers
    worker = WorkerProcess.for_deployment(
        settings, settings.kafka_bootstrap_servers, workdir, log_level="info"
    )
    worker.env.update({**TOKENS, "AUTOPILOT_PROJECTOR_ENABLED": "false", **env})
    return worker


def settled(entries: list[LedgerEntry]) -> bool:
    return any(e.kind is LedgerKind.ACTION_SUCCEEDED for e in entries)


async def test_a_worker_with_the_credentials_decides_and_acts_over_sasl_ssl(
    secure_kafka: LocalKafka, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Given topics made over SASL_SSL and a worker with the listener's credentials
    settings = deployment(secure_kafka)
    assert settings.kafka_bootstrap_servers
    await ensure_topics(settings, settings.kafka_bootstrap_servers)
    worker = worker_for(
        settings, {**sandbox_env(sandbox), **secure_env(secure_kafka, PASSWORD)}, tmp_path
    )
    with worker:
        await wait_until_answers(worker)
        # When a failed webhook is published with the client over SASL_SSL
        async with SignalPublisher(
            settings.kafka_bootstrap_servers,
            settings.topic("signals"),
            security=settings.kafka_security(),
        ) as publisher:
            await publisher.publish(signal("s1", "ws-sasl", SignalType.WEBHOOK_FAILED, status=503))
        # Then the signal stage (the engine) decided, and the executors (Faust) acted on it
        entries = await read_ledger(
            settings.kafka_bootstrap_servers,
            settings.topic("ledger"),
            until=settled,
            timeout=WAIT_SECONDS,
            security=settings.kafka_security(),
        )
    made = [e for e in entries if e.kind is LedgerKind.DECISION_MADE]
    assert [(e.workspace_id, e.payload.rule_id) for e in made] == [
        ("ws-sasl", "seed.webhook_failed")
    ]
    succeeded = [e for e in entries if e.kind is LedgerKind.ACTION_SUCCEEDED]
    assert [e.payload.command_id for e in succeeded] == [made[0].payload.command_id]
    assert [(effect.workspace_id, effect.operation) for effect in sandbox.effects] == [
        ("ws-sasl", "hook")
    ]
    # And the password is nowhere in the worker's log
    log = worker.log_path.read_text(errors="replace")
    assert "Authenticated as autopilot via SCRAM-SHA-512" in log
    assert PASSWORD not in log


async def test_a_wrong_password_stops_the_worker_naming_the_setting(
    secure_kafka: LocalKafka, tmp_path: Path
) -> None:
    # Given a worker whose password the broker does not accept
    settings = deployment(secure_kafka)
    worker = worker_for(settings, secure_env(secure_kafka, WRONG_PASSWORD), tmp_path)
    # When it starts
    with worker:
        deadline = time.monotonic() + WAIT_SECONDS
        while worker.alive and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # Then it stops with a configuration error (exit code 2) that names the setting
        assert worker.returncode == 2, worker.log_tail()
    log = worker.log_path.read_text(errors="replace")
    assert (
        f"refused the SASL credentials of user '{USER}' (SCRAM-SHA-512): check "
        "AUTOPILOT_KAFKA_SASL_USERNAME and AUTOPILOT_KAFKA_SASL_PASSWORD"
    ) in log, log
    # And neither password is in its log
    assert WRONG_PASSWORD not in log
    assert PASSWORD not in log
