"""One shard of the signal stage over a real RocksDB store, fed records one batch at a time as
the engine would, for the stage's unit tests."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from core.rules import Policy
from core.windows import WindowConfig
from engine.partition_store import PartitionStore
from engine.signal_stage import SignalStage, SignalTopics
from topics.approvals import parse_approvals_record
from topics.control import Tick
from topics.ledger import parse_entry

SIGNALS = "test.signals"
CONTROL = "test.control"
LANES = {"test.commands.low", "test.commands.medium", "test.commands.high"}
APPROVALS = "test.approvals"


class Shard:
    """One shard of the stage over a real store, fed records as the engine would."""

    def __init__(self, tmp_path: Path, policy: Policy) -> None:
        self.stage = SignalStage(
            SignalTopics.named(lambda name: f"test.{name}", "test.changelog"),
            1,
            policy,
            WindowConfig(grace_seconds=60),
        )
        self.store = PartitionStore(tmp_path / "0", "test.changelog", 0)
        self.offsets = {SIGNALS: 0, CONTROL: 0}

    def feed(self, topic: str, value: bytes, written: datetime) -> list[Any]:
        """One record in a batch of its own, committed; returns what it wrote to the ledger,
        the command lanes and the approvals topic, each parsed."""
        offset = self.offsets[topic]
        self.offsets[topic] += 1
        millis = int(written.timestamp() * 1000)
        record = ConsumerRecord(topic, 0, offset, millis, 0, None, value, None, 0, len(value), ())
        out = self.stage.process(0, {topic: [record]}, self.store)
        self.store.apply(None)
        self.stage.committed(0)
        return [
            parse_entry(o.value)
            if o.topic == "test.ledger"
            else parse_approvals_record(o.value)
            if o.topic == APPROVALS
            else orjson.loads(o.value)
            for o in out
            if o.topic in {"test.ledger", APPROVALS} or o.topic in LANES
        ]

    def signal(self, signal_type: str, at: datetime, written: datetime, **extra: Any) -> list[Any]:
        value = {
            "id": f"{signal_type}-{int(at.timestamp())}-{extra.pop('workspace', 'ws-a')}",
            "workspace_id": extra.pop("workspace_id", "ws-a"),
            "type": signal_type,
            "occurred_at": at.isoformat(),
            "attributes": extra,
        }
        return self.feed(SIGNALS, orjson.dumps(value), written)

    def tick(self, schedule: str, at: datetime, requested_by: str | None = None) -> list[Any]:
        tick_id = f"tick-{schedule}-{int(at.timestamp())}-{requested_by or ''}"
        tick = Tick(
            tick_id=tick_id, schedule=schedule, shard=0, due_at=at, requested_by=requested_by
        )
        return self.feed(CONTROL, tick.model_dump_json().encode(), at)
