"""projections/database.py and schema.py on a real SQLite file and a real PostgreSQL, alike.

Every test that takes `database` runs once per dialect with the same assertions, so passing
both is the proof that the SQL written once behaves the same in both. The PostgreSQL variant
skips, saying why, when no server can be had (tests/integration/postgres.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from projections import schema
from projections.database import Database
from topics.errors import AutopilotError

POSITIONS = "SELECT topic, partition_id, next_offset FROM projection_positions ORDER BY 1, 2"
INSERT_POSITION = (
    "INSERT INTO projection_positions (topic, partition_id, next_offset) VALUES (?, ?, ?)"
)
ATTEMPT_COLUMNS = "command_id, attempt, worker, started_at, ended_at, outcome, error_class, error"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each dialect: a file under tmp_path, or its own PG database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'projections.sqlite3'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def database(url: str) -> Iterator[Database]:
    database = Database.open(url)
    yield database
    database.close()


def seen_by_another_connection(url: str, query: str) -> list[tuple[object, ...]]:
    """What a separate connection reads: only what was really committed."""
    other = Database.open(url)
    try:
        return other.query(query)
    finally:
        other.close()


def table_names(database: Database) -> set[str]:
    if database.dialect == "sqlite":
        rows = database.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        rows = database.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    return {str(name) for (name,) in rows}


def column_names(database: Database, table: str) -> list[str]:
    if database.dialect == "sqlite":
        rows = database.query("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))
    else:
        rows = database.query(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    return [str(name) for (name,) in rows]


def declared_columns(definition: str) -> list[str]:
    """The column names of one of schema.TABLES' definitions, in order."""
    lines = (line.strip() for line in definition.strip().splitlines())
    return [line.split()[0] for line in lines if not line.startswith("PRIMARY KEY")]


def test_opens_the_dialect_the_url_names(database: Database, url: str) -> None:
    assert database.dialect == url.split(":", 1)[0]
    assert database.query("SELECT 1 + ?", (1,)) == [(2,)]


def test_create_makes_every_table_with_its_columns(database: Database) -> None:
    schema.create(database, interval_seconds=60)

    assert table_names(database) == set(schema.TABLES)
    for table, definition in schema.TABLES.items():
        assert column_names(database, table) == declared_columns(definition), table
    assert dict(database.query("SELECT key, value FROM projection_meta")) == {
        "schema_version": str(schema.SCHEMA_VERSION),
        "interval_seconds": "60",
    }


def test_create_again_with_the_same_interval_keeps_rows(database: Database) -> None:
    schema.create(database, interval_seconds=60)
    database.execute(INSERT_POSITION, ("ledger", 0, 7))

    schema.create(database, interval_seconds=60)

    assert database.query(POSITIONS) == [("ledger", 0, 7)]
    assert len(database.query("SELECT key FROM projection_meta")) == 2


def test_create_with_another_interval_is_refused(database: Database) -> None:
    schema.create(database, interval_seconds=60)

    with pytest.raises(AutopilotError) as raised:
        schema.create(database, interval_seconds=30)

    message = str(raised.value)
    assert "AUTOPILOT_METRICS_INTERVAL_SECONDS=60, not 30" in message
    assert "autopilot replay" in message
    # Nothing of the refused setting was written.
    assert database.query(
        "SELECT value FROM projection_meta WHERE key = ?", ("interval_seconds",)
    ) == [("60",)]


def test_interval_refusal_names_the_setting_to_keep(database: Database) -> None:
    schema.create(database, interval_seconds=60)

    with pytest.raises(AutopilotError) as raised:
        schema.create(database, interval_seconds=30)

    assert "AUTOPILOT_METRICS_INTERVAL_SECONDS" in str(raised.value)


def test_insert_with_placeholders_reads_back_the_exact_rows(database: Database, url: str) -> None:
    schema.create(database, interval_seconds=60)
    attempts = [
        (
            "cmd-1",
            1,
            "worker-a",
            "2026-11-21T10:00:00Z",
            "2026-11-21T10:00:01Z",
            "failed",
            "TimeoutError",
            "read timed out",
        ),
        ("cmd-1", 2, "worker-b", "2026-11-21T10:00:05Z", None, None, None, None),
        ("cmd-2", 1, None, None, None, None, None, 'it\'s 100% "quoted"'),
    ]

    changed = [
        database.execute(
            f"INSERT INTO action_attempts ({ATTEMPT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row
        )
        for row in attempts
    ]
    database.execute(INSERT_POSITION, ("ledger", 3, 2**40 + 1))

    assert changed == [1, 1, 1]
    everything = f"SELECT {ATTEMPT_COLUMNS} FROM action_attempts ORDER BY command_id, attempt"
    assert database.query(everything) == attempts
    assert database.query(
        "SELECT attempt, worker FROM action_attempts WHERE command_id = ? AND outcome IS NULL",
        ("cmd-1",),
    ) == [(2, "worker-b")]
    assert database.query(POSITIONS) == [("ledger", 3, 2**40 + 1)]
    # Outside a transaction every statement commits at once.
    assert seen_by_another_connection(url, everything) == attempts


def test_transaction_commits_everything_together(database: Database, url: str) -> None:
    schema.create(database, interval_seconds=60)

    with database.transaction() as inside:
        inside.execute(INSERT_POSITION, ("ledger", 0, 10))
        inside.execute(INSERT_POSITION, ("ledger", 1, 20))

    assert seen_by_another_connection(url, POSITIONS) == [("ledger", 0, 10), ("ledger", 1, 20)]


