"""`autopilot parked`: workspaces parked by a dead letter, and ending their parking.

- `autopilot parked list [--db URL] [--json]`: the parked workspaces, parked longest first,
  from the projections' read model (`parked_workspaces`): since when, why, how many commands
  wait behind the parking.
- `autopilot parked release WORKSPACE [--drop] [--by NAME] [--reason TEXT]`: a release on the
  `approvals` topic, keyed by the workspace, so it reaches the executor holding its commands.
  That executor records `workspace.released` and runs them in the order they came, or, with
  `--drop`, ends each with `action.skipped` ("dropped by operator"). A release for a workspace
  that is not parked changes nothing (the worker logs it).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime

import click
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from app.report_cli import read_projections
from app.settings import Settings, load_settings
from core.codec import describe
from projections.parked import ParkedWorkspace, parked_workspaces
from topics.approvals import ParkingRelease
from topics.catalog import APPROVALS
from topics.errors import AutopilotError, ConfigurationError
from topics.signals import is_workspace_id

SEND_TIMEOUT_SECONDS = 30.0


@click.group("parked")
def parked_group() -> None:
    """Workspaces parked by a dead letter: list them, release or drop what waits."""


@parked_group.command("list")
@click.option("--db", help="database URL (default: the configured projections database)")
@click.option("--json", "as_json", is_flag=True, help="print the list as JSON")
def list_command(db: str | None, as_json: bool) -> None:
    """The parked workspaces, parked longest first (from the projections)."""
    url = db or load_settings().projections_database()
    parked = read_projections(url, parked_workspaces)
    if as_json:
        document = {"parked": [p.as_json() for p in parked]}
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    click.echo(render(parked))


@parked_group.command("release")
@click.argument("workspace")
@click.option("--drop", is_flag=True, help="end each held command as skipped instead of running it")
@click.option("--by", default="cli", show_default=True, help="who releases, for the ledger")
@click.option("--reason", help="why, for the ledger (at most 256 characters)")
def release_command(workspace: str, drop: bool, by: str, reason: str | None) -> None:
    """Release a parked workspace: its held commands run in the order they came (--drop: each
    ends as skipped)."""
    if not is_workspace_id(workspace):
        raise click.BadParameter(f"not a workspace id: {workspace!r}", param_hint="WORKSPACE")
    try:
        release = ParkingRelease(
            request_id=f"req-{uuid.uuid4().hex}",
            workspace_id=workspace,
            drop=drop,
            by=by,
            reason=reason,
            requested_at=datetime.now(UTC),
        )
    except ValidationError as exc:
        raise click.BadParameter(describe(exc)) from None
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError(
            f"set KAFKA_BOOTSTRAP_SERVERS to the broker that holds {settings.topic(APPROVALS)} "
            "(and AUTOPILOT_TOPIC_PREFIX to its deployment's topic prefix)"
        )
    asyncio.run(publish(settings, settings.kafka_bootstrap_servers, release))
    what = "drop" if drop else "release"
    click.echo(
        f"{what} of {workspace} sent (request {release.request_id}); the ledger shows "
        "workspace.released once its executor has it"
    )


def render(parked: list[ParkedWorkspace]) -> str:
    """The parked workspaces as an aligned table (or a line saying there are none)."""
    if not parked:
        return "no workspace is parked"
    rows = [
        ("workspace", "since", "held", "reason"),
        *((p.workspace_id, p.since, str(p.queued), p.reason) for p in parked),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def publish(settings: Settings, bootstrap: str, release: ParkingRelease) -> None:
    """Send the release to the workspace's shard on the approvals topic; wait for the broker."""
    topic = settings.topic(APPROVALS)
    security = settings.kafka_security().client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **security
    )
    try:
        await admin.start()
        # A missing topic is named, not waited for (sending to it would wait for its metadata).
        if topic not in set(await admin.list_topics()):
            raise AutopilotError(
                f"no topic {topic} on the broker at {bootstrap}: run `autopilot topics`, or "
                "check AUTOPILOT_TOPIC_PREFIX"
            )
        await producer.start()
        async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await producer.send_and_wait(
                topic,
                release.model_dump_json().encode(),
                key=release.workspace_id.encode(),
            )
    except (KafkaError, TimeoutError) as exc:
        raise AutopilotError(
            f"cannot publish the release to {bootstrap} ({type(exc).__name__}): check "
            "KAFKA_BOOTSTRAP_SERVERS; sending it again is safe"
        ) from exc
    finally:
        await admin.close()
        await producer.stop()
