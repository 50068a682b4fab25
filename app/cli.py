"""The `autopilot` command: the worker (Faust's worker, with its options) and Autopilot's own
commands, on click.

Subcommands are imported when they run, so `--help` and `--version` start nothing and answer at
once. Exit codes: 0 ok, 1 a finding (a diverging policy, a broken chain, out-of-date schema
files), 2 a usage or configuration error.
"""

from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import Any

import click

from topics.errors import AutopilotError, ConfigurationError

# name -> (module:attribute, one line of help for the command list)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "dlq": ("app.dlq_cli:dlq_group", "Re-issue dead-lettered commands."),
    "ledger": ("app.ledger_cli:ledger_group", "Verify the ledger's hash chains."),
    "parked": (
        "app.parking_cli:parked_group",
        "Workspaces parked by a dead letter: list, release, drop.",
    ),
    "policy": ("app.policy_cli:policy_group", "Replay the ledger's decisions with a policy."),
    "projector": ("app.projection_cli:projector_command", "Keep the projections up to date."),
    "replay": ("app.projection_cli:replay_command", "Rebuild the projections from the ledger."),
    "report": ("app.report_cli:report_command", "Report on the projections (terminal, HTML)."),
}

NO_BROKER = (
    "set KAFKA_BOOTSTRAP_SERVERS to your Kafka brokers (host:port[,host:port...]); "
    "to try Autopilot on a local broker started for you, run `make demo`"
)


class AutopilotGroup(click.Group):
    """A group whose listed commands load on use, naming the known ones for an unknown one, and
    turning Autopilot's errors into a message and exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, the lazy ones included."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, importing its module if it is a lazy one."""
        if cmd_name in LAZY_COMMANDS:
            module, _, attribute = LAZY_COMMANDS[cmd_name][0].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the short help texts, without importing the lazy commands."""
        rows = [(name, LAZY_COMMANDS[name][1]) for name in LAZY_COMMANDS]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None:
                rows.append((name, command.get_short_help_str(limit=70)))
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """The command named first; an unknown one is a usage error listing the known ones."""
        name = args[0]
        if self.get_command(ctx, name) is None and not name.startswith("-"):
            known = ", ".join(self.list_commands(ctx))
            raise click.UsageError(f"unknown command {name!r}; the commands are: {known}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; an AutopilotError is a message on stderr and exit code 2."""
        try:
            return super().invoke(ctx)
        except AutopilotError as exc:
            click.echo(f"autopilot: {exc}", err=True)
            raise SystemExit(2) from exc


@click.group(cls=AutopilotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(metadata.version("autopilot"), prog_name="autopilot")
def cli() -> None:
    """Autopilot: signals in, deterministic decisions, safe actions, an append-only ledger.

    Every command reads its settings from the environment (AUTOPILOT_*, KAFKA_BOOTSTRAP_SERVERS).
    Exit codes: 0 ok, 1 a finding, 2 a usage or configuration error.
    """


@cli.command(
    "worker",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("faust_options", nargs=-1, type=click.UNPROCESSED)
def worker_command(faust_options: tuple[str, ...]) -> None:
    """Run a worker: fold and decide (the signal stage), execute, project, and the HTTP API.

    Options after `worker` go to Faust's worker (e.g. --web-port 6067, --loglevel info).
    Needs KAFKA_BOOTSTRAP_SERVERS; creates the topics it needs, then runs until SIGTERM.
    """
    import asyncio
    import faulthandler

    from app.settings import load_settings

    # A crash in native code (RocksDB, a C extension) prints every thread's Python stack to the
    # worker's log instead of ending it with no trace.
    faulthandler.enable()
    settings = load_settings()
    bootstrap = _bootstrap(settings.kafka_bootstrap_servers)
    # Faust and the agents load only once there is a broker to run against.
    from app.kafka_admin import ensure_topics
    from app.worker import build_worker

    args = list(faust_options)
    if not any(arg in {"-l", "--loglevel"} for arg in args):
        args += ["--loglevel", settings.log_level]
    asyncio.run(ensure_topics(settings, bootstrap))
    autopilot = build_worker(settings, bootstrap)
    sys.argv = [sys.argv[0], "worker", *args]
    autopilot.app.main()


@cli.command("topics")
def topics_command() -> None:
    """Create Autopilot's topics (and the tables' changelogs) on the broker, then exit."""
    import asyncio

    from app.kafka_admin import ensure_topics
    from app.settings import load_settings

    settings = load_settings()
    asyncio.run(ensure_topics(settings, _bootstrap(settings.kafka_bootstrap_servers)))
    click.echo(f"topics ready on {settings.kafka_bootstrap_servers}")


@cli.command("schemas")
@click.option("--check", is_flag=True, help="exit 1 if a file is out of date")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    help="the directory of the files (default: topics/schemas/ of the installed code)",
)
def schemas_command(check: bool, directory: str | None) -> None:
    """Write the signals' JSON Schema files (topics/schemas/); no broker needed."""
    from pathlib import Path

    from topics import schema_files

    where = schema_files.SCHEMA_DIR if directory is None else Path(directory)
    if check:
        drifted = schema_files.check(where)
        if drifted:
            again = "" if where == schema_files.SCHEMA_DIR else f" --dir {where}"
            click.echo(
                f"autopilot: signal schema files out of date in {where}: "
                f"{', '.join(drifted)}. Run `autopilot schemas{again}` to regenerate them.",
                err=True,
            )
            raise SystemExit(1)
        click.echo(f"signal schema files up to date in {where}")
        return
    try:
        written = schema_files.write(where)
    except OSError as exc:
        raise AutopilotError(
            f"cannot write the signal schema files to {where} ({exc.strerror}); "
            "pass a writable directory with --dir"
        ) from exc
    click.echo(f"wrote {len(written)} signal schema files to {where}")


def _bootstrap(configured: str | None) -> str:
    if not configured:
        raise ConfigurationError(NO_BROKER)
    return configured


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `autopilot` console script."""
    cli.main(args=argv, prog_name="autopilot")
