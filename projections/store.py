"""Folding a batch of ledger records into the database, with the position, in one transaction.

A batch is read in offset order per partition. Its entries are decoded, the ones already folded
(by id, the ledger's at-least-once copies) skipped, the rows they touch loaded, folded
(core/projection_fold.py) and written back, and the next offset of each partition moved, only if it
still is where this projector left it: two projectors on one database never fold a batch twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

from core.projection_fold import (
    METRICS,
    ActionRow,
    AttemptRow,
    Fold,
    IntervalWorkspaceRow,
    ParkedRow,
    PlaybookRow,
    Rows,
    WorkspaceRow,
    iso,
    keys_of,
)
from projections import schema
from projections.database import Database, DatabaseError
from projections.entries import DecodedEntry, UnreadableEntryError, decode_entry

logger = logging.getLogger(__name__)

# Parameters per IN (...) list: well under SQLite's and PostgreSQL's limits.
_CHUNK = 500
# Rows kept between batches; past it the cache starts again (rows are read as needed).
MAX_CACHED_ROWS = 400_000


class PositionMovedError(DatabaseError):
    """Another projector moved a partition's position: re-read it and carry on from there."""


@dataclass(frozen=True, slots=True)
class Record:
    """One ledger record as read from Kafka."""

    partition: int
    offset: int
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Applied:
    """What one batch did."""

    folded: int
    copies: int
    unreadable: int
    # Entries left out because they were recorded after `until` (a replay as of a moment).
    later: int


