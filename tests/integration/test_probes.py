"""A real worker's probes, metrics and access rules, as a supervisor, Prometheus and a caller
without a token meet them (issue: run it in production)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from tests.integration.commands import ended, ledger_until
from tests.integration.conftest import StartWorker
from tests.integration.http import CONTROL_TOKEN, TOKENS, ready_answers, request
from tests.integration.streams import publish, signal
from tests.integration.test_commands import readme_commands, run_shell
from tools.worker_process import WorkerProcess
from topics.ledger import LedgerEntry, LedgerKind
from topics.signals import SignalType

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
WORKSPACES = [f"ws-probe-{n}" for n in range(6)]
# (name, labels) → value, as Prometheus would read the scrape.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def named_in_docs() -> set[str]:
    """Every metric the sample dashboard and alert rules query."""
    dashboard = orjson.loads((ROOT / "docs" / "grafana-dashboard.json").read_bytes())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (ROOT / "docs" / "prometheus-alerts.yml").read_text()
    queries += re.findall(r"^\s*expr: (.+)$", rules, re.MULTILINE)
    return {name for query in queries for name in re.findall(r"autopilot_[a-z_]+", query)}


def compose_healthcheck() -> str:
    """The Python line docker-compose.yml's worker healthcheck runs."""
    compose = (ROOT / "docker-compose.yml").read_text()
    found = re.search(r'^\s*- "(import urllib[^"]+)"$', compose, re.MULTILINE)
    assert found, "docker-compose.yml: the worker's healthcheck is missing"
    return found.group(1)


async def records_on(settings: Settings) -> float:
    """How many records the signal stage's inputs hold: the signals topic, and the control
    topic (the ticker's timer ticks, one per shard every 10 s)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.topic(topic), p)
            for topic in ("signals", "control")
            for p in range(settings.partitions)
        ]
        return float(sum((await consumer.end_offsets(partitions)).values()))
    finally:
        await consumer.stop()


async def scrape(worker: WorkerProcess) -> Samples:
    status, text = await request("GET", f"{worker.web_url}/metrics")
    assert status == 200, text
    samples = [
        ((sample.name, frozenset(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    series = [key for key, _ in samples]
    assert len(series) == len(set(series)), "a series appears twice in one scrape"
    return dict(samples)


def named(samples: Samples, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
    """One metric's samples, keyed by the values of the labels named."""
    return {
        tuple(dict(labels)[label] for label in label_names): value
        for (sample, labels), value in samples.items()
        if sample == name
    }


def expected_from(entries: list[LedgerEntry]) -> dict[str, dict[tuple[str, ...], float]]:
    """What the counters must say, derived from the ledger the worker wrote."""
    decisions: Counter[tuple[str, ...]] = Counter()
    actions: Counter[tuple[str, ...]] = Counter()
    rejected: Counter[tuple[str, ...]] = Counter()
    folded = 0
    for entry in entries:
        kind = entry.kind.value
        if entry.kind is LedgerKind.SIGNALS_FOLDED:
            folded += entry.payload.signals
        elif kind.startswith("decision."):
            decisions[entry.payload.rule_id, kind.removeprefix("decision.")] += 1
        elif kind.startswith("action."):
            actions[entry.payload.action, kind.removeprefix("action.")] += 1
        elif entry.kind is LedgerKind.SIGNAL_REJECTED:
            rejected[entry.payload.reason.partition(":")[0],] += 1
    return {
        "autopilot_signals_folded_total": {(): folded},
        "autopilot_signals_rejected_total": dict(rejected),
        "autopilot_decisions_total": dict(decisions),
        "autopilot_actions_total": dict(actions),
    }


LABELS = {
    "autopilot_signals_folded_total": (),
    "autopilot_signals_rejected_total": ("reason",),
    "autopilot_decisions_total": ("rule", "verdict"),
    "autopilot_actions_total": ("action", "outcome"),
}


