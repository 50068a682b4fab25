"""`autopilot report`: the read models as terminal tables, and optionally one HTML file.

Both renderings draw their tables from one list of sections, so they never disagree; the HTML
is self-contained (inline CSS and SVG, no script, no URL) so it can be mailed or archived.
"""

from __future__ import annotations

import html
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.settings import load_settings
from projections import charts
from projections.database import Database, sqlite_path
from projections.report import (
    IN_FLIGHT_STATUSES,
    STATUSES,
    TERMINAL_STATUSES,
    DeadLetteredCommand,
    Outcomes,
    ProjectionsMissingError,
    Report,
    Series,
    read_report,
    require_projections,
)
from topics.errors import AutopilotError

Cell = str | int | float | None
T = TypeVar("T")
Section = tuple[str, tuple[str, ...], list[list[Cell]]]
_BUILD_HINT = (
    "build it from the ledger with `autopilot replay`, or start a worker (`autopilot worker`) "
    "so its projector fills it in; --db or AUTOPILOT_PROJECTIONS_URL chooses another database"
)


class ReportError(AutopilotError):
    """The report cannot be read or written."""


@click.command("report")
@click.option("--db", help="database URL (default: the configured projections database)")
@click.option("--html", "html_path", metavar="PATH", help="also write a self-contained HTML report")
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="workspaces listed"
)
def report_command(db: str | None, html_path: str | None, top: int) -> None:
    """The projections' key tables in the terminal, and optionally as one HTML file."""
    run_report(db, html_path, top)


def run_report(db: str | None, html_path: str | None = None, top: int = 10) -> int:
    """Print the report, and write it as HTML with html_path; 0 on success."""
    url = db or load_settings().projections_database()
    report = load_report(url, top)
    write_terminal_report(report, Console())
    if html_path:
        path = Path(html_path)
        try:
            path.write_text(html_report(report), encoding="utf-8")
        except OSError as exc:
            raise ReportError(
                f"cannot write the report to {path} ({exc}); choose another --html path"
            ) from exc
        print(f"wrote report to {path}")
    return 0


def load_report(url: str, top: int = 10) -> Report:
    """Read the report from an existing projections database (never creates one)."""
    return read_projections(url, lambda database: read_report(database, top=top))


def read_projections(url: str, query: Callable[[Database], T]) -> T:
    """Run a read on an existing projections database (never creates one)."""
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(sqlite_path(url))
        # Database.open would create an empty file, which later reads as "no read models".
        if not path.is_file():
            raise ProjectionsMissingError(
                f"there is no projections database at {path}: {_BUILD_HINT}"
            )
    database = Database.open(url)
    try:
        require_projections(database)
        return query(database)
    except _read_errors(url) as exc:
        raise ReportError(f"cannot read the projections database {database.where} ({exc})") from exc
    finally:
        database.close()


def write_terminal_report(report: Report, console: Console) -> None:
    """Print the report's tables with rich."""
    console.print(Text(f"Autopilot report, generated from {report.source}", style="bold"))
    console.print(Text(_position(report)))
    for title, headers, rows in _sections(report):
        if not rows:
            console.print(Text(f"{title}: none", style="dim"))
            continue
        table = Table(title=title, title_justify="left")
        for index, header in enumerate(headers):
            numeric = any(isinstance(row[index], int | float) for row in rows)
            table.add_column(header, justify="right" if numeric else "left", overflow="fold")
        for row in rows:
            # Text, not str: an id such as `ws-[red]` must not be read as rich markup.
            table.add_row(*(Text(_cell(value)) for value in row))
        console.print(table)


