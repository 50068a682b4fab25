"""How far a shard's stored state has read, so a record read again is not folded again.

Faust commits acked offsets every few seconds, and not when a partition is revoked (the
aggregate does not wait for empty streams, agents/faust_app.py). A worker killed, or a partition
moved, in between hands its next owner records whose signals the stored state already holds:
folded again, each of them would count as a duplicate, and a misplaced one would be re-routed
again.

So each shard keeps a read mark beside its workspace states, written with them at every flush
and after them (tables/write_behind.py): the next offset per topic it read, and, for signals
re-routed to it, the last origin folded per source partition. A record below the mark is
already in the state; a re-routed copy at or below its origin's mark was folded from an
earlier copy. Copies from one source partition arrive in origin order, whoever sent them: each
source record is re-sent only after the ones before it were, by one producer per owner
partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tables.write_behind import READ_MARK_PREFIX


@dataclass(frozen=True, slots=True)
class Copy:
    """Where a re-routed record came from: the source partition, its offset, and the piece."""

    source: str  # "topic/partition"
    offset: int
    piece: int

    def header(self) -> bytes:
        """The value of the re-routed-from header."""
        return f"{self.source}/{self.offset}".encode()


def mark_key(partition: int) -> str:
    """The table key of a shard's read mark (never a workspace id)."""
    return f"{READ_MARK_PREFIX}{partition}"


def initial_mark() -> dict[str, Any]:
    """A shard that has read nothing."""
    return {"next": {}, "copies": {}}


def already_read(mark: dict[str, Any], topic: str, offset: int) -> bool:
    """Whether the record at this offset is already in the state (stored, or cached since)."""
    return bool(offset < mark["next"].get(topic, 0))


def next_offset(mark: dict[str, Any], topic: str) -> int | None:
    """The next offset of the topic past what the stored state holds; None if none was read."""
    offset = mark["next"].get(topic)
    return None if offset is None else int(offset)


def note_read(mark: dict[str, Any], topic: str, offset: int) -> None:
    """The record at this offset is folded (stored at the next flush)."""
    mark["next"][topic] = offset + 1


def copy_of(origin: bytes | None, piece: bytes | None) -> Copy | None:
    """The re-routed-from and piece headers as a Copy; None for a record nobody re-routed, or
    whose header does not read as one (it is then folded as an original)."""
    if origin is None:
        return None
    source, _, offset = origin.decode("utf-8", "replace").rpartition("/")
    if not source or not offset.isdigit() or (piece is not None and not piece.isdigit()):
        return None
    return Copy(source, int(offset), int(piece) if piece is not None else 0)


def already_folded(mark: dict[str, Any], copy: Copy) -> bool:
    """Whether this re-routed copy's origin (and piece) was folded from an earlier copy."""
    last = mark["copies"].get(copy.source)
    return last is not None and (copy.offset, copy.piece) <= (last[0], last[1])


def note_folded(mark: dict[str, Any], copy: Copy) -> None:
    """This re-routed copy is folded (stored at the next flush)."""
    mark["copies"][copy.source] = [copy.offset, copy.piece]
