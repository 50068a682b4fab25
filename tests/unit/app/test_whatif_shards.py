"""The what-if's shell without a broker: a shard's control and signal records merged in the
order they were written and cut into the stage's batches, and two runs of the real signal stage
(over real RocksDB stores) whose decisions are compared."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from aiokafka import ConsumerRecord

from app.policy_whatif import CHANGELOG, Batch, PolicyRun, ShardFeed, signal_stage
from app.settings import Settings
from core.policy_whatif import compare
from core.rules import SEED_POLICY_FILE, parse_policy
from engine.signal_stage import SignalTopics
from tests.support.factories import SEED_POLICY
from topics.control import OperatorSwitch, Switch
from topics.ledger import LedgerKind

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
TOPICS = SignalTopics.named(lambda name: f"test.{name}", CHANGELOG)
CONTROL, SIGNALS = TOPICS.control, TOPICS.signals
QUEUE = "monitor.queue_saturated"
WEBHOOK = "seed.webhook_failed"


def record(topic: str, offset: int, millis: int, value: bytes = b"{}") -> ConsumerRecord:
    return ConsumerRecord(topic, 0, offset, millis, 0, None, value, None, 0, len(value), ())


def offsets(batch: Batch) -> tuple[list[int], list[int]]:
    return [r.offset for r in batch[CONTROL]], [r.offset for r in batch[SIGNALS]]


def test_control_and_signals_are_merged_by_time_and_cut_where_a_control_record_follows() -> None:
    """Given signals written at 1, 2, 4 and 5 ms and control records at 0, 3 and 3 ms, then the
    batches are [c0 | s0 s1] and [c1 c2 | s2 s3]: each control record is applied after the
    signals written before it (the stage applies a batch's control records first)."""
    feed = ShardFeed(CONTROL, SIGNALS)
    feed.add(SIGNALS, [record(SIGNALS, n, ms) for n, ms in enumerate((1, 2, 4, 5))])
    feed.add(CONTROL, [record(CONTROL, n, ms) for n, ms in enumerate((0, 3, 3))])
    feed.close(SIGNALS)
    feed.close(CONTROL)

    assert [offsets(batch) for batch in feed.take()] == [([0], [0, 1]), ([1, 2], [2, 3])]


def test_a_topic_waits_for_the_other_until_that_one_is_read_to_its_end() -> None:
    """Given signals but no control record yet, then nothing is ready (a control record written
    before them may still come); when control is read to its end, the signals come in batches
    of at most the batch size."""
    feed = ShardFeed(CONTROL, SIGNALS, max_records=2)
    feed.add(SIGNALS, [record(SIGNALS, n, 10 + n) for n in range(5)])
    assert feed.take() == []
    assert feed.queued(SIGNALS) == 5

    feed.add(CONTROL, [record(CONTROL, 0, 12)])
    assert [offsets(batch) for batch in feed.take()] == [([], [0, 1])]
    feed.close(CONTROL)
    assert [offsets(batch) for batch in feed.take()] == [([0], [2]), ([], [3, 4])]
    feed.close(SIGNALS)
    assert feed.take() == []


def queue(n: int, minute: float, pending: int) -> tuple[datetime, bytes]:
    return signal(f"q{n}", "queue_depth", minute, pending=pending)


def signal(
    signal_id: str, kind: str, minute: float, **attributes: object
) -> tuple[datetime, bytes]:
    at = T + timedelta(minutes=minute)
    value = {
        "id": signal_id,
        "workspace_id": "ws-a",
        "type": kind,
        "occurred_at": at.isoformat(),
        "attributes": attributes,
    }
    return at, orjson.dumps(value)


@pytest.fixture
def p20() -> str:
    """The seed policy with the queue rule's threshold lowered from 50 to 20, and webhook
    retries in the high lane."""
    seed = SEED_POLICY_FILE.read_text()
    threshold = '{ fact = "queue.pending", op = ">", value = 50 }]\naction = "rebalance_queue"'
    retry = 'action = "retry_webhook"\npriority = 6'
    assert threshold in seed and retry in seed
    return seed.replace(threshold, threshold.replace("50", "20")).replace(
        retry, retry.replace("6", "8")
    )


@pytest.fixture
def runs(tmp_path: Path, p20: str) -> Iterator[list[PolicyRun]]:
    settings = Settings(partitions=1)
    made = [
        PolicyRun(signal_stage(settings, TOPICS, SEED_POLICY), tmp_path / "current"),
        PolicyRun(signal_stage(settings, TOPICS, parse_policy(p20, "p20.toml")), tmp_path / "new"),
    ]
    for run in made:
        run.open(0)
    yield made
    for run in made:
        run.close()


def test_two_runs_of_the_stage_over_one_history_give_what_a_lower_threshold_changes(
    runs: list[PolicyRun],
) -> None:
    """Given one workspace's queue readings (10, 25, 30, 55, 60, 65, 70, 40, 80 over 17
    minutes), a webhook failure, then an operator's pause at minute 20 and a reading of 90 at
    minute 31, each record written a second after its event time; when both runs read them
    through the real stage, then under the seed the queue rule acts at 55 and at 80 (its 10
    minutes' cooldown in between), under the lower threshold at 25 and at 70; the webhook retry
    changes lane; the reading after the pause is suppressed under both (the pause applies
    where it was written, not before the batch's signals), so it is no difference."""
    readings = [(0, 10), (2, 25), (4, 30), (6, 55), (8, 60), (10, 65), (13, 70), (15, 40)]
    history = [queue(minute, minute, pending) for minute, pending in readings]
    history += [signal("w1", "webhook_failed", 1), queue(17, 17, 80), queue(31, 31, 90)]
    history.sort()
    pause = OperatorSwitch(
        request_id="pause-1", switch=Switch.PAUSE, requested_at=T + timedelta(minutes=20)
    )
    feed = ShardFeed(CONTROL, SIGNALS)
    feed.add(
        SIGNALS,
        [
            record(SIGNALS, n, int((at.timestamp() + 1) * 1000), value)
            for n, (at, value) in enumerate(history)
        ],
    )
    millis = int((T + timedelta(minutes=20)).timestamp() * 1000)
    feed.add(CONTROL, [record(CONTROL, 0, millis, pause.model_dump_json().encode())])
    feed.close(CONTROL)
    feed.close(SIGNALS)

    for batch in feed.take():
        for run in runs:
            run.feed(batch)
    current, proposed = runs
    report = compare(
        current.decided,
        proposed.decided,
        current_version=current.stage.policy.version,
        proposed_version=proposed.stage.policy.version,
    )

    assert [(d.rule_id, d.cause, d.kind) for d in current.decided] == [
        (WEBHOOK, "w1", LedgerKind.DECISION_MADE.value),
        (QUEUE, "q6", LedgerKind.DECISION_MADE.value),
        (QUEUE, "q17", LedgerKind.DECISION_MADE.value),
        (QUEUE, "q31", LedgerKind.DECISION_SUPPRESSED.value),
    ]
    assert [
        (d.status, d.decided.rule_id, d.decided.cause, d.fields) for d in report.differences
    ] == [
        ("changed", WEBHOOK, "w1", ("priority", "rank")),
        ("new", QUEUE, "q2", ()),
        ("gone", QUEUE, "q6", ()),
        ("new", QUEUE, "q13", ()),
        ("gone", QUEUE, "q17", ()),
    ]
    assert (report.current_decisions, report.proposed_decisions) == (4, 4)