def html_report(report: Report) -> str:
    """The whole report as one self-contained HTML document."""
    starts = report.timeline.starts
    parts = [
        "<h1>Autopilot report</h1>",
        f'<p class="meta">Generated from {_e(report.source)}. {_e(_position(report))}.'
        f" {_e(_span(report))}</p>",
        charts.time_chart(
            "priority",
            "Decisions and actions per priority, over time",
            starts,
            [
                ("Decisions that issued a command", _pairs(report.decisions)),
                ("Actions ended (terminal outcomes)", _pairs(report.actions)),
            ],
        ),
        charts.outcome_chart(
            "outcomes",
            "Outcome mix per action",
            [(o.action, o.counts) for o in report.outcomes],
            STATUSES,
        ),
        charts.ranked_chart(
            "workspaces",
            "Top workspaces by commands",
            [(w.workspace_id, w.commands) for w in report.top_workspaces],
            "commands",
        ),
        charts.time_chart(
            "health",
            "Health of the workspaces decisions saw, over time",
            starts,
            [("Workspaces per interval, by health status", _pairs(report.health))],
        ),
    ]
    for title, headers, rows in _sections(report):
        parts.append(f"<h2>{_e(title)}</h2>")
        parts.append(_html_table(headers, rows) if rows else '<p class="empty">none</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Autopilot report</title><style>{_CSS}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )


def _sections(report: Report) -> list[Section]:
    t = report.totals
    totals: list[list[Cell]] = [
        ["intervals with activity", t.intervals],
        ["signals processed", t.signals_processed],
        ["signals rejected", t.signals_rejected],
        ["decisions made", t.decisions_made],
        ["decisions deferred", t.decisions_deferred],
        ["decisions suppressed", t.decisions_suppressed],
        ["actions started", t.actions_started],
        ["actions succeeded", t.actions_succeeded],
        ["actions failed (attempts)", t.actions_failed],
        ["actions dead-lettered", t.actions_dead_lettered],
        ["errors", t.errors],
        ["workspaces affected", t.workspaces_affected],
        ["workspaces known", report.workspaces],
        ["open commands", report.open_commands],
        ["parked commands", report.parked_commands],
    ]
    actions = {series.name: sum(series.values) for series in report.actions}
    lanes: list[list[Cell]] = [
        [s.name, sum(s.values), actions.get(s.name, 0)] for s in report.decisions
    ]
    lanes += [[name, 0, n] for name, n in actions.items() if name not in {r[0] for r in lanes}]
    return [
        ("Totals", ("", "count"), totals),
        ("Per priority", ("priority", "decisions", "actions ended"), lanes),
        (
            "Outcomes per action",
            ("action", "commands", "succeeded", "skipped", "dead-lettered", "rejected", "open"),
            [
                [o.action, o.total, *(o.count(s) for s in TERMINAL_STATUSES), _open(o)]
                for o in report.outcomes
            ],
        ),
        (
            "Top workspaces by commands",
            ("workspace", "commands", "succeeded", "dead-lettered", "open"),
            [
                [w.workspace_id, w.commands, w.succeeded, w.dead_lettered, w.in_flight]
                for w in report.top_workspaces
            ],
        ),
        (
            "Health per interval",
            ("status", "latest", "peak"),
            [[s.name, s.values[-1], max(s.values)] for s in report.health],
        ),
        (
            "Circuit breakers",
            ("worker", "provider", "state", "failures", "since"),
            [[c.worker, c.provider, c.state, c.failures, c.changed_at] for c in report.circuits],
        ),
        (
            "Recent dead-lettered commands",
            ("command", "workspace", "action", "rule", "attempts", "finished", "error"),
            [_dead_row(d) for d in report.dead_lettered],
        ),
        (
            "Parked workspaces",
            ("workspace", "since", "reason", "commands held"),
            [[p.workspace_id, p.since, p.reason, p.queued] for p in report.parked_workspaces],
        ),
        (
            "Recent sweep runs",
            (
                "schedule",
                "at",
                "asked by",
                "shards",
                "workspaces",
                "evaluated",
                "decisions",
                "actions",
                "affected",
                "skipped",
            ),
            [
                [
                    s.schedule,
                    s.at,
                    s.requested_by or "schedule",
                    s.shards,
                    s.workspaces,
                    s.evaluated,
                    s.decisions,
                    s.actions,
                    s.affected,
                    s.skipped,
                ]
                for s in report.sweeps
            ],
        ),
        (
            "Playbooks",
            ("playbook", "running", "completed", "failed"),
            [[p.playbook, p.running, p.completed, p.failed] for p in report.playbooks],
        ),
        (
            "Recent playbook runs",
            ("workspace", "playbook", "status", "step", "started", "ended"),
            [
                [r.workspace_id, r.playbook, r.status, r.step, r.started_at, r.ended_at]
                for r in report.playbook_runs
            ],
        ),
    ]


def _dead_row(d: DeadLetteredCommand) -> list[Cell]:
    error = ": ".join(filter(None, (d.error_class, d.error)))
    return [d.command_id, d.workspace_id, d.action, d.rule_id, d.attempts, d.finished_at, error]


def _open(outcomes: Outcomes) -> int:
    return sum(outcomes.count(status) for status in IN_FLIGHT_STATUSES)


def _position(report: Report) -> str:
    if not report.positions:
        return "Ledger position: nothing projected yet"
    topics: dict[str, list[str]] = {}
    for p in report.positions:
        topics.setdefault(p.topic, []).append(f"{p.partition_id}@{p.next_offset:,}")
    read = sum(p.next_offset for p in report.positions)
    where = "; ".join(f"{topic} {' '.join(offsets)}" for topic, offsets in topics.items())
    return f"Ledger position (partition@next offset): {where} ({read:,} records read)"


def _span(report: Report) -> str:
    timeline = report.timeline
    if not timeline.starts:
        return "No intervals recorded yet."
    bucket = timeline.intervals_per_bucket * timeline.interval_seconds
    return (
        f"{timeline.intervals} intervals of {_duration(timeline.interval_seconds)} from "
        f"{timeline.starts[0]} (UTC); each bar spans {_duration(bucket)}."
    )


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _pairs(series: Sequence[Series]) -> list[tuple[str, tuple[float, ...]]]:
    return [(s.name, s.values) for s in series]


def _html_table(headers: Sequence[str], rows: list[list[Cell]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_cell(v)}</td>'
            if isinstance(v, int | float)
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.0f}" if value.is_integer() else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _e(value: Cell) -> str:
    return html.escape(_cell(value), quote=True)


def _read_errors(url: str) -> tuple[type[Exception], ...]:
    if not url.startswith(("postgresql://", "postgres://")):
        return (sqlite3.Error,)
    import psycopg

    return (sqlite3.Error, psycopg.Error)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:760px;color:#222}"
    "h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}.meta{color:#555}"
    "svg .title{font-size:16px;font-weight:600}"
    "table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}"
    "th,td{border-bottom:1px solid #ddd;padding:.25rem .6rem;text-align:left}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "svg{display:block;margin:2rem 0;max-width:100%;height:auto;font-size:12px}"
    "svg .heading{font-weight:600}svg .tick,svg .value{fill:#555;font-size:11px}"
    "svg .grid{stroke:#e5e5e5}svg .empty{fill:#888;font-size:14px}.empty{color:#888}"
)
