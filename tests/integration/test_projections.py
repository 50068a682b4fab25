"""Projections on a real broker: the worker's live projection equals `autopilot replay` row for
row (SQLite and PostgreSQL), a killed projector resumes to the same rows, `--until` gives the
state as of a point, and `autopilot ledger verify` passes a clean ledger and flags a forgery."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.client import SignalPublisher
from app.settings import Settings
from core.replay import replay_decisions
from projections.database import Database
from projections.ledger_reader import read_records_to_end, seek_to_start
from projections.schema import READ_MODELS, rows_of
from tests.integration.commands import ROOT, autopilot_cli, ledger_until
from tests.integration.conftest import StartWorker
from tests.support.factories import command_payload, decision_payload, ledger_entry
from tools.demo import SIGNALS, SPAN_SECONDS, WORKSPACES
from tools.workload import realistic_stream
from topics.ledger import (
    DECISION_KINDS,
    TERMINAL_KINDS,
    LedgerEntry,
    LedgerKind,
    PlaybookEntry,
)

WAIT_SECONDS = 300.0
START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def read_models(url: str) -> dict[str, list[tuple[object, ...]]]:
    database = Database.open(url)
    try:
        return {table: rows_of(database, table) for table in READ_MODELS}
    finally:
        database.close()


def positions(url: str) -> dict[int, int]:
    database = Database.open(url)
    try:
        if "projection_positions" not in database.tables():
            return {}
        return {
            int(p): int(o)
            for p, o in database.query("SELECT partition_id, next_offset FROM projection_positions")
        }
    finally:
        database.close()


async def ledger_ends(settings: Settings) -> dict[int, int]:
    """Per ledger partition, the offset just past its last committed entry: where a projector
    that read everything stands (the end offset itself may lie past a transaction's commit
    marker, which holds no entry)."""
    assert settings.kafka_bootstrap_servers
    records = await read_records_to_end(
        settings.kafka_bootstrap_servers, settings.topic("ledger"), timeout=60
    )
    return {p: got[-1][0] + 1 if got else 0 for p, got in records.items()}


async def caught_up(url: str, ends: dict[int, int], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        got = await asyncio.to_thread(positions, url)
        if all(got.get(p, 0) >= end for p, end in ends.items() if end > 0):
            return
        assert time.monotonic() < deadline, f"projection at {got}, ledger ends at {ends}"
        await asyncio.sleep(0.5)


async def run_workload(settings: Settings) -> list[LedgerEntry]:
    """The demo's workload: published, decided and carried out, read back from the ledger."""
    assert settings.kafka_bootstrap_servers
    signals = realistic_stream(
        workspaces=WORKSPACES,
        signals=SIGNALS,
        start=START,
        span_seconds=SPAN_SECONDS,
        monitoring=True,
    )
    async with SignalPublisher(settings.kafka_bootstrap_servers, settings.topic("signals")) as p:
        await p.publish_many(signals)
    expected = len(
        replay_decisions(signals, settings.window_config(), settings.policy(), settings.partitions)
    )

    def complete(entries: list[LedgerEntry]) -> bool:
        # Every decision, and every command ended: the decisions' and the playbooks' steps',
        # once every playbook run has ended.
        kinds = Counter(e.kind for e in entries)
        issued = kinds[LedgerKind.DECISION_MADE] + kinds[LedgerKind.DECISION_DEFERRED]
        runs_ended = kinds[LedgerKind.PLAYBOOK_COMPLETED] + kinds[LedgerKind.PLAYBOOK_FAILED]
        return (
            sum(kinds[k] for k in DECISION_KINDS) >= expected
            and kinds[LedgerKind.PLAYBOOK_STARTED] == runs_ended
            and issued + step_commands(entries) <= sum(kinds[k] for k in TERMINAL_KINDS)
        )

    entries = await ledger_until(settings, complete, timeout=WAIT_SECONDS)
    # What a late writer adds (a copy, a breaker change) lands within this.
    await asyncio.sleep(3.0)
    assert sum(e.kind is LedgerKind.SIGNALS_FOLDED for e in entries) > 0
    return entries


def step_commands(entries: list[LedgerEntry]) -> int:
    """Commands playbook runs issued besides their first (which is their decision's)."""
    return sum(
        len(e.payload.commands)
        for e in entries
        if isinstance(e, PlaybookEntry) and e.kind is not LedgerKind.PLAYBOOK_STARTED
    )


def until_positions(live: dict[int, int]) -> str:
    assert all(o > 0 for o in live.values()), live
    return ",".join(f"{p}:{o - 1}" for p, o in sorted(live.items()))


