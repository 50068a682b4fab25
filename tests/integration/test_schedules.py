"""Time on the real broker: a cron sweep runs once per period across a restart and a failover,
a missing heartbeat fires its timer once, a follow-up written ahead of its time is decided at
its time, and an operator's `POST /run-once` sweeps at once.

The policy here ticks fast (a 5-second cron, 1-second timer ticks, a 4-second heartbeat timer),
so each behaviour shows within seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from app.settings import Settings
from projections.ledger_reader import read_ledger, read_ledger_to_end
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import CONTROL_TOKEN, request, wait_until_answers
from tests.integration.streams import publish_one_per_record
from tools.worker_process import WorkerProcess
from topics.ledger import DecisionEntry, LedgerEntry, LedgerKind, SweepCompleted
from topics.signals import Signal, signal_from

pytestmark = pytest.mark.integration

PERIOD = 5
POLICY = f"""
[timing]
tick_seconds = 1
hold_until_due = ["followup_due"]

[[schedules]]
id = "quick"
cron = "* * * * * */{PERIOD}"

[[timers]]
id = "hb"
armed_by = ["heartbeat"]
after_seconds = 4
component = "ingest"

[[rules]]
id = "followup"
on = ["followup_due"]
action = "send_followup"
priority = 3
cooldown_seconds = 0

[[rules]]
id = "heartbeat-missing"
on = ["timer:hb"]
action = "restart_integration"
priority = 8
cooldown_seconds = 0

