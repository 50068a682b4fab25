"""The read models' tables, in SQL that SQLite and PostgreSQL both accept.

Timestamps are ISO-8601 UTC text (`2026-11-21T10:00:00Z`), so they sort and compare the same in
both databases. Intervals are `interval_start`, the recorded time floored to the interval.
"""

from __future__ import annotations

from projections.database import Database, DatabaseError

# Bump when a table changes: a database built by another version is refused, not misread.
SCHEMA_VERSION = 1

TABLES: dict[str, str] = {
    "projection_meta": """
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL""",
    # Where each projector stands: the next offset to read, committed with the rows it made.
    "projection_positions": """
        topic TEXT NOT NULL,
        partition_id INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (topic, partition_id)""",
    # One row per entry id: how every entry is folded exactly once (copies are skipped).
    "ledger_entries": """
        entry_id TEXT PRIMARY KEY,
        partition_id INTEGER NOT NULL,
        record_offset BIGINT NOT NULL,
        kind TEXT NOT NULL,
        workspace_id TEXT,
        correlation_id TEXT NOT NULL,
        recorded_at TEXT NOT NULL""",
    "workspace_status": """
        workspace_id TEXT PRIMARY KEY,
        health_score INTEGER,
        health_status TEXT,
        health_at TEXT,
        last_decision_id TEXT,
        last_decision_kind TEXT,
        last_rule_id TEXT,
        last_action TEXT,
        last_priority TEXT,
        last_decided_at TEXT,
        open_commands INTEGER NOT NULL,
        parked_commands INTEGER NOT NULL,
        actions_succeeded INTEGER NOT NULL,
        actions_dead_lettered INTEGER NOT NULL,
        updated_at TEXT NOT NULL""",
    # One row per command: its state now, and its whole story as JSON ([at, kind, attempt]).
    "action_history": """
        command_id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        action TEXT NOT NULL,
        priority TEXT NOT NULL,
        rule_id TEXT NOT NULL,
        decision_id TEXT,
        correlation_id TEXT NOT NULL,
        policy_version TEXT,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        decided_at TEXT,
        first_started_at TEXT,
        finished_at TEXT,
        last_error_class TEXT,
        last_error TEXT,
        reissued_from TEXT,
        lifecycle TEXT NOT NULL""",
    "action_attempts": """
        command_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        worker TEXT,
        started_at TEXT,
        ended_at TEXT,
        outcome TEXT,
        error_class TEXT,
        error TEXT,
        PRIMARY KEY (command_id, attempt)""",
    # Breakers are per worker and per provider (actions/breakers.py).
    "circuit_states": """
        worker TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL,
        changed_at TEXT NOT NULL,
        PRIMARY KEY (worker, provider)""",
    # What the runtime did per interval, as the old operator runtime reported after each run.
    "run_metrics": """
        interval_start TEXT PRIMARY KEY,
        signals_processed INTEGER NOT NULL,
        signals_rejected INTEGER NOT NULL,
        decisions_made INTEGER NOT NULL,
        decisions_deferred INTEGER NOT NULL,
        decisions_suppressed INTEGER NOT NULL,
        actions_started INTEGER NOT NULL,
        actions_succeeded INTEGER NOT NULL,
        actions_failed INTEGER NOT NULL,
        actions_dead_lettered INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        workspaces_affected INTEGER NOT NULL""",
    # Decisions that issued a command, and terminal action outcomes, per interval and lane.
    "priority_metrics": """
        interval_start TEXT NOT NULL,
        priority TEXT NOT NULL,
        decisions INTEGER NOT NULL,
        actions INTEGER NOT NULL,
        PRIMARY KEY (interval_start, priority)""",
    # Each workspace seen in an interval: affected (a command issued for it) and its health as
    # the policy last saw it in that interval (null when no decision saw it).
    "interval_workspaces": """
        interval_start TEXT NOT NULL,
        workspace_id TEXT NOT NULL,
        affected INTEGER NOT NULL,
        health_status TEXT,
        PRIMARY KEY (interval_start, workspace_id)""",
    # Workspaces parked by a dead letter now (a release or a drop deletes the row): why, since
    # when, and how many commands wait behind the parking.
    "parked_workspaces": """
        workspace_id TEXT PRIMARY KEY,
        since TEXT NOT NULL,
        reason TEXT NOT NULL,
        dead_lettered TEXT NOT NULL,
        action TEXT NOT NULL,
        error_class TEXT NOT NULL,
        queued INTEGER NOT NULL""",
    # Each shard's run of a sweep (sweep.completed): its tick, and what it saw and did.
    "sweep_runs": """
        entry_id TEXT PRIMARY KEY,
        schedule TEXT NOT NULL,
        tick_id TEXT NOT NULL,
        at TEXT NOT NULL,
        shard INTEGER NOT NULL,
        requested_by TEXT,
        workspaces INTEGER NOT NULL,
        evaluated INTEGER NOT NULL,
        decisions INTEGER NOT NULL,
        actions INTEGER NOT NULL,
        suppressed INTEGER NOT NULL,
        affected INTEGER NOT NULL,
        skipped INTEGER NOT NULL""",
    # Each run of a playbook (playbook.*): where it stands, the steps it ended, when. A run
    # ends once (playbook.completed or playbook.failed: ended_at set).
    "playbook_runs": """
        run_id TEXT PRIMARY KEY,
        workspace_id TEXT NOT NULL,
        playbook TEXT NOT NULL,
        rule_id TEXT,
        status TEXT NOT NULL,
        step TEXT,
        steps_completed INTEGER NOT NULL,
        last_outcome TEXT,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        ended_at TEXT""",
}

