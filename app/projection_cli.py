"""`autopilot replay` (rebuild the read models from offset 0) and `autopilot projector` (follow).

Both run projections/projector.py, the code the worker runs live, so a replayed database equals
the live one row for row.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from app.settings import Settings, load_settings
from core.dead_letters import parse_timestamp
from projections import projector as live
from projections import replay_jobs
from projections.database import Database, DatabaseError, sqlite_path
from projections.projector import Projector, Until
from projections.schema import AS_OF_KEY, TABLES, refuse_as_of
from projections.store import Projection
from topics.catalog import LEDGER
from topics.errors import ConfigurationError

DB_HELP = (
    "the database (sqlite:////abs/path, sqlite:///rel/path or postgresql://...; default: "
    "AUTOPILOT_PROJECTIONS_URL, else projections.sqlite3 under AUTOPILOT_DATA_DIR)"
)


def _until_option(ctx: click.Context, param: click.Parameter, value: str | None) -> Until | None:
    if value is None:
        return None
    try:
        return parse_until(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("replay")
@click.option("--db", help=DB_HELP)
@click.option(
    "--until",
    callback=_until_option,
    help="state as of: a timestamp (entries recorded up to it), an offset (up to it in every "
    "partition) or PARTITION:OFFSET,...",
)
@click.option("--replace", is_flag=True, help="empty the database first if it holds projections")
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    help="processes folding the ledger's partitions at once (default: one per core)",
)
def replay_command(db: str | None, until: Until | None, replace: bool, jobs: int) -> None:
    """Rebuild the projections (read models) from offset 0 of the ledger into a fresh
    database, with a progress bar."""
    run_replay(db, until, replace=replace, jobs=jobs)


def run_replay(db: str | None, until: Until | None, *, replace: bool, jobs: int) -> int:
    """Rebuild the read models from the ledger's first offset into a fresh database."""
    settings = load_settings()
    bootstrap = _bootstrap(settings)
    url = db or settings.projections_database()
    database = _fresh(url, replace=replace)
    try:
        projection = Projection(database, settings.topic(LEDGER), settings.metrics_interval_seconds)
        if until is not None:
            database.execute(
                "INSERT INTO projection_meta (key, value) VALUES (?, ?)",
                (AS_OF_KEY, _describe(until)),
            )
        console = Console(stderr=True)
        with Progress(
            TextColumn("replaying the ledger"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>9,.0f} entries/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=not console.is_terminal,
        ) as bar:
            task = bar.add_task("replay", total=None, rate=0.0)

            def advanced(totals: live.Progress) -> None:
                bar.update(task, total=totals.total, completed=totals.records, rate=totals.rate)

            job = replay_jobs.ReplayJob(
                url,
                bootstrap,
                projection.topic,
                settings.metrics_interval_seconds,
                settings.projector_batch_records,
                until,
                settings.kafka_security(),
            )
            done = replay_jobs.replay(job, jobs, advanced)
        as_of = f" as of {_describe(until)}" if until is not None else ""
        print(
            f"replayed {done.records} ledger records into {database.where}{as_of} with "
            f"{jobs} process(es): {done.folded} entries folded, {done.copies} copies "
            f"skipped, {done.unreadable} unreadable, {done.later} recorded later left out "
            f"({done.rate:,.0f} entries/s)"
        )
    finally:
        database.close()
    return 0


@click.command("projector")
@click.option("--db", help=DB_HELP)
def projector_command(db: str | None) -> None:
    """Follow the ledger and keep the projections up to date, as the worker does unless
    AUTOPILOT_PROJECTOR_ENABLED=false; until SIGTERM or SIGINT."""
    run_projector(db)


def run_projector(db: str | None) -> int:
    """Keep the read models up to date with the ledger until SIGTERM or SIGINT."""
    settings = load_settings()
    bootstrap = _bootstrap(settings)
    database = Database.open(db or settings.projections_database())
    try:
        projection = Projection(database, settings.topic(LEDGER), settings.metrics_interval_seconds)
        refuse_as_of(database)

        async def follow() -> live.Progress:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
            print(f"projecting {projection.topic} into {database.where}", flush=True)
            return await Projector(
                projection,
                bootstrap,
                batch_records=settings.projector_batch_records,
                security=settings.kafka_security(),
            ).run(follow=True, stop=stop)

        done = asyncio.run(follow())
        print(f"stopped after {done.records} records ({done.folded} entries folded)")
    finally:
        database.close()
    return 0


def _fresh(url: str, *, replace: bool) -> Database:
    if url.startswith("sqlite:") and replace:
        path = Path(sqlite_path(url))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    database = Database.open(url)
    existing = _tables_with_rows(database)
    if existing and replace and database.dialect == "postgresql":
        with database.transaction():
            for table in TABLES:
                database.execute(f"DROP TABLE IF EXISTS {table}")
        existing = []
    if existing:
        database.close()
        raise DatabaseError(
            f"the projections database {database.where} already holds projections "
            f"({', '.join(existing)}): pass another --db, or --replace to rebuild it "
            "(stop any projector writing to it first)"
        )
    return database


def _tables_with_rows(database: Database) -> list[str]:
    present = database.tables()
    return [t for t in TABLES if t in present and database.query(f"SELECT 1 FROM {t} LIMIT 1")]


def parse_until(text: str) -> Until:
    """A point in the ledger: a timestamp, an offset, or PARTITION:OFFSET,...; ValueError."""
    text = text.strip()
    if text.isdigit():
        return Until(offset=int(text))
    if ":" in text and all(
        part.partition(":")[0].isdigit() and part.partition(":")[2].isdigit()
        for part in text.split(",")
    ):
        pairs = (part.partition(":") for part in text.split(","))
        return Until(offsets={int(p): int(o) for p, _, o in pairs})
    try:
        return Until(at=parse_timestamp(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a timestamp (2026-11-21T10:00:00Z), an offset (1234) "
            "or PARTITION:OFFSET,... (0:120,1:98)"
        ) from None


def _describe(until: Until) -> str:
    if until.at is not None:
        return until.at.isoformat()
    if until.offsets:
        return ",".join(f"{p}:{o}" for p, o in sorted(until.offsets.items()))
    return f"offset {until.offset}"


def _bootstrap(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("set KAFKA_BOOTSTRAP_SERVERS to the broker that holds the ledger")
    return settings.kafka_bootstrap_servers
