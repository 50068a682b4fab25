"""The `autopilot` command: the worker (Faust's CLI) plus Autopilot's own commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from app.broker import provide_bootstrap
from app.errors import AutopilotError
from app.kafka_admin import ensure_topics
from app.settings import Settings, load_settings
from app.worker import build_worker
from topics import schema_files

logger = logging.getLogger(__name__)

USAGE = """usage: autopilot COMMAND

  worker        run a worker (aggregate, decide, execute); Faust's worker options apply
  topics        create Autopilot's topics on the broker and exit
  policy replay derive the ledger's recorded decisions again with a policy and compare
                [--policy FILE: what-if with another rule set] [--ledger FILE: a JSON-lines
                export instead of the broker's ledger] [--verbose] [--json]; exit 1 when a
                decision differs under the policy version that recorded it
  dlq replay    re-issue dead-lettered commands under ids derived from their dead letters, so
                a second run sends the same ids [--workspace W] [--action A] [--error-class C]
                (each repeatable) [--since T] [--until T] [--list: publish nothing]
                [--by NAME] [--json]
  replay        rebuild the projections (read models) from offset 0 of the ledger into a fresh
                database, with a progress bar [--db URL] [--until TIMESTAMP|OFFSET|P:O,...:
                the state as of that point] [--replace: empty the database first]
                [--jobs N: processes sharing the partitions, default one per core]
  projector     follow the ledger and keep the projections up to date (the worker does this
                too unless AUTOPILOT_PROJECTOR_ENABLED=false) [--db URL]
  report        the projections' key tables in the terminal [--db URL] [--top N]
                [--html FILE: a self-contained HTML report with charts]
  ledger verify check every workspace's hash chain on the ledger [--json]; exit 1 if broken
  schemas       write the signals' JSON Schema files (topics/schemas/); no broker needed
                [--check: exit 1 if they are out of date] [--dir DIR: another directory]
  kafka ...     the local Maven-assembled broker (assemble | run)

The broker is KAFKA_BOOTSTRAP_SERVERS if set, else a testcontainers Kafka when a Docker engine
answers, else a local broker started for the lifetime of the command.
"""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `autopilot` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return
    try:
        if args[0] == "kafka":
            from app.local_kafka import main as kafka_main

            kafka_main(args[1:])
            return
        if args[0] == "schemas":
            raise SystemExit(run_schemas(args[1:]))
        if args[:2] == ["policy", "replay"]:
            from app.policy_cli import run_policy_replay

            raise SystemExit(run_policy_replay(args[2:]))
        if args[0] == "replay":
            from app.projection_cli import run_replay

            raise SystemExit(run_replay(args[1:]))
        if args[0] == "projector":
            from app.projection_cli import run_projector

            raise SystemExit(run_projector(args[1:]))
        if args[0] == "report":
            from app.report_cli import run_report

            raise SystemExit(run_report(args[1:]))
        if args[:2] == ["ledger", "verify"]:
            from app.ledger_cli import run_ledger_verify

            raise SystemExit(run_ledger_verify(args[2:]))
        if args[:2] == ["dlq", "replay"]:
            from app.dlq_cli import run_dlq_replay

            raise SystemExit(run_dlq_replay(args[2:]))
        settings = load_settings()
        if args[0] == "topics":
            with provide_bootstrap(settings.kafka_bootstrap_servers, settings.cache_dir) as boot:
                asyncio.run(ensure_topics(settings, boot))
            return
        if args[0] == "worker":
            run_worker(settings, args)
            return
    except AutopilotError as exc:
        print(f"autopilot: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    print(USAGE, file=sys.stderr)
    raise SystemExit(2)


def run_worker(settings: Settings, args: list[str]) -> None:
    """Run the Faust worker until it is stopped; stops a broker it had to start."""
    if not any(arg in {"-l", "--loglevel"} for arg in args):
        args = [*args, "--loglevel", settings.log_level]
    with provide_bootstrap(settings.kafka_bootstrap_servers, settings.cache_dir) as bootstrap:
        asyncio.run(ensure_topics(settings, bootstrap))
        autopilot = build_worker(settings, bootstrap)
        sys.argv = [sys.argv[0], *args]
        autopilot.app.main()


def run_schemas(args: list[str]) -> int:
    """Write the signals' JSON Schema files, or with --check say which are out of date (1)."""
    parser = argparse.ArgumentParser(
        prog="autopilot schemas",
        description="Generate the JSON Schema files of the signals from the models.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    parser.add_argument(
        "--dir",
        type=Path,
        default=schema_files.SCHEMA_DIR,
        help="the directory of the files (default: topics/schemas/ of the installed code)",
    )
    options = parser.parse_args(args)
    directory: Path = options.dir
    if options.check:
        drifted = schema_files.check(directory)
        if drifted:
            again = "" if directory == schema_files.SCHEMA_DIR else f" --dir {directory}"
            print(
                f"autopilot: signal schema files out of date in {directory}: "
                f"{', '.join(drifted)}. Run `autopilot schemas{again}` to regenerate them.",
                file=sys.stderr,
            )
            return 1
        print(f"signal schema files up to date in {directory}")
        return 0
    try:
        written = schema_files.write(directory)
    except OSError as exc:
        raise AutopilotError(
            f"cannot write the signal schema files to {directory} ({exc.strerror}); "
            "pass a writable directory with --dir"
        ) from exc
    print(f"wrote {len(written)} signal schema files to {directory}")
    return 0