# The read models compared row for row (live against replayed); positions and meta differ.
READ_MODELS = (
    "ledger_entries",
    "workspace_status",
    "action_history",
    "action_attempts",
    "circuit_states",
    "run_metrics",
    "priority_metrics",
    "interval_workspaces",
    "parked_workspaces",
    "sweep_runs",
    "playbook_runs",
)


# Where a database built as of a moment says so: a live projector will not carry it on.
AS_OF_KEY = "as_of"

# What an operator changes to get another value (the meta key is not a setting's name).
_SETTING = {
    "schema_version": "schema version",
    "interval_seconds": "AUTOPILOT_METRICS_INTERVAL_SECONDS",
}


def create(database: Database, interval_seconds: int) -> None:
    """Create the tables if missing; refuse a database of another schema or interval."""
    with database.transaction():
        for name, columns in TABLES.items():
            # SQLite keys a table by a hidden rowid and its primary key in a second B-tree;
            # WITHOUT ROWID keeps one, keyed by the primary key (faster text-keyed upserts).
            suffix = " WITHOUT ROWID" if database.dialect == "sqlite" else ""
            database.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns}){suffix}")
        wanted = {"schema_version": str(SCHEMA_VERSION), "interval_seconds": str(interval_seconds)}
        stored = dict(database.query("SELECT key, value FROM projection_meta"))
        for key, value in wanted.items():
            if key not in stored:
                database.execute(
                    "INSERT INTO projection_meta (key, value) VALUES (?, ?)", (key, value)
                )
            elif stored[key] != value:
                raise DatabaseError(
                    f"the projections database {database.where} was built with {_SETTING[key]}="
                    f"{stored[key]}, not {value}: rebuild it with `autopilot replay` into a "
                    "fresh database, or keep the setting it was built with"
                )


def rows_of(database: Database, table: str) -> list[tuple[object, ...]]:
    """Every row of a read model, in primary-key order (for comparisons and exports)."""
    key = {
        "ledger_entries": "entry_id",
        "workspace_status": "workspace_id",
        "action_history": "command_id",
        "action_attempts": "command_id, attempt",
        "circuit_states": "worker, provider",
        "run_metrics": "interval_start",
        "priority_metrics": "interval_start, priority",
        "interval_workspaces": "interval_start, workspace_id",
        "parked_workspaces": "workspace_id",
        "sweep_runs": "entry_id",
        "playbook_runs": "run_id",
    }[table]
    return database.query(f"SELECT * FROM {table} ORDER BY {key}")


def refuse_as_of(database: Database) -> None:
    """A database replayed as of a moment stays as of it: following would mix two states."""
    rows = database.query("SELECT value FROM projection_meta WHERE key = ?", (AS_OF_KEY,))
    if rows:
        raise DatabaseError(
            f"the projections database {database.where} was replayed as of {rows[0][0]}; "
            "a live projection needs a database of its own (or `autopilot replay --replace`)"
        )
