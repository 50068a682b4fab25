"""`autopilot report`: exact figures read from a small known run in a real SQLite file, the
terminal tables and the self-contained HTML built from them, and the errors an operator sees
when there is nothing to report on."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from app.report_cli import html_report, report_command, run_report, write_terminal_report
from projections import charts, schema
from projections.database import Database
from projections.report import (
    Circuit,
    DeadLetteredCommand,
    Outcomes,
    Position,
    Report,
    Series,
    Totals,
    WorkspaceCommands,
    bucketed,
    read_report,
    timeline_of,
)
from topics.errors import AutopilotError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "report" / "small_run.sql"
CHARTS = ["priority", "outcomes", "workspaces", "health"]


def build_database(path: Path, rows: bool = True) -> str:
    """A projections database with the tables, and the small run's rows unless rows=False."""
    url = f"sqlite:///{path}"
    database = Database.open(url)
    schema.create(database, 60)
    if rows:
        text = "\n".join(
            line for line in FIXTURE.read_text().splitlines() if not line.startswith("--")
        )
        for statement in filter(str.strip, text.split(";")):
            database.execute(statement)
    database.close()
    return url


def report_of(path: Path, top: int = 10) -> Report:
    database = Database.open(build_database(path))
    try:
        return read_report(database, top=top)
    finally:
        database.close()


def test_totals_are_the_sums_of_run_metrics_and_affected_workspaces_are_counted_once(
    tmp_path: Path,
) -> None:
    report = report_of(tmp_path / "p.sqlite3")

    assert report.totals == Totals(
        intervals=3,
        signals_processed=23,
        signals_rejected=3,
        decisions_made=9,
        decisions_deferred=1,
        decisions_suppressed=3,
        actions_started=9,
        actions_succeeded=4,
        actions_failed=4,
        actions_dead_lettered=2,
        errors=1,
        # run_metrics says 3 + 2 + 3 = 8, but ws-a and ws-b were affected twice.
        workspaces_affected=5,
    )
    assert (report.workspaces, report.open_commands, report.parked_commands) == (5, 2, 1)
    assert report.source == str(tmp_path / "p.sqlite3")
    assert report.positions == (
        Position("autopilot.ledger", 0, 120),
        Position("autopilot.ledger", 1, 85),
    )


def test_outcome_mix_per_action_lists_statuses_in_lifecycle_order(tmp_path: Path) -> None:
    report = report_of(tmp_path / "p.sqlite3")

    assert report.outcomes == (
        Outcomes("issue_credit", (("awaiting_approval", 1),)),
        Outcomes("retry_webhook", (("succeeded", 1), ("dead_lettered", 2))),
        Outcomes("run_provisioning", (("succeeded", 2), ("running", 1))),
        Outcomes("send_followup", (("succeeded", 1), ("skipped", 1))),
    )
    assert [o.total for o in report.outcomes] == [1, 3, 3, 2]


def test_top_workspaces_are_ordered_by_commands_then_id(tmp_path: Path) -> None:
    report = report_of(tmp_path / "p.sqlite3", top=3)

    assert report.top_workspaces == (
        WorkspaceCommands("ws-a", commands=3, succeeded=2, dead_lettered=1, in_flight=0),
        WorkspaceCommands("ws-b", commands=2, succeeded=1, dead_lettered=0, in_flight=0),
        WorkspaceCommands("ws-c", commands=2, succeeded=0, dead_lettered=1, in_flight=1),
    )


