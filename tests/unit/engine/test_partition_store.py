"""A partition's store on real RocksDB: a batch's changes are visible to the batch, reach the
disk only when applied (its transaction committed), vanish when discarded (aborted), and a
changelog restore brings a store to the committed state."""

from __future__ import annotations

from pathlib import Path

from engine.partition_store import PartitionStore
from engine.transactions import Outgoing


def store_at(path: Path) -> PartitionStore:
    return PartitionStore(path / "3", "app.counts-changelog", 3)


def test_a_batch_sees_its_own_changes_and_the_changelog_holds_their_last_values(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)

    store.put(b"ws-1", b"1")
    store.put(b"ws-1", b"2")
    store.put(b"ws-2", b"1")
    store.delete(b"ws-3")

    assert (store.get(b"ws-1"), store.get(b"ws-3")) == (b"2", None)
    assert store.changelog_records() == [
        Outgoing("app.counts-changelog", 3, b"ws-1", b"2"),
        Outgoing("app.counts-changelog", 3, b"ws-2", b"1"),
        Outgoing("app.counts-changelog", 3, b"ws-3", None),
    ]
    assert list(store.items()) == []  # nothing on disk before the commit


def test_applied_changes_survive_a_reopen_with_their_checkpoint(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.put(b"ws-1", b"2")
    store.apply(checkpoint=41)
    store.close()

    reopened = store_at(tmp_path)

    assert list(reopened.items()) == [(b"ws-1", b"2")]
    assert reopened.checkpoint == 41
    assert reopened.changelog_records() == []


def test_discarded_changes_leave_the_store_as_it_was(tmp_path: Path) -> None:
    store = store_at(tmp_path)
    store.put(b"ws-1", b"1")
    store.apply(checkpoint=None)

    store.put(b"ws-1", b"9")
    store.delete(b"ws-1")
    store.discard()

    assert store.get(b"ws-1") == b"1"
    assert store.checkpoint is None


def test_a_restore_replays_committed_records_in_order_tombstones_included(
    tmp_path: Path,
) -> None:
    store = store_at(tmp_path)
    store.put(b"ws-9", b"stale")
    store.apply(checkpoint=3)

    written = store.restore(
        [(4, b"ws-1", b"1"), (5, b"ws-1", b"2"), (6, b"ws-9", None), (7, None, b"no key")]
    )

    assert written == 3
    assert list(store.items()) == [(b"ws-1", b"2")]
    assert store.checkpoint == 7


def test_a_scan_reads_a_key_range_in_order_as_of_the_batch(tmp_path: Path) -> None:
    """Given stored keys and a batch that changed some (a new key between them, one removed,
    one rewritten, one past the range), when a range is scanned, then it gives the range's
    keys in order with the batch's values, and nothing outside it."""
    store = store_at(tmp_path)
    for key in (b"a", b"c", b"e", b"g", b"z"):
        store.put(key, b"stored " + key)
    store.apply(checkpoint=None)
    store.put(b"b", b"new b")
    store.delete(b"c")
    store.put(b"e", b"new e")
    store.put(b"h", b"new h")
    store.put(b"y", b"past the range")

    assert list(store.scan(b"a", b"y")) == [
        (b"a", b"stored a"),
        (b"b", b"new b"),
        (b"e", b"new e"),
        (b"g", b"stored g"),
        (b"h", b"new h"),
    ]
    assert list(store.scan(b"d", b"f")) == [(b"e", b"new e")]
    assert list(store.scan(b"i", b"x")) == []