def assert_what_the_run_did(
    models: dict[str, list[tuple[object, ...]]], n_signals: int, steps: int
) -> None:
    """The figures an operator reads: every signal counted, every command ended once (the
    decisions' and the `steps` later playbook steps issued)."""
    metrics = models["run_metrics"]
    # run_metrics columns: interval_start, signals_processed, signals_rejected, made, deferred,
    # suppressed, started, succeeded, failed, dead_lettered, errors, workspaces_affected
    assert sum(int(row[1]) for row in metrics) == n_signals  # type: ignore[call-overload]
    actions = models["action_history"]
    assert actions, "no command was projected"
    statuses = Counter(row[8] for row in actions)
    assert set(statuses) <= {"succeeded", "dead_lettered", "skipped"}, statuses
    made_or_deferred = sum(int(row[3]) + int(row[4]) for row in metrics)  # type: ignore[call-overload]
    assert len(actions) == made_or_deferred + steps
    assert sum(int(row[11]) for row in metrics) > 0  # type: ignore[call-overload]
    assert all(row[10] == 0 and row[11] == 0 for row in models["workspace_status"])


async def test_live_sqlite_projection_equals_a_replay_row_for_row_and_the_ledger_verifies(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    # Given a worker projecting live into its SQLite file, and the demo's workload carried out
    live = sqlite_url(tmp_path / "data" / "projections.sqlite3")
    worker = start_worker({"AUTOPILOT_PROJECTOR_ENABLED": "true"})
    steps = step_commands(await run_workload(settings))
    await caught_up(live, await ledger_ends(settings))
    worker.stop()

    # When the ledger is replayed from offset 0 into a fresh file, up to the live position,
    # by two processes sharing the partitions
    replayed = sqlite_url(tmp_path / "replayed.sqlite3")
    result = autopilot_cli(
        settings,
        "replay",
        "--db",
        replayed,
        "--until",
        until_positions(positions(live)),
        "--jobs",
        "2",
    )

    # Then every read model is the same, row for row
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("replayed "), result.stdout
    assert "with 2 process(es)" in result.stdout
    live_models, replayed_models = read_models(live), read_models(replayed)
    for table in READ_MODELS:
        assert live_models[table] == replayed_models[table], table
    assert_what_the_run_did(live_models, SIGNALS, steps)

    # And a replay into the same database again is refused, with what to do
    again = autopilot_cli(settings, "replay", "--db", replayed)
    assert again.returncode == 2
    assert "already holds projections" in again.stderr and "--replace" in again.stderr
    # And with --replace it is rebuilt from scratch, to the same rows
    rebuilt = autopilot_cli(
        settings,
        "replay",
        "--db",
        replayed,
        "--replace",
        "--until",
        until_positions(positions(live)),
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert read_models(replayed) == live_models

    # And every workspace's chain holds
    verified = autopilot_cli(settings, "ledger", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = orjson.loads(verified.stdout)
    assert report["broken"] == [] and report["unsealed"] == 0
    assert report["chains"] >= WORKSPACES // 2

    # When a forged entry is appended to a workspace (a copy of its last decision, with a new
    # payload)
    forged_at = await forge_an_entry(settings)

    # Then verify names that workspace, where, and why, and exits 1
    flagged = autopilot_cli(settings, "ledger", "verify", "--json")
    assert flagged.returncode == 1, flagged.stdout + flagged.stderr
    [broken] = orjson.loads(flagged.stdout)["broken"]
    assert (broken["chain"], broken["partition"], broken["offset"]) == forged_at
    assert "does not match" in broken["reason"]
    text = autopilot_cli(settings, "ledger", "verify")
    assert text.returncode == 1
    assert f"BROKEN {forged_at[0]}: partition {forged_at[1]} offset {forged_at[2]}" in text.stdout


async def forge_an_entry(settings: Settings) -> tuple[str, int, int]:
    """Append a tampered copy of a workspace's last decision: a new id and payload, its old
    seal (on the workspace's decision chain)."""
    records = await read_partition(settings, 0)
    raw = next(r for r in reversed(records) if orjson.loads(r)["kind"].startswith("decision."))
    document = orjson.loads(raw)
    document["entry_id"] = "dec-forged"
    document["payload"] = {**document["payload"], "rule_id": "forged.rule"}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        sent = await producer.send_and_wait(
            settings.topic("ledger"),
            orjson.dumps(document),
            key=document["workspace_id"].encode(),
            partition=0,
        )
    finally:
        await producer.stop()
    return document["workspace_id"], 0, sent.offset


async def read_partition(settings: Settings, partition: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, isolation_level="read_committed"
    )
    await consumer.start()
    tp = TopicPartition(settings.topic("ledger"), partition)
    try:
        consumer.assign([tp])
        await seek_to_start(consumer, [tp])
        end = (await consumer.end_offsets([tp]))[tp]
        values: list[bytes] = []
        while await consumer.position(tp) < end:
            got = await consumer.getmany(tp, timeout_ms=1000)
            values += [r.value for r in got.get(tp, []) if r.value]
        return values
    finally:
        await consumer.stop()


async def test_live_postgresql_projection_equals_a_replay_row_for_row(
    settings: Settings, start_worker: StartWorker, fresh_postgres_url: str, tmp_path: Path
) -> None:
    # Given a worker projecting live into PostgreSQL, and the demo's workload carried out
    worker = start_worker(
        {"AUTOPILOT_PROJECTOR_ENABLED": "true", "AUTOPILOT_PROJECTIONS_URL": fresh_postgres_url}
    )
    steps = step_commands(await run_workload(settings))
    await caught_up(fresh_postgres_url, await ledger_ends(settings))
    worker.stop()

    # When the ledger is replayed into a fresh SQLite file up to the live position
    replayed = sqlite_url(tmp_path / "replayed.sqlite3")
    until = until_positions(positions(fresh_postgres_url))
    result = autopilot_cli(settings, "replay", "--db", replayed, "--until", until)

    # Then PostgreSQL's rows are SQLite's rows, row for row
    assert result.returncode == 0, result.stderr
    live_models, replayed_models = read_models(fresh_postgres_url), read_models(replayed)
    for table in READ_MODELS:
        assert [tuple(map(_plain, row)) for row in live_models[table]] == [
            tuple(map(_plain, row)) for row in replayed_models[table]
        ], table
    assert_what_the_run_did(live_models, SIGNALS, steps)


def _plain(value: object) -> object:
    # PostgreSQL's BIGINT and INTEGER both come back as int; nothing else differs by type.
    return value


async def test_a_killed_projector_resumes_to_the_same_rows_as_an_uninterrupted_replay(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    # Given a ledger written by a worker that projects nothing itself
    worker = start_worker({"AUTOPILOT_PROJECTOR_ENABLED": "false"})
    steps = step_commands(await run_workload(settings))
    worker.stop()
    ends = await ledger_ends(settings)
    assert not (tmp_path / "data" / "projections.sqlite3").exists()

    # When a projector, folding 100 records a transaction, is SIGKILLed mid-run and restarted
    killed = sqlite_url(tmp_path / "killed.sqlite3")
    projector = start_projector(settings, killed)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while sum(positions(killed).values()) < sum(ends.values()) // 3:
            assert time.monotonic() < deadline, "the projector made no progress"
            assert projector.poll() is None, projector.stdout.read() if projector.stdout else ""
            time.sleep(0.05)
    finally:
        projector.kill()
        projector.wait(timeout=30)
    at_kill = sum(positions(killed).values())
    assert 0 < at_kill < sum(ends.values()), (at_kill, ends)
    restarted = start_projector(settings, killed)
    try:
        await caught_up(killed, ends)
    finally:
        restarted.send_signal(signal.SIGTERM)
        out, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, out
    assert "stopped after" in out

    # Then its rows are those of an uninterrupted replay
    whole = sqlite_url(tmp_path / "whole.sqlite3")
    result = autopilot_cli(settings, "replay", "--db", whole, "--jobs", "1")
    assert result.returncode == 0, result.stderr
    killed_models, whole_models = read_models(killed), read_models(whole)
    for table in READ_MODELS:
        assert killed_models[table] == whole_models[table], table
    assert_what_the_run_did(whole_models, SIGNALS, steps)


def start_projector(settings: Settings, url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
        "AUTOPILOT_PARTITIONS": str(settings.partitions),
        "AUTOPILOT_PROJECTOR_BATCH_RECORDS": "100",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app", "projector", "--db", url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# --- --until on a known sequence ---------------------------------------------------------------

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def _entry(
    n: int, kind: LedgerKind, workspace: str, at: datetime, payload: dict[str, Any]
) -> bytes:
    entry = ledger_entry(
        kind,
        payload,
        entry_id=f"e-{n}",
        workspace_id=workspace,
        correlation_id=f"sig-{workspace}",
        causation_id=f"sig-{workspace}",
        policy_version="p-test",
        recorded_at=at,
    )
    return entry.model_dump_json().encode()


def known_sequence() -> list[bytes]:
    """ws-a: decided, started, failed (retry), started, succeeded; ws-b: decided later."""
    a = {"command_id": "cmd-a", "action": "run_provisioning", "priority": "high", "rule_id": "r"}
    b = {"command_id": "cmd-b", "action": "send_followup", "priority": "low", "rule_id": "r2"}
    critical = {"facts": {"health.score": 45, "health.status": "critical"}}
    error = {"class": "RetryableError", "reason": "503", "retryable": True}
    second = T0 + timedelta(seconds=70)
    return [
        _entry(1, LedgerKind.DECISION_MADE, "ws-a", T0, decision_payload(**a, input=critical)),
        _entry(
            2,
            LedgerKind.ACTION_STARTED,
            "ws-a",
            T0 + timedelta(seconds=1),
            command_payload(**a, attempt=1, lease_until=T0 + timedelta(seconds=61), worker="w1"),
        ),
        _entry(
            3,
            LedgerKind.ACTION_FAILED,
            "ws-a",
            T0 + timedelta(seconds=2),
            command_payload(**a, attempt=1, error=error, retry_at=second),
        ),
        _entry(
            4,
            LedgerKind.ACTION_STARTED,
            "ws-a",
            second,
            command_payload(**a, attempt=2, lease_until=second, worker="w1"),
        ),
        _entry(
            5,
            LedgerKind.ACTION_SUCCEEDED,
            "ws-a",
            T0 + timedelta(seconds=71),
            command_payload(**a, attempt=2, detail={}),
        ),
        _entry(
            6,
            LedgerKind.DECISION_MADE,
            "ws-b",
            T0 + timedelta(seconds=72),
            decision_payload(decision_id="dec-b", **b),
        ),
    ]


async def test_until_gives_the_state_as_of_that_point(settings: Settings, tmp_path: Path) -> None:
    # Given a known sequence on one ledger partition (and a copy of its third entry)
    sequence = known_sequence()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for value in [*sequence[:3], sequence[2], *sequence[3:]]:
            await producer.send_and_wait(settings.topic("ledger"), value, key=b"x", partition=1)
    finally:
        await producer.stop()

    def replay(name: str, until: str) -> dict[str, list[tuple[object, ...]]]:
        url = sqlite_url(tmp_path / f"{name}.sqlite3")
        result = autopilot_cli(settings, "replay", "--db", url, "--until", until)
        assert result.returncode == 0, result.stderr
        assert f"as of {until.replace('Z', '+00:00')}" in result.stdout or name != "time"
        return read_models(url)

    # When replayed as of 2 seconds after the first entry (a timestamp)
    as_of_time = replay("time", "2026-11-21T10:00:02Z")
    # Then cmd-a is retrying after its first failed attempt, and ws-b is not there yet
    [row] = as_of_time["action_history"]
    assert (row[0], row[8], row[9], row[14]) == ("cmd-a", "retrying", 1, "503")
    assert [r[0] for r in as_of_time["workspace_status"]] == ["ws-a"]
    assert as_of_time["workspace_status"][0][1:3] == (45, "critical")
    assert as_of_time["workspace_status"][0][10] == 1  # one open command
    assert [r[0] for r in as_of_time["ledger_entries"]] == ["e-1", "e-2", "e-3"]

    # When replayed up to the copy's offset and one more (an offset: 0,1,2,copy 3,4)
    as_of_offset = replay("offset", "1:4")
    # Then the second attempt has started, the copy was not counted twice
    [row] = as_of_offset["action_history"]
    assert (row[8], row[9]) == ("running", 2)
    [m1, m2] = as_of_offset["run_metrics"]
    assert (m1[0], m1[6], m1[8], m1[10]) == ("2026-11-21T10:00:00Z", 1, 1, 1)
    assert (m2[0], m2[6]) == ("2026-11-21T10:01:00Z", 1)

    # When replayed to the end
    whole = replay("whole", "2026-11-21T11:00:00Z")
    # Then cmd-a succeeded on attempt 2, ws-b's command is open
    rows = {r[0]: r for r in whole["action_history"]}
    assert (rows["cmd-a"][8], rows["cmd-a"][9], rows["cmd-b"][8]) == ("succeeded", 2, "decided")
    attempts = [(r[1], r[5]) for r in whole["action_attempts"]]
    assert attempts == [(1, "failed"), (2, "succeeded")]