def test_series_over_time_include_the_quiet_interval(tmp_path: Path) -> None:
    report = report_of(tmp_path / "p.sqlite3")

    assert report.timeline.starts == (
        "2026-11-21T10:00:00Z",
        "2026-11-21T10:01:00Z",
        "2026-11-21T10:02:00Z",
        "2026-11-21T10:03:00Z",
    )
    assert report.decisions == (
        Series("critical", (1, 1, 0, 1)),
        Series("high", (2, 0, 0, 0)),
        Series("medium", (1, 0, 0, 1)),
        Series("low", (0, 0, 0, 2)),
    )
    assert report.actions == (
        Series("critical", (0, 2, 0, 1)),
        Series("high", (1, 1, 0, 0)),
        Series("medium", (0, 0, 0, 0)),
        Series("low", (0, 0, 0, 2)),
    )
    # Workspaces whose health no decision saw (NULL) are not counted.
    assert report.health == (
        Series("healthy", (1, 0, 0, 2)),
        Series("degraded", (1, 2, 0, 0)),
        Series("critical", (1, 0, 0, 1)),
    )


def test_circuits_and_recent_dead_letters(tmp_path: Path) -> None:
    report = report_of(tmp_path / "p.sqlite3")

    assert report.circuits == (
        Circuit("worker-1", "control_api", "open", 5, "2026-11-21T10:01:30Z"),
        Circuit("worker-1", "webhook", "closed", 0, "2026-11-21T10:00:00Z"),
        Circuit("worker-2", "control_api", "half_open", 3, "2026-11-21T10:03:00Z"),
    )
    # Newest first; the row carries what an operator needs to decide on a replay.
    assert [(d.command_id, d.finished_at, d.error) for d in report.dead_lettered] == [
        ("c7", "2026-11-21T10:03:10Z", "timeout"),
        ("c3", "2026-11-21T10:01:30Z", "503 from <provider>"),
    ]
    assert report.dead_lettered[1] == DeadLetteredCommand(
        command_id="c3",
        workspace_id="ws-a",
        action="retry_webhook",
        priority="critical",
        rule_id="rule-hook",
        attempts=5,
        finished_at="2026-11-21T10:01:30Z",
        error_class="ProviderError",
        error="503 from <provider>",
    )


def test_many_intervals_are_grouped_into_at_most_max_buckets() -> None:
    # Given 151 one-minute intervals (10:00 to 12:30), one decision and two healthy
    # workspaces in each
    starts = [f"2026-11-21T{10 + m // 60:02d}:{m % 60:02d}:00Z" for m in range(151)]

    # When they are bucketed into at most 60 bars
    timeline = timeline_of(starts, 60, 60)
    [decisions] = bucketed(timeline, [(s, "high", 1) for s in starts], ["high"])
    [health] = bucketed(timeline, [(s, "healthy", 2) for s in starts], ["healthy"], mean=True)

    # Then each bar spans 3 intervals, the last one only the 151st, and nothing is lost
    assert (timeline.intervals_per_bucket, len(timeline.starts)) == (3, 51)
    assert timeline.starts[1] == "2026-11-21T10:03:00Z"
    assert decisions.values == (3,) * 50 + (1,)
    assert sum(decisions.values) == 151
    # A snapshot per interval averages, the short last bucket included.
    assert health.values == (2.0,) * 51


def test_terminal_report_shows_the_key_figures_and_ids_verbatim(tmp_path: Path) -> None:
    console = Console(record=True, width=160)

    write_terminal_report(report_of(tmp_path / "p.sqlite3"), console)

    text = console.export_text()
    assert re.search(r"signals processed\s+│\s+23 │", text)
    assert re.search(r"workspaces affected\s+│\s+5 │", text)
    assert re.search(r"retry_webhook\s+│\s+3 │\s+1 │\s+0 │\s+2 │\s+0 │\s+0 │", text)
    assert re.search(r"ws-a\s+│\s+3 │\s+2 │\s+1 │\s+0 │", text)
    assert re.search(r"worker-1\s+│ control_api\s+│ open\s+│\s+5 │", text)
    assert "autopilot.ledger 0@120 1@85 (205 records read)" in text
    # Ids are data, never rich markup.
    assert "ws-[bold]z" in text
    assert "ws-<b>" in text
    assert "ProviderError: 503 from <provider>" in text


