"""`autopilot policy whatif` on the real broker: what it previews for a lower queue threshold is
exactly what a worker running that policy decides over the same signals.

One deployment runs the seed policy, another the seed with the queue rule's threshold lowered
from 50 to 20 (P20); both get the same signals. The what-if, run over the seed deployment's
topics with P20, must report as new, gone and changed exactly the decisions on which the two
workers' ledgers differ. `policy replay` with P20 over the seed's ledger sees none of it: it
derives only the evaluations recorded there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.settings import Settings
from projections.ledger_reader import read_ledger_to_end
from tests.integration.conftest import (
    WAIT_SECONDS,
    StartWorker,
    delete_deployment,
    fresh_deployment,
    sandbox_env,
)
from tests.integration.http import SANDBOX_KEYS, TOKENS
from tests.integration.streams import publish_one_per_record, wait_folded
from tools.sandbox import SandboxThread
from tools.worker_process import WorkerProcess
from topics.ledger import DecisionEntry
from topics.signals import Signal, signal_from

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent.parent
QUEUE = "monitor.queue_saturated"
THRESHOLD = '{ fact = "queue.pending", op = ">", value = 50 }]\naction = "rebalance_queue"'
# Queue depths a workspace reports, one every 90 s; each workspace starts at another place.
DEPTHS = (10, 25, 35, 45, 55, 65, 80, 40, 22, 15, 30, 60, 70, 20, 12, 50)
WORKSPACES = 100
# Compared as `policy whatif` compares (core/policy_whatif.py): the verdict, not the inputs.
VERDICT = ("action", "priority", "rank", "command_id", "not_before", "reason", "dry_run")


def history(start: datetime) -> list[Signal]:
    """Queue depths of 100 workspaces over 24 minutes, all of a step within 30 s, so that
    under P20 a shard's share of the platform cap runs out within an interval; webhook
    failures and degraded health among them, in event-time order."""
    signals = []
    for step in range(len(DEPTHS)):
        for n in range(WORKSPACES):
            at = start + timedelta(seconds=90 * step + n % 30)
            pending = DEPTHS[(step + n) % len(DEPTHS)]
            signals.append(make(f"q{step}-{n}", f"ws-wi-{n}", "queue_depth", at, pending=pending))
            if n % 10 == 3 and step % 4 == 0:
                signals.append(make(f"w{step}-{n}", f"ws-wi-{n}", "webhook_failed", at))
            if n % 25 == 7 and step == 5:
                signals.append(
                    make(f"h{step}-{n}", f"ws-wi-{n}", "health_degraded", at, health_score=60.0)
                )
    return sorted(signals, key=lambda s: s.occurred_at)


def make(n: str, workspace_id: str, kind: str, at: datetime, **attributes: Any) -> Signal:
    return signal_from(
        {
            "id": n,
            "workspace_id": workspace_id,
            "type": kind,
            "occurred_at": at,
            "source": "test",
            "attributes": attributes,
        }
    )


@pytest.fixture
def p20(tmp_path: Path) -> Path:
    """The seed policy with the queue rule's threshold lowered from 50 to 20."""
    seed = (ROOT / "core" / "seed_policy.toml").read_text()
    assert seed.count(THRESHOLD) == 1
    path = tmp_path / "p20.toml"
    path.write_text(seed.replace(THRESHOLD, THRESHOLD.replace("50", "20")))
    return path


@pytest.fixture
async def p20_deployment(kafka_bootstrap: str) -> AsyncIterator[Settings]:
    """A second deployment on the broker, for a worker running P20."""
    deployment = await fresh_deployment(kafka_bootstrap)
    yield deployment
    await delete_deployment(deployment)


@pytest.fixture
def p20_worker(
    p20_deployment: Settings, kafka_bootstrap: str, tmp_path: Path, p20: Path
) -> Iterator[WorkerProcess]:
    """A worker of the second deployment running P20, with a platform of its own, set up as
    `start_worker` sets one up."""
    with SandboxThread(
        control_token=SANDBOX_KEYS["control_token"],
        signing_key=SANDBOX_KEYS["signing_key"],
        llm_key=SANDBOX_KEYS["llm_key"],
    ) as platform:
        worker = WorkerProcess.for_deployment(
            p20_deployment, kafka_bootstrap, tmp_path / "p20", log_level="info", name="worker-p20"
        )
        worker.env.update(
            {
                **TOKENS,
                **sandbox_env(platform),
                "AUTOPILOT_PROJECTOR_ENABLED": "false",
                "AUTOPILOT_POLICY_FILE": str(p20),
            }
        )
        yield worker.start()
        worker.stop()


