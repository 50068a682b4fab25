"""Properties of the ledger's hash chain: whatever entries a writer seals in order holds, and
changing any single byte of any entry's payload breaks that entry's chain at that entry (or,
when the bytes no longer parse, is reported as unreadable there), and no other chain."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import event, given, settings
from hypothesis import strategies as st

from core.chain import BrokenLink, ChainCheck, chain_of_entry, seal
from tests.support.factories import command_payload, ledger_entry
from topics.ledger import LedgerEntry, LedgerKind

T = datetime(2024, 1, 1, tzinfo=UTC)
# ws-a and ws-c share ledger partition 0, ws-b is alone on partition 1.
PARTITION = {"ws-a": 0, "ws-b": 1, "ws-c": 0}
json_leaves = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
details = st.dictionaries(
    st.text(max_size=6),
    json_leaves
    | st.lists(json_leaves, max_size=3)
    | st.dictionaries(st.text(max_size=3), json_leaves, max_size=2),
    max_size=4,
)
keys = st.sampled_from([None, b"ledger-key"])


@dataclass(frozen=True)
class Written:
    """One sealed record where the writer put it."""

    workspace: str
    partition: int
    offset: int
    entry_id: str
    record: bytes
    hash: str


@st.composite
def ledgers(draw: st.DrawFn) -> list[LedgerEntry]:
    """Entries of a few workspaces, in the order they are written."""
    items = draw(
        st.lists(
            st.tuples(st.sampled_from(sorted(PARTITION)), details),
            min_size=1,
            max_size=12,
        )
    )
    # Succeeded actions: their `detail` is any JSON object a handler reports.
    return [
        ledger_entry(
            LedgerKind.ACTION_SUCCEEDED,
            command_payload(detail=detail),
            entry_id=f"e-{n}",
            workspace_id=workspace,
            correlation_id=f"c-{n}",
            causation_id=f"c-{n}",
            recorded_at=T + timedelta(seconds=n),
        )
        for n, (workspace, detail) in enumerate(items)
    ]


def write(entries: list[LedgerEntry], key: bytes | None) -> list[Written]:
    """Seal each entry onto its chain's head, appending to its workspace's partition."""
    heads: dict[str, str] = {}
    ends: dict[int, int] = {}
    written = []
    for entry in entries:
        assert entry.workspace_id is not None
        partition = PARTITION[entry.workspace_id]
        chain = chain_of_entry(entry, partition)
        record, sealed = seal(entry, heads.get(chain), key)
        heads[chain] = sealed
        offset = ends.get(partition, 0)
        ends[partition] = offset + 1
        written.append(Written(chain, partition, offset, entry.entry_id, record, sealed))
    return written


def verify(written: list[Written], key: bytes | None, records: dict[int, bytes]) -> ChainCheck:
    """Check partition by partition in offset order (as `autopilot ledger verify` does),
    reading `records[i]` instead of the i-th record written where given."""
    check = ChainCheck(key)
    order = sorted(range(len(written)), key=lambda i: (written[i].partition, written[i].offset))
    for i in order:
        check.add(written[i].partition, written[i].offset, records.get(i, written[i].record))
    return check


def payload_span(record: bytes) -> tuple[int, int]:
    """Where the payload's JSON object lies in a sealed record."""
    start = record.index(b',"payload":') + len(b',"payload":')
    return start, record.index(b',"prev_hash":', start)


@given(entries=ledgers(), key=keys)
@settings(max_examples=300, deadline=None)
def test_entries_sealed_in_order_hold(entries: list[LedgerEntry], key: bytes | None) -> None:
    """Given any entries sealed in order, then nothing is broken, every record is checked and
    each workspace's head is its last entry's hash."""
    written = write(entries, key)

    check = verify(written, key, {})

    assert check.broken == {}
    assert check.checked == len(entries)
    assert check.unsealed == 0
    assert check.heads == {w.workspace: w.hash for w in written}


@given(entries=ledgers(), key=keys, data=st.data())
@settings(max_examples=500, deadline=None)
def test_a_flipped_payload_byte_breaks_exactly_its_entry(
    entries: list[LedgerEntry], key: bytes | None, data: st.DataObject
) -> None:
    """Given any entries sealed in order, when one byte of one entry's payload is changed,
    then that entry's chain is broken at that entry and no other chain is broken; unless the
    bytes no longer parse, in which case the shard reports them unreadable there, and the
    entry's workspace breaks only where its next entry links to the lost one."""
    written = write(entries, key)
    i = data.draw(st.integers(0, len(written) - 1), label="record")
    target = written[i]
    start, end = payload_span(target.record)
    position = data.draw(st.integers(start, end - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="xor")
    tampered = bytearray(target.record)
    tampered[position] ^= mask

    check = verify(written, key, {i: bytes(tampered)})

    expected: dict[str, BrokenLink]
    readable = _parses(bytes(tampered))
    event("still JSON" if readable else "unreadable")
    if readable:
        expected = {
            target.workspace: BrokenLink(
                target.workspace,
                target.partition,
                target.offset,
                target.entry_id,
                "its content does not match its hash",
            )
        }
    else:
        shard = f"shard:{target.partition}"
        expected = {
            shard: BrokenLink(
                shard, target.partition, target.offset, None, "unreadable: not a ledger entry"
            )
        }
        following = [w for w in written[i + 1 :] if w.workspace == target.workspace]
        if following:
            previous = [w for w in written[:i] if w.workspace == target.workspace]
            head = previous[-1].hash[:12] if previous else "nothing (a chain's start)"
            expected[target.workspace] = BrokenLink(
                target.workspace,
                following[0].partition,
                following[0].offset,
                following[0].entry_id,
                f"it links to {target.hash[:12]}, but the chain's previous entry is {head}",
            )
    assert check.broken == expected
    assert check.checked == len(entries)


def _parses(raw: bytes) -> bool:
    try:
        document: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict)