def test_html_has_one_chart_of_each_kind_no_url_and_escaped_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = build_database(tmp_path / "p.sqlite3")
    out = tmp_path / "report.html"

    assert run_report(url, str(out)) == 0

    assert f"wrote report to {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert re.findall(r'<svg data-chart="([a-z]+)"', page) == CHARTS
    for name in CHARTS:
        svg = re.search(rf'<svg data-chart="{name}".*?</svg>', page)
        assert svg is not None
        assert 'role="img"' in svg.group() and "<title>" in svg.group()
        assert "<rect" in svg.group() and "no data" not in svg.group()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page
    assert "ws-<b>" not in page and "ws-&lt;b&gt;" in page
    assert "&lt;provider&gt;" in page
    assert f"Generated from {tmp_path / 'p.sqlite3'}" in page
    assert "autopilot.ledger 0@120 1@85 (205 records read)" in page
    assert '<td>signals processed</td><td class="num">23</td>' in page


def test_html_names_a_postgresql_database_without_its_password(tmp_path: Path) -> None:
    report = report_of(tmp_path / "p.sqlite3")
    # What Database.where gives for postgresql://autopilot:s3cret@db.internal/projections
    shown = replace(report, source="postgresql://autopilot:***@db")

    page = html_report(shown)

    assert "Generated from postgresql://autopilot:***@db." in page
    assert "s3cret" not in page


def test_empty_database_renders_every_chart_as_no_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = build_database(tmp_path / "p.sqlite3", rows=False)
    out = tmp_path / "report.html"

    assert run_report(url, str(out)) == 0

    printed = capsys.readouterr().out
    assert "Ledger position: nothing projected yet" in printed
    assert "Outcomes per action: none" in printed
    page = out.read_text(encoding="utf-8")
    assert re.findall(r'<svg data-chart="([a-z]+)"', page) == CHARTS
    assert page.count(">no data</text>") == 4


def test_charts_draw_one_bucket_and_many_buckets() -> None:
    one = charts.time_chart("t", "One", ["2026-11-21T10:00:00Z"], [("d", [("high", [2])])])
    many_starts = [f"2026-11-21T{m // 60:02d}:{m % 60:02d}:00Z" for m in range(600)]
    many = charts.time_chart("t", "Many", many_starts, [("d", [("low", [1] * 600)])])

    assert one.count("<rect") == 2  # the legend's swatch and the bar
    assert many.count("<rect") == 601
    assert "no data" not in one + many
    assert charts.time_chart("t", "Empty", [], []) == charts.no_data("t", "Empty")
    assert ">no data</text>" in charts.outcome_chart("o", "Empty", [])
    assert ">no data</text>" in charts.ranked_chart("w", "Empty", [], "commands")


def test_chart_text_is_escaped() -> None:
    svg = charts.ranked_chart("w", 'Top "<workspaces>"', [("ws-<b>&", 3)], "commands")

    assert "<b>" not in svg and "ws-&lt;b&gt;&amp;" in svg
    assert 'aria-label="Top &quot;&lt;workspaces&gt;&quot;"' in svg


def test_a_missing_database_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "projections.sqlite3"

    with pytest.raises(AutopilotError, match=r"autopilot replay.*start a worker"):
        run_report(f"sqlite:///{path}")

    assert not path.exists() and not path.parent.exists()


def test_a_database_without_the_read_models_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE unrelated (x INTEGER)")

    with pytest.raises(AutopilotError, match=r"no read models.*`autopilot replay`.*worker"):
        run_report(f"sqlite:///{path}")


def test_top_must_be_a_positive_number(tmp_path: Path) -> None:
    url = build_database(tmp_path / "p.sqlite3")

    result = CliRunner().invoke(report_command, ["--db", url, "--top", "0"])

    assert result.exit_code == 2
    assert "'--top': 0 is not in the range x>=1" in result.output
