"""The projections' database: SQLite (a file, the default) or PostgreSQL (psycopg 3), one API.

SQL is written once with `?` placeholders and portable types; PostgreSQL gets `%s`. Every
write goes through `transaction()`, so rows and the projection's position commit together.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from topics.errors import AutopilotError

Dialect = Literal["sqlite", "postgresql"]
SQLITE_FILE = "projections.sqlite3"


class DatabaseError(AutopilotError):
    """The projections' database cannot be opened or written."""


def default_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file under the data directory."""
    return f"sqlite:///{(data_dir / SQLITE_FILE).resolve()}"


class Database:
    """A connection to the projections' database, in autocommit mode outside transactions."""

    def __init__(self, connection: Any, dialect: Dialect, where: str) -> None:
        self._connection = connection
        self.dialect: Dialect = dialect
        # Where it is, for messages: a file path, or a PostgreSQL URL without its password.
        self.where = where

    @classmethod
    def open(cls, url: str) -> Database:
        """Open `sqlite:///path` (or a bare path) or `postgresql://...`."""
        if url.startswith(("postgresql://", "postgres://")):
            return cls._open_postgresql(url)
        path = Path(sqlite_path(url))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # WAL lets `autopilot report` read while the projector writes.
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=30000")
        except (OSError, sqlite3.Error) as exc:
            raise DatabaseError(
                f"cannot open the projections database {path} ({exc}); "
                "set AUTOPILOT_DATA_DIR or AUTOPILOT_PROJECTIONS_URL to a writable place"
            ) from exc
        return cls(connection, "sqlite", str(path))

    @classmethod
    def _open_postgresql(cls, url: str) -> Database:
        import psycopg

        where = _without_password(url)
        try:
            connection = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to the projections database {where} ({exc}); "
                "check AUTOPILOT_PROJECTIONS_URL"
            ) from exc
        return cls(connection, "postgresql", where)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.dialect == "postgresql" else text

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except _driver_errors() as exc:
            raise DatabaseError(f"the projections database {self.where} failed: {exc}") from exc

    def execute(self, text: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""
        with self._translated():
            cursor = self._connection.execute(self._sql(text), tuple(params))
            return int(cursor.rowcount)

    def executemany(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row."""
        rows = list(rows)
        if not rows:
            return
        with self._translated():
            if self.dialect == "postgresql":
                with self._connection.cursor() as cursor:
                    cursor.executemany(self._sql(text), rows)
            else:
                self._connection.executemany(text, rows)

    def query(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows a query returns."""
        with self._translated():
            cursor = self._connection.execute(self._sql(text), tuple(params))
            return [tuple(row) for row in cursor.fetchall()]

    def tables(self) -> set[str]:
        """The names of the tables in the database (its current schema, for PostgreSQL)."""
        if self.dialect == "postgresql":
            sql = (
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        else:
            sql = "SELECT name FROM sqlite_master WHERE type = 'table'"
        return {str(row[0]) for row in self.query(sql)}

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Everything inside commits together, or nothing does."""
        if self.dialect == "postgresql":
            with self._translated(), self._connection.transaction():
                yield self
            return
        # IMMEDIATE takes the write lock up front: two projectors never interleave a batch.
        self.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self._connection.close()


def _driver_errors() -> tuple[type[BaseException], ...]:
    import psycopg

    return (sqlite3.Error, psycopg.Error)


def sqlite_path(url: str) -> str:
    """The file of a SQLite URL (or of a bare path)."""
    # SQLAlchemy's convention: sqlite:///relative/path, sqlite:////absolute/path.
    return url.removeprefix("sqlite:///")


def _without_password(url: str) -> str:
    """The URL to show: no password in its user part, and no query (it may hold one)."""
    scheme, sep, rest = url.partition("://")
    rest = rest.split("?", 1)[0]
    credentials, at, host = rest.rpartition("@")
    if not at:
        return f"{scheme}{sep}{rest}"
    user, colon, _ = credentials.partition(":")
    return f"{scheme}{sep}{user}{':***' if colon else ''}@{host}"
