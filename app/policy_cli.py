"""`autopilot policy replay`: the recorded decisions derived again, identical or not; and
`autopilot policy whatif`: the signal history run under a new policy (app/policy_whatif.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
import orjson

from app.policy_whatif import what_if
from app.settings import load_settings
from core.dead_letters import parse_timestamp
from core.policy_replay import ReplayReport, render, replay_policy
from core.policy_whatif import Scope
from core.policy_whatif import as_json as whatif_json
from core.policy_whatif import render as render_whatif
from core.rules import load_policy
from projections.ledger_reader import load_ledger_file, read_ledger_to_end
from topics.catalog import LEDGER
from topics.errors import AutopilotError, ConfigurationError
from topics.signals import is_workspace_id

READ_TIMEOUT_SECONDS = 600.0


@click.group("policy")
def policy_group() -> None:
    """Check a policy against the ledger, or preview it over the signal history."""


@policy_group.command("replay")
@click.option(
    "--policy",
    "policy_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="a policy TOML file (default: AUTOPILOT_POLICY_FILE, else the seed policy)",
)
@click.option(
    "--ledger",
    type=click.Path(path_type=Path, dir_okay=False),
    help="a JSON-lines export of the ledger (default: the ledger topic on the broker)",
)
@click.option("--verbose", is_flag=True, help="list identical workspaces too")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def replay_command(
    policy_file: Path | None, ledger: Path | None, verbose: bool, as_json: bool
) -> None:
    """Derive the ledger's recorded decisions again and compare them; exit 1 when a decision
    differs under the policy version that recorded it."""
    raise SystemExit(run_policy_replay(policy_file, ledger, verbose=verbose, as_json=as_json))


def run_policy_replay(
    policy_file: Path | None, ledger: Path | None, *, verbose: bool = False, as_json: bool = False
) -> int:
    """Replay the ledger's decisions; 1 if any differs under the version that recorded it."""
    settings = load_settings()
    policy = load_policy(policy_file or settings.policy_file)
    if ledger is not None:
        try:
            with ledger.open("rb") as lines:
                entries = load_ledger_file(lines)
        except OSError as exc:
            raise AutopilotError(f"cannot read ledger export {ledger} ({exc.strerror})") from exc
    else:
        if not settings.kafka_bootstrap_servers:
            raise ConfigurationError(
                "set KAFKA_BOOTSTRAP_SERVERS to the broker that holds the ledger, "
                "or pass --ledger with a JSON-lines export"
            )
        entries = asyncio.run(
            read_ledger_to_end(
                settings.kafka_bootstrap_servers,
                settings.topic(LEDGER),
                timeout=READ_TIMEOUT_SECONDS,
                security=settings.kafka_security(),
            )
        )
    report = replay_policy(entries, policy)
    if as_json:
        sys.stdout.write(orjson.dumps(_as_json(report), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(render(report, verbose=verbose))
    return 1 if report.diverging else 0


def _as_json(report: ReplayReport) -> dict[str, object]:
    return {
        "policy_version": report.policy_version,
        "recorded_versions": sorted(report.recorded_versions),
        "evaluations": report.evaluations,
        "diverging": report.diverging,
        "changed": report.changed,
        "workspaces": {
            workspace_id: {
                "status": result.status,
                "evaluations": result.evaluations,
                "identical": result.identical,
                "differences": [
                    {
                        "signal_id": d.signal_id,
                        "recorded_version": d.recorded_version,
                        "problem": d.problem,
                        "recorded": list(d.recorded),
                        "derived": list(d.derived),
                    }
                    for d in result.diverging + result.changed
                ],
            }
            for workspace_id, result in sorted(report.workspaces.items())
        },
    }


def _timestamp(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(parse_timestamp(value).timestamp())
    except ValueError:
        raise click.BadParameter(
            f"not an ISO-8601 timestamp: {value!r} (e.g. 2026-11-21T20:30:00Z)"
        ) from None


def _workspace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_workspace_id(value):
        raise click.BadParameter(f"not a workspace id: {value!r}")
    return value


@policy_group.command("whatif")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="the policy TOML file to preview",
)
@click.option(
    "--since",
    callback=_timestamp,
    help="decisions at or after this event time (ISO-8601; naive is UTC)",
)
@click.option(
    "--until", callback=_timestamp, help="decisions before this event time (ISO-8601; naive is UTC)"
)
@click.option("--workspace", callback=_workspace, help="only this workspace's decisions")
@click.option("--json", "as_json", is_flag=True, help="print every difference as JSON")
def whatif_command(
    policy_file: Path, since: int | None, until: int | None, workspace: str | None, as_json: bool
) -> None:
    """Run the signals and control topics from offset 0 through the signal stage under the
    current policy and under --policy, from empty state, and report the decisions that differ
    (new, gone, changed) per rule and workspace; exit 0, it is a preview."""
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    raise SystemExit(
        run_policy_whatif(policy_file, Scope(since, until, workspace), as_json=as_json)
    )


def run_policy_whatif(policy_file: Path, scope: Scope, *, as_json: bool = False) -> int:
    """Preview `policy_file` over the deployment's signal history against the current policy."""
    settings = load_settings()
    current = load_policy(settings.policy_file)
    proposed = load_policy(policy_file)
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError(
            "set KAFKA_BOOTSTRAP_SERVERS to the broker that holds the signals and control topics"
        )
    report = asyncio.run(what_if(settings, current, proposed, scope))
    if as_json:
        sys.stdout.write(orjson.dumps(whatif_json(report), option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(render_whatif(report))
    return 0