[[rules]]
id = "sweep-queue"
on = ["sweep:quick"]
when = [{{ fact = "queue.pending", op = ">", value = 50 }}]
action = "rebalance_queue"
priority = 9
cooldown_seconds = 3600
"""


@pytest.fixture
def policy_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return {"AUTOPILOT_POLICY_FILE": str(path)}


def now_signal(n: str, workspace_id: str, kind: str, at: datetime, **attributes: object) -> Signal:
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


async def ledger(
    settings: Settings, until: Callable[[list[LedgerEntry]], bool]
) -> list[LedgerEntry]:
    assert settings.kafka_bootstrap_servers
    return await read_ledger(
        settings.kafka_bootstrap_servers,
        settings.topic("ledger"),
        until=until,
        timeout=WAIT_SECONDS,
    )


async def ledger_now(settings: Settings) -> list[LedgerEntry]:
    """The ledger as it is now (read to its committed end)."""
    assert settings.kafka_bootstrap_servers
    return await read_ledger_to_end(
        settings.kafka_bootstrap_servers, settings.topic("ledger"), timeout=WAIT_SECONDS
    )


def replay_agrees(settings: Settings, policy_env: dict[str, str]) -> str:
    """`autopilot policy replay` over this deployment's ledger with the policy the worker ran:
    it must exit 0 with nothing diverging; what it printed."""
    env = {
        **os.environ,
        **policy_env,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", "policy", "replay"],
        cwd=Path(__file__).parent.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def runs(entries: list[LedgerEntry]) -> dict[int, list[int]]:
    """Per shard, the periods (epoch seconds) of its scheduled sweep runs, in ledger order."""
    by_shard: dict[int, list[int]] = defaultdict(list)
    for entry in entries:
        if isinstance(entry, SweepCompleted) and entry.payload.requested_by is None:
            by_shard[entry.payload.shard].append(int(entry.payload.at.timestamp()))
    return by_shard


def decisions(entries: list[LedgerEntry], rule_id: str) -> list[DecisionEntry]:
    return [e for e in entries if isinstance(e, DecisionEntry) and e.payload.rule_id == rule_id]


async def until_each_shard_ran(settings: Settings, after: float, count: int) -> list[LedgerEntry]:
    def enough(got: list[LedgerEntry]) -> bool:
        ran = runs(got)
        return all(len([p for p in ran.get(s, []) if p >= after]) >= count for s in range(4))

    return await ledger(settings, enough)


async def test_a_cron_sweep_runs_once_per_period_across_a_restart_and_a_failover(
    settings: Settings, start_worker: StartWorker, policy_env: dict[str, str]
) -> None:
    # Given a worker sweeping every 5 s, and a workspace whose queue is saturated
    first = start_worker(policy_env, data="first")
    await wait_until_answers(first)
    start = time.time()
    await publish_one_per_record(
        settings, [now_signal("q1", "ws-sweep-1", "queue_depth", datetime.now(UTC), pending=80)]
    )
    await until_each_shard_ran(settings, start, 2)

    # When it restarts (a new process on its own data), and later a second worker joins and
    # the first stops (its shards fail over); noting when shards may have had no worker
    unserved = []
    stopped_at = time.time()
    first.stop()
    restarted = start_worker(policy_env, data="first")
    await wait_until_answers(restarted)
    unserved.append((stopped_at, time.time()))
    await until_each_shard_ran(settings, time.time() + PERIOD, 2)
    joined_at = time.time()
    second = start_worker(policy_env, data="second")
    await wait_until_answers(second)
    await until_each_shard_ran(settings, time.time() + PERIOD, 1)
    unserved.append((joined_at, time.time()))
    failed_over_at = time.time()
    restarted.stop()
    entries = await until_each_shard_ran(settings, time.time() + PERIOD, 2)
    unserved.append((failed_over_at, time.time()))

    # Then each shard ran each period at most once, every run on a period's start, and the
    # only periods without a run began while the shard may have had no worker (one catch-up
    # run covers them); the sweep acted on the saturated workspace once (its cooldown)
    ran = runs(entries)
    assert sorted(ran) == [0, 1, 2, 3]
    for shard, periods in ran.items():
        assert periods == sorted(set(periods)), (shard, periods)
        assert all(p % PERIOD == 0 for p in periods)
        missed = [
            period
            for before, after in itertools.pairwise(periods)
            for period in range(before + PERIOD, after, PERIOD)
        ]
        for period in missed:
            assert any(since - 1 <= period <= until for since, until in unserved), (
                shard,
                period,
                periods,
                unserved,
            )
    swept = decisions(entries, "sweep-queue")
    assert [(e.workspace_id, e.kind) for e in swept] == [("ws-sweep-1", LedgerKind.DECISION_MADE)]
    assert swept[0].causation_id.startswith("tick-")
    assert swept[0].payload.input["signal"]["type"] == "sweep:quick"
    assert "1 evaluations in 1 workspaces: 1 identical, 0 diverging" in replay_agrees(
        settings, policy_env
    )
    assert second.alive


async def test_a_missing_heartbeat_fires_once_and_not_while_heartbeats_flow(
    settings: Settings, start_worker: StartWorker, policy_env: dict[str, str]
) -> None:
    # Given a worker whose timer fires 4 s after a workspace's last ingest heartbeat
    worker = start_worker(policy_env)
    await wait_until_answers(worker)

    # When heartbeats come every second for 8 s
    for n in range(8):
        at = datetime.now(UTC)
        await publish_one_per_record(
            settings, [now_signal(f"hb-{n}", "ws-beat", "heartbeat", at, component="ingest")]
        )
        await asyncio.sleep(1.0)
    # Then nothing fires while they flow
    assert decisions(await ledger_now(settings), "heartbeat-missing") == []
    stopped = time.time()

    # When they stop, then the timer fires once, about 4 s after the last one
    entries = await ledger(settings, lambda got: bool(decisions(got, "heartbeat-missing")))
    (fired,) = decisions(entries, "heartbeat-missing")
    assert fired.workspace_id == "ws-beat"
    assert fired.payload.input["signal"]["type"] == "timer:hb"
    assert fired.recorded_at.timestamp() >= stopped + 2
    await asyncio.sleep(6)
    assert len(decisions(await ledger_now(settings), "heartbeat-missing")) == 1
    # And the policy replay derives the timer's decision again from what it recorded
    assert "1 evaluations in 1 workspaces: 1 identical, 0 diverging" in replay_agrees(
        settings, policy_env
    )


async def test_a_follow_up_written_ahead_of_its_time_is_decided_at_its_time(
    settings: Settings, start_worker: StartWorker, policy_env: dict[str, str]
) -> None:
    # Given a worker, a follow-up due in 8 s and one due in six hours (past the 300 s
    # signals may otherwise be ahead of their record)
    worker = start_worker(policy_env)
    await wait_until_answers(worker)
    due = datetime.now(UTC) + timedelta(seconds=8)
    await publish_one_per_record(
        settings,
        [
            now_signal("f-soon", "ws-follow-1", "followup_due", due),
            now_signal("f-later", "ws-follow-2", "followup_due", due + timedelta(hours=6)),
        ],
    )

    # Then neither is decided (nor refused) before its time; the first is decided at it
    await asyncio.sleep(4)
    early = await ledger_now(settings)
    assert decisions(early, "followup") == []
    assert [e for e in early if e.kind is LedgerKind.SIGNAL_REJECTED] == []
    entries = await ledger(settings, lambda got: bool(decisions(got, "followup")))
    (decided,) = decisions(entries, "followup")
    assert decided.workspace_id == "ws-follow-1"
    assert decided.recorded_at >= due
    assert decided.payload.input["signal"]["id"] == "f-soon"


async def test_run_once_sweeps_every_shard_of_the_worker_now(
    settings: Settings, start_worker: StartWorker, policy_env: dict[str, str]
) -> None:
    # Given a worker, and a workspace whose queue is saturated
    worker = start_worker(policy_env)
    await wait_until_answers(worker)
    await publish_one_per_record(
        settings, [now_signal("q1", "ws-run-1", "queue_depth", datetime.now(UTC), pending=99)]
    )
    url = f"{worker.web_url}/run-once"

    # When an operator asks for a run: without the token, for an unknown schedule, then rightly
    assert (await request("POST", url))[0] == 401
    status, refused = await request(
        "POST", url, body=orjson.dumps({"schedule": "weekly"}), token=CONTROL_TOKEN
    )
    assert (status, refused["error"]) == (
        404,
        "the policy has no sweep schedule weekly (its schedules: quick); add [[schedules]] "
        "to the policy file",
    )
    status, answer = await request(
        "POST", url, body=orjson.dumps({"by": "oncall.alice"}), token=CONTROL_TOKEN
    )

    # Then each of its shards runs the sweep, named by the operator, and it acts on the
    # saturated workspace
    assert status == 202, answer
    assert sorted(t["shard"] for t in answer["ticks"]) == [0, 1, 2, 3]
    ids = {t["tick_id"] for t in answer["ticks"]}

    def ran(got: list[LedgerEntry]) -> list[SweepCompleted]:
        return [e for e in got if isinstance(e, SweepCompleted) and e.payload.tick_id in ids]

    entries = await ledger(settings, lambda got: len(ran(got)) == 4)
    assert {e.payload.requested_by for e in ran(entries)} == {"oncall.alice"}
    assert sum(e.payload.actions for e in ran(entries)) >= 1
    acted = [e for e in decisions(entries, "sweep-queue") if e.causation_id in ids]
    assert [e.workspace_id for e in acted] == ["ws-run-1"]
    assert isinstance(worker, WorkerProcess)