class Projection:
    """The read models of one ledger topic in one database."""

    def __init__(self, database: Database, topic: str, interval_seconds: int) -> None:
        self.database = database
        self.topic = topic
        self.interval_seconds = interval_seconds
        schema.create(database, interval_seconds)
        # Rows this projection read or wrote, kept across batches: a row of a partition whose
        # position this projection moved last is still as it left it (the move from the
        # expected offset fails otherwise, and the cache is dropped).
        self._cache = Rows()
        self._known_workspaces: set[str] = set()
        self._known_commands: set[str] = set()
        self._known_intervals: set[tuple[str, str]] = set()
        # Workspaces whose parking the cache knows (parked: in cache.parked; else not parked).
        self._known_parked: set[str] = set()
        self._known_playbooks: set[str] = set()
        # The attempt numbers cached per command, so a batch finds its attempts directly.
        self._attempts_of: dict[str, set[int]] = {}
        # An empty database holds nothing this projection has not written: no reads needed.
        self._complete = not database.query("SELECT 1 FROM ledger_entries LIMIT 1")

    def positions(self) -> dict[int, int]:
        """The next offset to read per partition (absent: from the start)."""
        rows = self.database.query(
            "SELECT partition_id, next_offset FROM projection_positions WHERE topic = ?",
            (self.topic,),
        )
        return {int(p): int(o) for p, o in rows}

    def apply(
        self,
        records: Sequence[Record],
        moves: dict[int, tuple[int, int]],
        until: datetime | None = None,
    ) -> Applied:
        """Fold records and move each partition from its expected offset to the next one.

        Reading and folding happen before the transaction, which only writes: projectors of
        other partitions fold meanwhile. That is safe because every row a partition's entries
        fold into belongs to that partition (its workspaces and commands), and its position
        moves only from where this projector left it: anyone else who folded it since makes
        the move fail, and nothing is written.
        """
        db = self.database
        try:
            entries, unreadable = self._decode(records)
            later = 0
            if until is not None:
                kept = [(r, e) for r, e in entries if e.recorded_at <= until]
                later = len(entries) - len(kept)
                entries = kept
            fresh, copies = self._first_copies(db, entries)
            rows = self._load(db, [e for _, e in fresh])
            fold = Fold(rows, self.interval_seconds)
            for _, entry in fresh:
                fold.add(entry)
            with db.transaction():
                for partition, (expected, following) in sorted(moves.items()):
                    self._move(db, partition, expected, following)
                self._write(db, rows, fresh)
        except BaseException:
            # Cached rows were folded into; without the commit they are not the stored ones.
            self._forget()
            raise
        self._keep(rows)
        return Applied(len(fresh), copies, unreadable, later)

    def _forget(self) -> None:
        self._cache = Rows()
        self._known_workspaces.clear()
        self._known_commands.clear()
        self._known_intervals.clear()
        self._known_parked.clear()
        self._known_playbooks.clear()
        self._attempts_of.clear()
        self._complete = False

    def _keep(self, rows: Rows) -> None:
        cache = self._cache
        cache.workspaces.update(rows.workspaces)
        cache.actions.update(rows.actions)
        cache.attempts.update(rows.attempts)
        for command_id, attempt in rows.attempts:
            self._attempts_of.setdefault(command_id, set()).add(attempt)
        cache.intervals.update(rows.intervals)
        self._known_workspaces.update(rows.workspaces)
        self._known_commands.update(rows.actions)
        self._known_intervals.update(rows.intervals)
        for workspace_id, parked in rows.parked.items():
            if parked is None:
                cache.parked.pop(workspace_id, None)
            else:
                cache.parked[workspace_id] = parked
        self._known_parked.update(rows.parked)
        cache.playbooks.update(rows.playbooks)
        self._known_playbooks.update(rows.playbooks)
        size = len(cache.workspaces) + len(cache.actions) + len(cache.attempts)
        if size + len(cache.intervals) + len(cache.playbooks) > MAX_CACHED_ROWS:
            self._forget()  # read again as needed: memory stays bounded

    def _move(self, db: Database, partition: int, expected: int, following: int) -> None:
        moved = db.execute(
            "UPDATE projection_positions SET next_offset = ? "
            "WHERE topic = ? AND partition_id = ? AND next_offset = ?",
            (following, self.topic, partition, expected),
        )
        if moved == 0 and expected == 0:
            moved = db.execute(
                "INSERT INTO projection_positions (topic, partition_id, next_offset) "
                "VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (self.topic, partition, following),
            )
        if moved == 0:
            raise PositionMovedError(
                f"{self.topic}[{partition}] is no longer at offset {expected} in "
                f"{db.where}: another projector moved it"
            )

    def _decode(self, records: Sequence[Record]) -> tuple[list[tuple[Record, DecodedEntry]], int]:
        entries: list[tuple[Record, DecodedEntry]] = []
        unreadable = 0
        for record in records:
            try:
                entries.append((record, decode_entry(record.value)))
            except UnreadableEntryError as exc:
                unreadable += 1
                # The ledger is ours: an unreadable record is a bug or a forgery. Kept in
                # sight (the log, `autopilot ledger verify`), never folded, never a crash.
                logger.error(
                    "unreadable ledger record skipped by the projection",
                    extra={
                        "topic": self.topic,
                        "partition": record.partition,
                        "offset": record.offset,
                        "reason": str(exc),
                    },
                )
        return entries, unreadable

    def _first_copies(
        self, db: Database, entries: list[tuple[Record, DecodedEntry]]
    ) -> tuple[list[tuple[Record, DecodedEntry]], int]:
        ids = list({entry.entry_id for _, entry in entries})
        seen: set[str] = set()
        for chunk in _chunks(ids):
            seen.update(
                row[0]
                for row in db.query(
                    f"SELECT entry_id FROM ledger_entries WHERE entry_id IN ({_marks(chunk)})",
                    chunk,
                )
            )
        fresh = []
        for record, entry in entries:
            if entry.entry_id not in seen:
                seen.add(entry.entry_id)
                fresh.append((record, entry))
        return fresh, len(entries) - len(fresh)

    def _load(self, db: Database, entries: list[DecodedEntry]) -> Rows:
        """The rows these entries fold into: from the cache, else read (absent: new)."""
        keys = keys_of(entries, self.interval_seconds)
        cache = self._cache
        if not self._complete:
            self._read(
                db, keys.workspaces, keys.actions, keys.intervals, keys.parked, keys.playbooks
            )
        rows = Rows()
        rows.workspaces = {w: cache.workspaces[w] for w in keys.workspaces if w in cache.workspaces}
        rows.actions = {c: cache.actions[c] for c in keys.actions if c in cache.actions}
        rows.attempts = {
            (c, n): cache.attempts[(c, n)]
            for c in rows.actions
            for n in self._attempts_of.get(c, ())
        }
        rows.intervals = {k: cache.intervals[k] for k in keys.intervals if k in cache.intervals}
        rows.parked = {w: cache.parked[w] for w in keys.parked if w in cache.parked}
        rows.playbooks = {r: cache.playbooks[r] for r in keys.playbooks if r in cache.playbooks}
        return rows

    def _read(
        self,
        db: Database,
        workspaces: Iterable[str],
        commands: Iterable[str],
        intervals: Iterable[tuple[str, str]],
        parked: Iterable[str] = (),
        playbooks: Iterable[str] = (),
    ) -> None:
        """Read into the cache the rows of keys it does not know yet."""
        cache = self._cache
        unknown = {w for w in workspaces if w not in self._known_workspaces}
        for row in _select(db, WorkspaceRow, "workspace_status", "workspace_id", unknown):
            cache.workspaces[row.workspace_id] = row
        self._known_workspaces |= unknown
        unknown = {c for c in commands if c not in self._known_commands}
        for row in _select(db, ActionRow, "action_history", "command_id", unknown):
            cache.actions[row.command_id] = row
        for row in _select(db, AttemptRow, "action_attempts", "command_id", unknown):
            cache.attempts[(row.command_id, row.attempt)] = row
            self._attempts_of.setdefault(row.command_id, set()).add(row.attempt)
        self._known_commands |= unknown
        missing = {k for k in intervals if k not in self._known_intervals}
        starts = {start for start, _ in missing}
        for row in _select(
            db,
            IntervalWorkspaceRow,
            "interval_workspaces",
            "workspace_id",
            {workspace for _, workspace in missing},
        ):
            if row.interval_start in starts:
                cache.intervals[(row.interval_start, row.workspace_id)] = row
        self._known_intervals |= missing
        unknown = {w for w in parked if w not in self._known_parked}
        for row in _select(db, ParkedRow, "parked_workspaces", "workspace_id", unknown):
            cache.parked[row.workspace_id] = row
        self._known_parked |= unknown
        unknown = {r for r in playbooks if r not in self._known_playbooks}
        for row in _select(db, PlaybookRow, "playbook_runs", "run_id", unknown):
            cache.playbooks[row.run_id] = row
        self._known_playbooks |= unknown

    def _write(self, db: Database, rows: Rows, fresh: list[tuple[Record, DecodedEntry]]) -> None:
        db.executemany(
            "INSERT INTO ledger_entries (entry_id, partition_id, record_offset, kind, "
            "workspace_id, correlation_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.entry_id,
                    r.partition,
                    r.offset,
                    e.kind.value,
                    e.workspace_id,
                    e.correlation_id,
                    iso(e.recorded_at),
                )
                for r, e in fresh
            ],
        )
        _upsert(db, "workspace_status", ("workspace_id",), rows.workspaces.values())
        _upsert(db, "action_history", ("command_id",), rows.actions.values())
        _upsert(db, "action_attempts", ("command_id", "attempt"), rows.attempts.values())
        _upsert(db, "circuit_states", ("worker", "provider"), rows.breakers.values())
        _upsert(
            db, "interval_workspaces", ("interval_start", "workspace_id"), rows.intervals.values()
        )
        _upsert(
            db,
            "parked_workspaces",
            ("workspace_id",),
            [row for row in rows.parked.values() if row is not None],
        )
        _upsert(db, "sweep_runs", ("entry_id",), rows.sweeps.values())
        _upsert(db, "playbook_runs", ("run_id",), rows.playbooks.values())
        released = sorted(w for w, row in rows.parked.items() if row is None)
        for chunk in _chunks(released):
            db.execute(
                f"DELETE FROM parked_workspaces WHERE workspace_id IN ({_marks(chunk)})", chunk
            )
        # Counters span partitions: added in SQL, so concurrent projectors never lose one.
        per_interval: dict[str, dict[str, int]] = {}
        for (start, metric), n in rows.metrics.items():
            per_interval.setdefault(start, dict.fromkeys(METRICS, 0))[metric] += n
        columns = ", ".join(METRICS)
        db.executemany(
            f"INSERT INTO run_metrics (interval_start, {columns}) "
            f"VALUES (?, {_marks(METRICS)}) ON CONFLICT (interval_start) DO UPDATE SET "
            + ", ".join(f"{m} = run_metrics.{m} + excluded.{m}" for m in METRICS),
            [(start, *(counts[m] for m in METRICS)) for start, counts in per_interval.items()],
        )
        db.executemany(
            "INSERT INTO priority_metrics (interval_start, priority, decisions, actions) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (interval_start, priority) DO UPDATE SET "
            "decisions = priority_metrics.decisions + excluded.decisions, "
            "actions = priority_metrics.actions + excluded.actions",
            [(start, priority, d, a) for (start, priority), (d, a) in rows.priorities.items()],
        )


def _select(
    db: Database, row_type: type[Any], table: str, key: str, values: Iterable[str]
) -> Iterator[Any]:
    columns = ", ".join(f.name for f in fields(row_type))
    for chunk in _chunks(sorted(values)):
        for row in db.query(
            f"SELECT {columns} FROM {table} WHERE {key} IN ({_marks(chunk)})", chunk
        ):
            yield row_type(*row)


def _upsert(db: Database, table: str, key: tuple[str, ...], rows: Iterable[Any]) -> None:
    rows = list(rows)
    if not rows:
        return
    names = [f.name for f in fields(rows[0])]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names if n not in key)
    # attrgetter, not dataclasses.astuple: astuple deep-copies every value (half a replay).
    values = attrgetter(*names)
    db.executemany(
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({_marks(names)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
        [values(row) for row in rows],
    )


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _chunks(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]
