"""`autopilot parked` as an operator meets it without a broker: the list from a projections
database (table and JSON), and a release refused before anything is sent when its workspace,
name or broker is wrong."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from app.cli import cli
from tests.unit.projections.test_parking_projection import project


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_the_list_shows_the_parked_workspaces_longest_first(tmp_path: Path) -> None:
    """Given a projections database where ws-kept and ws-again are parked, when listed, then
    the table names each with since, commands held and why, longest parked first, and --json
    gives the same rows."""
    project(tmp_path / "p.sqlite3", 1000).close()
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"

    code, table = run("parked", "list", "--db", url)
    assert code == 0, table
    lines = table.splitlines()
    assert lines[0].split() == ["workspace", "since", "held", "reason"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["ws-kept", "2026-12-07T09:00:00.000000Z", "2"],
        ["ws-again", "2026-12-07T09:00:50.000000Z", "1"],
    ]
    assert lines[1].endswith(
        "run_provisioning dead-lettered (TerminalError), command cmd-ws-kept-dead"
    )

    code, raw = run("parked", "list", "--db", url, "--json")
    assert code == 0, raw
    listed = orjson.loads(raw)["parked"]
    assert [(p["workspace_id"], p["queued"], p["dead_lettered"]) for p in listed] == [
        ("ws-kept", 2, "cmd-ws-kept-dead"),
        ("ws-again", 1, "cmd-ws-again-1"),
    ]


def test_an_empty_list_says_so_and_a_missing_database_is_an_error(tmp_path: Path) -> None:
    """Given a database with no parked workspace, then the list says none is; given none at
    all, exit 2 saying how to build one (and no file is created)."""
    database = project(tmp_path / "p.sqlite3", 1000)
    database.execute("DELETE FROM parked_workspaces")
    database.close()

    assert run("parked", "list", "--db", f"sqlite:///{tmp_path / 'p.sqlite3'}") == (
        0,
        "no workspace is parked\n",
    )
    code, said = run("parked", "list", "--db", f"sqlite:///{tmp_path / 'none.sqlite3'}")
    assert code == 2 and "autopilot replay" in said
    assert not (tmp_path / "none.sqlite3").exists()


def test_a_release_is_refused_before_sending_when_something_is_wrong() -> None:
    """Given a bad workspace id, a bad operator name, or no broker configured, when released,
    then exit 2 naming what to fix."""
    no_broker = {"KAFKA_BOOTSTRAP_SERVERS": ""}

    code, said = run("parked", "release", "ws bad", env=no_broker)
    assert code == 2 and "not a workspace id" in said
    code, said = run("parked", "release", "ws-a", "--by", "not a name", env=no_broker)
    assert code == 2 and "by" in said
    code, said = run("parked", "release", "ws-a", "--drop", env=no_broker)
    assert code == 2 and "KAFKA_BOOTSTRAP_SERVERS" in said
