"""What the signal stage counts for metrics: only batches whose transaction committed, so a
batch aborted and read again is counted once (real RocksDB store, the seed policy)."""

from __future__ import annotations

from pathlib import Path

import orjson
from aiokafka import ConsumerRecord

from app.settings import Settings
from engine.partition_store import PartitionStore
from engine.signal_stage import SignalStage, SignalTopics

SIGNALS = "test.signals"


def stage_and_store(tmp_path: Path) -> tuple[SignalStage, PartitionStore]:
    settings = Settings()
    stage = SignalStage(
        SignalTopics.named(lambda name: f"test.{name}", "test.changelog"),
        1,
        settings.policy(),
        settings.window_config(),
    )
    return stage, PartitionStore(tmp_path / "0", "test.changelog", 0)


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(SIGNALS, 0, offset, 0, 0, None, value, None, 0, len(value), ())


BATCH = {
    SIGNALS: [
        record(
            0,
            orjson.dumps(
                {
                    "id": "sig-1",
                    "workspace_id": "ws-count-1",
                    "type": "integration_offline",
                    "occurred_at": "2026-11-21T10:00:00Z",
                    "source": "test",
                    "attributes": {"provider": "crm"},
                }
            ),
        ),
        record(1, b"{not json"),
    ]
}


def test_an_aborted_batch_is_not_counted_and_the_same_batch_committed_is_counted_once(
    tmp_path: Path,
) -> None:
    stage, store = stage_and_store(tmp_path)

    stage.process(0, BATCH, store)
    stage.discard(0)
    store.discard()
    assert stage.totals == {}

    stage.process(0, BATCH, store)
    stage.committed(0)

    assert stage.totals == {
        ("folded",): 1,
        ("rejected", "undecodable"): 1,
        ("decision", "seed.integration_offline", "decision.made"): 1,
    }