class BatchFailedError(Exception):
    pass


def test_transaction_that_raises_writes_nothing(database: Database, url: str) -> None:
    schema.create(database, interval_seconds=60)

    with pytest.raises(BatchFailedError), database.transaction():
        database.execute(INSERT_POSITION, ("ledger", 0, 10))
        database.executemany(INSERT_POSITION, [("ledger", 1, 20), ("ledger", 2, 30)])
        raise BatchFailedError

    assert database.query(POSITIONS) == []
    assert seen_by_another_connection(url, POSITIONS) == []
    # The connection is back in autocommit: the next write commits on its own.
    database.execute(INSERT_POSITION, ("ledger", 0, 11))
    assert seen_by_another_connection(url, POSITIONS) == [("ledger", 0, 11)]


def test_executemany_writes_every_row(database: Database, url: str) -> None:
    schema.create(database, interval_seconds=60)
    rows = [("signals", partition, partition * 100) for partition in range(5)]

    database.executemany(INSERT_POSITION, iter(rows))
    database.executemany(INSERT_POSITION, [])

    assert database.query(POSITIONS) == rows
    assert seen_by_another_connection(url, POSITIONS) == rows


def test_on_conflict_do_update_replaces_the_column(database: Database) -> None:
    schema.create(database, interval_seconds=60)
    upsert_position = (
        f"{INSERT_POSITION} ON CONFLICT (topic, partition_id) "
        "DO UPDATE SET next_offset = excluded.next_offset"
    )
    upsert_meta = (
        "INSERT INTO projection_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )

    changed = [
        database.execute(upsert_position, ("ledger", 0, 5)),
        database.execute(upsert_position, ("ledger", 0, 9)),
        database.execute(upsert_position, ("ledger", 1, 3)),
        database.execute(upsert_meta, ("built_by", "first")),
        database.execute(upsert_meta, ("built_by", "second")),
    ]
    database.executemany(upsert_position, [("ledger", 1, 4), ("ledger", 2, 1)])

    assert changed == [1, 1, 1, 1, 1]
    assert database.query(POSITIONS) == [("ledger", 0, 9), ("ledger", 1, 4), ("ledger", 2, 1)]
    assert database.query("SELECT value FROM projection_meta WHERE key = ?", ("built_by",)) == [
        ("second",)
    ]


def test_on_conflict_do_nothing_keeps_the_first_row(database: Database) -> None:
    schema.create(database, interval_seconds=60)
    insert_entry = (
        "INSERT INTO ledger_entries (entry_id, partition_id, record_offset, kind, workspace_id, "
        "correlation_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
    )
    first = ("e-1", 0, 41, "ActionSucceeded", "ws-1", "corr-1", "2026-11-21T10:00:00Z")
    copy = ("e-1", 2, 99, "ActionFailed", "ws-9", "corr-9", "2026-11-21T11:00:00Z")

    # The row count is how a projector tells a copy it must skip from a new entry.
    assert database.execute(insert_entry, first) == 1
    assert database.execute(insert_entry, copy) == 0
    database.executemany(insert_entry, [copy, ("e-2", *first[1:])])

    assert database.query("SELECT * FROM ledger_entries ORDER BY entry_id") == [
        first,
        ("e-2", *first[1:]),
    ]


UNREACHABLE = "postgresql://u:s3cret@127.0.0.1:1/db"


def test_unreachable_postgresql_is_an_autopilot_error_without_the_password() -> None:
    with pytest.raises(AutopilotError) as raised:
        Database.open(UNREACHABLE)

    message = str(raised.value)
    assert "s3cret" not in message
    assert "postgresql://u:***@127.0.0.1:1/db" in message
    assert "AUTOPILOT_PROJECTIONS_URL" in message
    # A logged traceback shows the cause too.
    assert "s3cret" not in str(raised.value.__cause__)


def test_password_as_a_query_parameter_is_not_shown_either() -> None:
    with pytest.raises(AutopilotError) as raised:
        Database.open("postgresql://u@127.0.0.1:1/db?password=s3cret")

    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize("place", ["under /proc", "under a regular file", "a directory"])
def test_sqlite_in_an_unwritable_place_is_an_autopilot_error(tmp_path: Path, place: str) -> None:
    # Places no user can write a file to, root included (root ignores permission bits).
    (tmp_path / "regular-file").write_text("not a directory\n")
    path = {
        "under /proc": Path("/proc/autopilot/projections.sqlite3"),
        "under a regular file": tmp_path / "regular-file" / "projections.sqlite3",
        "a directory": tmp_path,
    }[place]

    with pytest.raises(AutopilotError) as raised:
        Database.open(f"sqlite:///{path}")

    assert str(path) in str(raised.value)
    assert "AUTOPILOT_DATA_DIR" in str(raised.value)


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root ignores permission bits; the cases above cover root"
)
def test_sqlite_in_a_read_only_directory_is_an_autopilot_error(tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)

    with pytest.raises(AutopilotError) as raised:
        Database.open(f"sqlite:///{read_only / 'projections.sqlite3'}")

    assert "AUTOPILOT_DATA_DIR" in str(raised.value)
