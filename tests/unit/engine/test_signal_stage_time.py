"""Ticks through the signal stage (real RocksDB store): timers fire once and are pushed back by
the signals that arm them, held signals are folded when due, sweeps act within their limits,
and a tick written twice acts once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from core.policy import DecisionKind
from core.rules import parse_policy
from tests.support.stage_shard import CONTROL, Shard
from topics.control import Tick
from topics.ledger import DecisionEntry, SweepCompleted

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

POLICY = """
[timing]
tick_seconds = 10
hold_until_due = ["followup_due"]

[[schedules]]
id = "sweep"
every_seconds = 60
max_workspaces = 2
max_actions = 1

[[timers]]
id = "hb"
armed_by = ["heartbeat"]
after_seconds = 600
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
on = ["sweep:sweep"]
when = [{ fact = "queue.pending", op = ">", value = 50 }]
action = "rebalance_queue"
priority = 9
cooldown_seconds = 0
"""


def decisions(out: list[Any]) -> list[tuple[str, str]]:
    return [(e.payload.rule_id, e.kind.value) for e in out if isinstance(e, DecisionEntry)]


@pytest.fixture
def shard(tmp_path: Path) -> Iterator[Shard]:
    shard = Shard(tmp_path, parse_policy(POLICY, "test"))
    yield shard
    shard.store.close()


def test_a_missing_heartbeat_fires_its_timer_once_and_not_while_heartbeats_flow(
    shard: Shard,
) -> None:
    """Given heartbeats of the watched component every 5 minutes, then timer ticks find
    nothing due; when they stop, the first tick 10 minutes after the last fires the timer once
    (a decision on the timer, caused by it), and later ticks fire nothing more."""
    for minutes in (0, 5, 10, 15):
        at = T + timedelta(minutes=minutes)
        shard.signal("heartbeat", at, at, component="ingest")
        assert decisions(shard.tick("timers", at + timedelta(seconds=10))) == []

    assert decisions(shard.tick("timers", T + timedelta(minutes=24, seconds=50))) == []
    fired = shard.tick("timers", T + timedelta(minutes=25))
    assert decisions(fired) == [("heartbeat-missing", DecisionKind.MADE.value)]
    entry = next(e for e in fired if isinstance(e, DecisionEntry))
    assert entry.payload.input["signal"]["type"] == "timer:hb"
    assert entry.payload.input["at"] == int((T + timedelta(minutes=25)).timestamp())
    assert [c["action"] for c in fired if isinstance(c, dict)] == ["restart_integration"]

    assert decisions(shard.tick("timers", T + timedelta(minutes=40))) == []


def test_heartbeats_of_another_component_or_already_stale_do_not_arm_the_timer(
    shard: Shard,
) -> None:
    """Given a heartbeat of another component, and one written 20 minutes after its event
    time (a backfill), then no timer is armed: nothing fires an hour later."""
    shard.signal("heartbeat", T, T, component="billing")
    shard.signal("heartbeat", T, T + timedelta(minutes=20), component="ingest")

    assert decisions(shard.tick("timers", T + timedelta(hours=1))) == []


def test_a_follow_up_written_ahead_of_its_time_is_decided_when_a_tick_reaches_it(
    shard: Shard,
) -> None:
    """Given a follow-up due in two hours (further ahead than signals may be), then it is
    accepted and nothing is decided on it until a timer tick reaches its time; that tick
    decides it once."""
    due = T + timedelta(hours=2)
    assert shard.signal("followup_due", due, T) == []

    assert decisions(shard.tick("timers", due - timedelta(seconds=10))) == []
    fired = shard.tick("timers", due)
    assert decisions(fired) == [("followup", DecisionKind.MADE.value)]
    assert decisions(shard.tick("timers", due + timedelta(seconds=10))) == []
    assert shard.stage.totals[("held",)] == 1
    assert shard.stage.totals[("folded",)] == 1


def test_a_follow_up_due_already_is_decided_on_arrival(shard: Shard) -> None:
    """Given a follow-up whose time has come when it is written, then it is decided at once."""
    assert decisions(shard.signal("followup_due", T, T + timedelta(seconds=1))) == [
        ("followup", DecisionKind.MADE.value)
    ]


def queue(shard: Shard, workspace_id: str, pending: int) -> None:
    shard.signal(
        "queue_depth", T, T, workspace_id=workspace_id, workspace=workspace_id, pending=pending
    )


def test_a_sweep_acts_on_the_worst_workspaces_first_within_its_limits(shard: Shard) -> None:
    """Given three workspaces with saturated queues (one of them with old jobs too, so the
    worst health) and one without, when the sweep's tick comes, then one action is taken
    (max_actions 1), on the worst one, and sweep.completed says what the run saw and left."""
    for workspace_id, pending in (("ws-b", 80), ("ws-c", 60), ("ws-d", 90), ("ws-e", 3)):
        queue(shard, workspace_id, pending)
    shard.signal(
        "oldest_pending_age", T, T, workspace_id="ws-c", workspace="ws-c", age_seconds=2400.0
    )

    out = shard.tick("sweep", T + timedelta(minutes=1))

    made = [e for e in out if isinstance(e, DecisionEntry)]
    assert [(e.workspace_id, e.payload.rule_id) for e in made] == [("ws-c", "sweep-queue")]
    assert (
        made[0].causation_id
        == "tick-sweep-" + str(int((T + timedelta(minutes=1)).timestamp())) + "-"
    )
    (summary,) = [e for e in out if isinstance(e, SweepCompleted)]
    assert summary.payload.model_dump(
        include={
            "schedule",
            "workspaces",
            "candidates",
            "evaluated",
            "decisions",
            "actions",
            "affected",
            "skipped",
            "max_actions",
            "max_workspaces",
        }
    ) == {
        "schedule": "sweep",
        "workspaces": 4,
        "candidates": 3,
        "evaluated": 1,
        "decisions": 1,
        "actions": 1,
        "affected": 1,
        "skipped": 2,
        "max_actions": 1,
        "max_workspaces": 2,
    }


def test_a_tick_written_twice_acts_once_and_an_operator_run_acts_besides(shard: Shard) -> None:
    """Given a sweep's tick acted on, then a copy of it (or of an earlier period) does
    nothing; an operator's run of the same moment does act, once per request id."""
    queue(shard, "ws-b", 80)
    at = T + timedelta(minutes=1)
    assert len([e for e in shard.tick("sweep", at) if isinstance(e, SweepCompleted)]) == 1

    assert shard.tick("sweep", at) == []
    assert shard.tick("sweep", T) == []
    assert shard.stage.totals[("sweep", "sweep")] == 1
    run = shard.tick("sweep", at, requested_by="alice")
    (summary,) = [e for e in run if isinstance(e, SweepCompleted)]
    assert summary.payload.requested_by == "alice"
    assert shard.tick("sweep", at, requested_by="alice") == []


