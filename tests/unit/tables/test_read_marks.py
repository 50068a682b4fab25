"""A shard's read mark: records read again below it, and re-routed copies of an origin already
folded, are recognised; everything else is new."""

from __future__ import annotations

import orjson

from tables.read_marks import (
    Copy,
    already_folded,
    already_read,
    copy_of,
    initial_mark,
    next_offset,
    note_folded,
    note_read,
)


def test_a_record_below_the_next_offset_of_its_topic_was_read() -> None:
    """Given a shard that read signals 0..6 and control 0..1, then offsets below each topic's
    next are read, the next and later ones, and other topics, are not."""
    mark = initial_mark()
    for offset in range(7):
        note_read(mark, "signals", offset)
    note_read(mark, "control", 1)

    assert [already_read(mark, "signals", n) for n in (0, 6, 7, 8)] == [True, True, False, False]
    assert [already_read(mark, "control", n) for n in (0, 1, 2)] == [True, True, False]
    assert not already_read(mark, "other", 0)
    assert (next_offset(mark, "signals"), next_offset(mark, "other")) == (7, None)


def test_a_copy_at_or_below_its_sources_last_folded_piece_was_folded() -> None:
    """Given copies folded up to origin offset 10 piece 1 from partition 2, then earlier origins
    and pieces from there were folded; a later piece or origin, or another source, was not."""
    mark = initial_mark()
    note_folded(mark, Copy("signals/2", 10, 0))
    note_folded(mark, Copy("signals/2", 10, 1))

    assert already_folded(mark, Copy("signals/2", 9, 5))
    assert already_folded(mark, Copy("signals/2", 10, 0))
    assert already_folded(mark, Copy("signals/2", 10, 1))
    assert not already_folded(mark, Copy("signals/2", 10, 2))
    assert not already_folded(mark, Copy("signals/2", 11, 0))
    assert not already_folded(mark, Copy("signals/3", 1, 0))


def test_the_headers_of_a_rerouted_record_read_back_as_its_copy() -> None:
    """The re-routed-from header written for a copy reads back as that copy; a record without
    one, or with one that does not parse, is an original."""
    copy = Copy("signals/3", 42, 1)

    assert copy_of(copy.header(), b"1") == copy
    assert copy_of(b"signals/3/42", None) == Copy("signals/3", 42, 0)
    assert copy_of(None, None) is None
    assert copy_of(b"signals/3/forty-two", b"0") is None
    assert copy_of(b"42", b"0") is None
    assert copy_of(b"signals/3/42", b"first") is None


def test_a_mark_survives_its_json_round_trip() -> None:
    """The mark is stored as JSON: read back, it answers as before it was stored."""
    mark = initial_mark()
    note_read(mark, "signals", 4)
    note_folded(mark, Copy("signals/1", 3, 0))
    stored = orjson.loads(orjson.dumps(mark))

    assert already_read(stored, "signals", 4) and not already_read(stored, "signals", 5)
    assert already_folded(stored, Copy("signals/1", 3, 0))
    assert not already_folded(stored, Copy("signals/1", 4, 0))