async def counters_reach(
    worker: WorkerProcess, want: dict[str, dict[tuple[str, ...], float]], timeout: float = 20.0
) -> Samples:
    """Scrape until the counters say what the ledger says (they count at commit, a moment after
    the ledger shows it); fail with the difference."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(worker)
        got = {name: named(samples, name, *LABELS[name]) for name in want}
        if got == want or time.monotonic() > deadline:
            assert got == want
            return samples
        await asyncio.sleep(0.2)


async def test_a_worker_answers_its_probes_and_counts_exactly_what_it_was_sent(
    settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker({"AUTOPILOT_PROJECTOR_ENABLED": "true"})

    answers = await ready_answers(worker)
    health = await request("GET", f"{worker.web_url}/health")
    version = await request("GET", f"{worker.web_url}/version")

    assert answers[0][0] == 503, answers[0]
    assert answers[0][1]["ready"] is False and answers[0][1]["reason"]
    assert {status for status, _ in answers[:-1]} == {503}
    assert answers[-1] == (200, {"ready": True, "partitions": [0, 1, 2, 3]})
    assert health == (200, {"status": "alive"})
    assert version[0] == 200
    assert version[1]["policy_version"] == settings.policy().version
    assert version[1]["schema_versions"]["ledger_entry"] == 3
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode == 0:
        assert version[1]["git_revision"] == head.stdout.strip()

    before = await scrape(worker)
    assert named(before, "autopilot_signals_folded_total") == {(): 0.0}
    assert named(before, "autopilot_ready") == {(): 1.0}

    await publish(
        settings,
        [
            signal(
                f"sig-{n}-{w}", workspace, SignalType.INTEGRATION_OFFLINE, minute=n, provider="crm"
            )
            # Two a workspace: a third within the hour would start the integration-sweep
            # playbook, whose runs are counted in tests/integration/test_playbooks.py.
            for n in range(2)
            for w, workspace in enumerate(WORKSPACES)
        ],
    )
    assert settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("signals"), b"{not json", partition=0)
    finally:
        await producer.stop()

    made: list[str] = []

    def settled(entries: list[LedgerEntry]) -> bool:
        made[:] = [e.payload.command_id for e in entries if e.kind is LedgerKind.DECISION_MADE]
        folded = sum(e.payload.signals for e in entries if e.kind is LedgerKind.SIGNALS_FOLDED)
        rejected = any(e.kind is LedgerKind.SIGNAL_REJECTED for e in entries)
        return folded == 12 and rejected and len(made) == 6 and ended(*made)(entries)

    entries = await ledger_until(settings, settled)
    want = expected_from(entries)
    assert want["autopilot_decisions_total"] == {("seed.integration_offline", "made"): 6}
    assert want["autopilot_signals_rejected_total"] == {("undecodable",): 1}

    after = await counters_reach(worker, want)
    # The command counts come from the projections, read every few seconds.
    for _ in range(60):
        if named(after, "autopilot_commands", "status") == {("succeeded",): 6.0}:
            break
        await asyncio.sleep(0.5)
        after = await scrape(worker)
    assert named(after, "autopilot_commands", "status") == {("succeeded",): 6.0}
    # Every command served: the lanes, counted every few seconds, have nothing waiting.
    drained = {(lane,): 0.0 for lane in ("critical", "high", "medium", "low")}
    for _ in range(60):
        if named(after, "autopilot_lane_backlog", "lane") == drained:
            break
        await asyncio.sleep(0.5)
        after = await scrape(worker)
    assert named(after, "autopilot_lane_backlog", "lane") == drained

    commits = named(after, "autopilot_engine_commit_records_count")
    assert commits[()] >= 1
    # Every input record (the client's shard batches, the bad one, the ticks), once; a tick
    # may land between the scrape and the count, so both are read again until they agree.
    for _ in range(20):
        inputs = await records_on(settings)
        if named(after, "autopilot_engine_commit_records_sum") == {(): inputs}:
            break
        await asyncio.sleep(0.5)
        after = await scrape(worker)
    assert named(after, "autopilot_engine_commit_records_sum") == {(): inputs}
    lag = named(after, "autopilot_consumer_lag", "topic", "partition")
    assert set(lag.values()) == {0.0}
    assert {partition for _, partition in lag} == {"0", "1", "2", "3"}
    assert named(after, "autopilot_partitions_owned") == {(): 4.0}
    breakers = named(after, "autopilot_breaker_state", "provider", "state")
    assert {k: v for k, v in breakers.items() if v} == {("control_api", "closed"): 1.0}
    assert not any(re.search(r"ws-probe", str(labels)) for _, labels in after)
    served = {name for name, _ in after}
    assert named_in_docs() <= served, named_in_docs() - served
    # docker-compose's healthcheck, run as the container runs it, against this worker.
    check = compose_healthcheck().replace("http://127.0.0.1:6066", worker.web_url)
    assert subprocess.run([sys.executable, "-c", check], check=False).returncode == 0

    # The README's commands say what this worker says.
    ready, version_, metrics, approvals = (
        run_shell(
            command.replace("http://127.0.0.1:6066", worker.web_url), dict(os.environ, **TOKENS)
        )
        for command in readme_commands("/ready")
    )
    assert orjson.loads(ready) == {"ready": True, "partitions": [0, 1, 2, 3]}
    assert orjson.loads(version_) == version[1]
    assert metrics.strip() == (
        'autopilot_decisions_total{rule="seed.integration_offline",verdict="made"} 6.0'
    )
    assert orjson.loads(approvals) == {"awaiting_approval": []}


async def test_every_route_asks_for_the_credential_its_description_names(
    settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker()
    await ready_answers(worker)
    status, description = await request("GET", f"{worker.web_url}/openapi.json")
    assert status == 200

    refused = []
    for path, operations in description["paths"].items():
        url = worker.web_url + re.sub(r"\{workspace_id\}", "ws-probe-0", path)
        url = re.sub(r"\{[a-z_]+\}", "x", url)
        for method, operation in operations.items():
            if path == "/console/session":
                continue  # open, and 401 to a wrong token in its form: the browser test's
            status, _ = await request(method.upper(), url)
            if status == 401:
                refused.append((method, path))
            needs_token = operation["security"] not in ([], [{}, {"metricsToken": []}])
            assert (status == 401) == needs_token, (method, path, status)
    table = await request("GET", f"{worker.web_url}/table/workspace-state/ws-000001/")
    router = await request("GET", f"{worker.web_url}/router/")
    with_token = await request(
        "GET", f"{worker.web_url}/table/workspace-state/ws-000001/", token=CONTROL_TOKEN
    )
    samples = await scrape(worker)

    assert ("post", "/signals") in refused
    assert ("get", "/workspaces/{workspace_id}") in refused
    assert ("get", "/health") not in refused
    assert table[0] == 401 and router[0] == 401
    assert with_token[0] == 404
    assert (
        named(samples, "autopilot_http_requests_total", "route", "status")[("unmatched", "401")]
        == 2.0
    )