def autopilot(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`autopilot ARGS` with the deployment's settings (and the seed as its policy)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
        "AUTOPILOT_PARTITIONS": str(settings.partitions),
    }
    env.pop("AUTOPILOT_POLICY_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def decisions(settings: Settings) -> dict[tuple[str, str, str], DecisionEntry]:
    """The deployment's decisions by workspace, rule and the signal they were made on."""
    assert settings.kafka_bootstrap_servers
    entries = await read_ledger_to_end(
        settings.kafka_bootstrap_servers, settings.topic("ledger"), timeout=WAIT_SECONDS
    )
    found = {}
    for entry in entries:
        if isinstance(entry, DecisionEntry):
            key = (entry.workspace_id or "", entry.payload.rule_id, entry.causation_id)
            assert key not in found, key
            found[key] = entry
    return found


def verdict(entry: DecisionEntry) -> tuple[Any, ...]:
    return (entry.kind.value, *(getattr(entry.payload, name) for name in VERDICT))


async def test_the_what_if_of_a_lower_threshold_is_what_a_worker_running_it_decides(
    settings: Settings,
    start_worker: StartWorker,
    p20_deployment: Settings,
    p20_worker: WorkerProcess,
    p20: Path,
) -> None:
    # Given the same signals decided by a worker on the seed policy and by one on P20
    start_worker()
    signals = history(datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2))
    await publish_one_per_record(settings, signals)
    await publish_one_per_record(p20_deployment, signals)
    await wait_folded(settings, len(signals))
    await wait_folded(p20_deployment, len(signals))
    seed, lowered = await decisions(settings), await decisions(p20_deployment)

    # When `autopilot policy whatif --policy P20` reads the seed deployment's signal history
    done = autopilot(settings, "policy", "whatif", "--policy", str(p20), "--json")

    # Then it reports as new, gone and changed exactly where the two workers' ledgers differ
    assert done.returncode == 0, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    assert report["decisions"] == {"current": len(seed), "new": len(lowered)}
    reported = {
        (d["status"], d["workspace_id"], d["rule_id"], d["signal_id"]): (
            d["current"] and d["current"]["kind"],
            d["new"] and d["new"]["kind"],
        )
        for d in report["differences"]
    }
    expected = {("new", *key): (None, lowered[key].kind.value) for key in lowered.keys() - seed}
    expected |= {("gone", *key): (seed[key].kind.value, None) for key in seed.keys() - lowered}
    expected |= {
        ("changed", *key): (seed[key].kind.value, lowered[key].kind.value)
        for key in seed.keys() & lowered.keys()
        if verdict(seed[key]) != verdict(lowered[key])
    }
    assert reported == expected
    # And the history shows all three: a lower threshold acts sooner (new), its cooldown then
    # skips a reading the seed acted on (gone), and the platform cap defers what both decided
    statuses = {status for status, *_ in reported}
    assert statuses == {"new", "gone", "changed"}, report["totals"]
    assert {rule for _, _, rule, _ in reported} >= {QUEUE, "seed.webhook_failed"}
    assert report["read"]["signal_records"] == len(signals)
    # And the text says the same in a line
    text = autopilot(settings, "policy", "whatif", "--policy", str(p20))
    assert text.returncode == 0, text.stdout + text.stderr
    totals = report["totals"]
    assert (
        f"{len(seed)} decisions under the current policy, {len(lowered)} under the new one: "
        f"{totals['new']} new, {totals['gone']} gone, {totals['changed']} changed"
    ) in text.stdout.splitlines()

    # And `policy replay` with P20 over the seed's ledger finds nothing: it derives only the
    # recorded evaluations, on whose inputs P20 decides as the seed did
    replayed = autopilot(settings, "policy", "replay", "--policy", str(p20))
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "0 diverging, 0 changed by this policy" in replayed.stdout


def test_a_missing_signals_topic_is_a_clear_error(settings: Settings, p20: Path) -> None:
    """Given a topic prefix with no topics on the broker, then the what-if exits 2 and says
    what to check."""
    wrong = settings.model_copy(update={"topic_prefix": "nowhere."})

    missing = autopilot(wrong, "policy", "whatif", "--policy", str(p20))

    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "no topic nowhere.signals on the broker" in missing.stderr
    assert "AUTOPILOT_TOPIC_PREFIX" in missing.stderr
