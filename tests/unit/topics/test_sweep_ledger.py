"""The sweep.completed entry, as golden/ledger-v3-sweeps.jsonl holds it: byte for byte as
today's builder writes it, read back as its model, on its shard's chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from core.chain import ChainCheck, chain_of_entry, seal
from core.ledger_entries import sweep_entry
from core.sweeps import SweepRun
from topics.ledger import LedgerEntry, SweepCompleted, parse_entry

GOLDEN = Path(__file__).parent / "golden"
AT = datetime(2026, 12, 7, 10, 0, 1, 250000, tzinfo=UTC)
RUN = SweepRun(
    schedule="daily",
    tick_id="tick-3f1c",
    at=int(datetime(2026, 12, 7, 10, 0, tzinfo=UTC).timestamp()),
    partition=3,
    workspaces=1250,
    candidates=7,
    evaluated=7,
    decisions=6,
    actions=5,
    suppressed=1,
    affected=6,
    skipped=0,
    max_workspaces=13,
    max_actions=7,
)


def sweep_records() -> list[bytes]:
    return (GOLDEN / "ledger-v3-sweeps.jsonl").read_bytes().splitlines()


def sweep_kinds() -> Iterator[LedgerEntry]:
    """A scheduled run and an operator's run of the daily sweep on shard 3."""
    yield sweep_entry(RUN, None, AT)
    yield sweep_entry(replace(RUN, tick_id="run-9a0b"), "alice", AT)


def sealed(entries: Iterator[LedgerEntry]) -> list[bytes]:
    heads: dict[str, str] = {}
    written = []
    for entry in entries:
        chain = chain_of_entry(entry, 3)
        record, heads[chain] = seal(entry, heads.get(chain), None)
        written.append(record)
    return written


def test_todays_builder_writes_the_sweep_records_byte_for_byte() -> None:
    """Given the runs built today, when sealed, then the records are the golden ones."""
    assert sealed(sweep_kinds()) == sweep_records()


def test_the_sweep_records_read_as_their_model_on_the_shards_chain() -> None:
    """Given the golden records, when read, then each is a sweep.completed of shard 3 with its
    numbers, the operator's run names its operator, and they chain on the shard's chain."""
    check = ChainCheck(key=None)
    entries = []
    for offset, raw in enumerate(sweep_records()):
        entry = parse_entry(raw)
        entries.append(entry)
        check.add(3, offset, raw)
    assert all(isinstance(e, SweepCompleted) for e in entries)
    assert [(e.payload.schedule, e.payload.shard, e.payload.actions) for e in entries] == [
        ("daily", 3, 5),
        ("daily", 3, 5),
    ]
    assert [e.payload.requested_by for e in entries] == [None, "alice"]
    assert [e.causation_id for e in entries] == ["tick-3f1c", "run-9a0b"]
    assert check.broken == {}
    assert check.checked == 2
