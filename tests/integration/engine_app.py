"""A process running the engine with a counting stage, for the engine's crash and fencing tests.

    python -m tests.integration.engine_app BOOTSTRAP APP_ID PREFIX DATA_DIR [COMMIT_SECONDS]

With COMMIT_SECONDS, a batch is committed only that often (never on catching up), so the
process nearly always holds processed records not yet committed.

The stage counts the records of each key on its partition (its state) and emits, per input
record, `key:count:partition:offset` to PREFIX.out, so a reader can tell an input that was
emitted twice, and a count that was applied twice, from the output alone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from aiokafka import ConsumerRecord

from engine.batch_engine import BatchEngine
from engine.partition_store import PartitionStore
from engine.transactions import Outgoing


class CountingStage:
    """Per key: how many records; per record: one output naming its count and its place."""

    name = "counting"

    def __init__(self, prefix: str) -> None:
        self.inputs: tuple[str, ...] = (f"{prefix}in",)
        self.changelog = f"{prefix}counts-changelog"
        self.output = f"{prefix}out"

    def process(
        self, partition: int, records: Mapping[str, list[ConsumerRecord]], store: PartitionStore
    ) -> list[Outgoing]:
        out = []
        for record in records.get(self.inputs[0], []):
            key = record.key or b""
            count = int(store.get(key) or b"0") + 1
            store.put(key, str(count).encode())
            value = b"%s:%d:%d:%d" % (key, count, partition, record.offset)
            out.append(Outgoing(self.output, partition, key, value))
        return out

    def discard(self, partition: int) -> None:
        """Nothing is kept outside the store."""

    def committed(self, partition: int) -> None:
        """Nothing is counted."""

    async def prepare(self, partition: int, store: PartitionStore) -> None:
        """Nothing to stage before the first batch."""


async def main(bootstrap: str, app_id: str, prefix: str, data_dir: str, *rest: str) -> None:
    engine = BatchEngine(
        bootstrap,
        app_id,
        CountingStage(prefix),
        Path(data_dir),
        max_records=500,
        commit_records=1_000 if not rest else 1_000_000,
        commit_interval=float(rest[0]) if rest else 0.1,
        commit_when_caught_up=not rest,
        session_timeout_ms=6_000,
        # Shorter than the broker outage of the restart test: a commit times out meanwhile.
        request_timeout_ms=5_000,
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, engine.stop)
    await engine.run()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(*sys.argv[1:]))