def test_a_tick_of_a_schedule_the_policy_no_longer_has_decides_nothing(shard: Shard) -> None:
    """Given a tick of an unknown schedule (written under an older policy), then nothing is
    decided and it is counted, not lost silently."""
    assert shard.tick("weekly", T) == []
    assert shard.stage.totals[("tick_unknown", "weekly")] == 1


def test_a_tick_on_another_shards_partition_is_refused_with_its_reason(shard: Shard) -> None:
    """Given a tick naming shard 5 on this shard's partition (0), then nothing is decided, and
    it is dead-lettered with a signal.rejected entry saying why."""
    tick = Tick(tick_id="t-5", schedule="sweep", shard=5, due_at=T)

    out = shard.feed(CONTROL, tick.model_dump_json().encode(), T)

    assert [(e.kind.value, e.payload.reason) for e in out] == [
        ("signal.rejected", "invalid: a tick for shard 5 on control partition 0")
    ]


def test_a_held_signal_is_not_released_a_second_early_whatever_its_workspace_id(
    shard: Shard,
) -> None:
    """Given a follow-up of workspace 9-lives (an id starting with a digit, which sorts before
    the key separator) due at T+60, then the tick at T+59 leaves it held; T+60 decides it."""
    due = T + timedelta(seconds=60)
    shard.signal("followup_due", due, T, workspace_id="9-lives", workspace="9-lives")

    assert decisions(shard.tick("timers", due - timedelta(seconds=1))) == []
    assert decisions(shard.tick("timers", due)) == [("followup", DecisionKind.MADE.value)]
