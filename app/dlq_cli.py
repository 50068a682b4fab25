"""`autopilot dlq replay`: dead-lettered commands sent again, under ids that make it idempotent.

The selection and the re-issue are pure (core/dead_letters.py); this shell reads
commands.dlq to its end offsets as of the start, publishes the commands, each carrying its
action.reissued entry in a header (the executor owning the workspace writes it to the ledger, the
only writer of that workspace's chain, before the command runs), and reports.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from app.settings import Settings, load_settings
from core.dead_letters import (
    DeadLetter,
    Reissue,
    Selection,
    Unreplayable,
    first_copies,
    parse_record,
    parse_timestamp,
    reissue,
    select,
)
from projections.ledger_reader import read_partitions_to_end
from topics.catalog import COMMANDS_DLQ, lane_topic
from topics.commands import Action
from topics.errors import AutopilotError, ConfigurationError
from topics.headers import REISSUE
from topics.kafka_security import KafkaSecurity
from topics.signals import is_workspace_id

READ_TIMEOUT_SECONDS = 600.0
T = TypeVar("T")
_BY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}")


@dataclass(frozen=True, slots=True)
class DlqContent:
    """Everything read from commands.dlq: the dead commands (first copies) and the rest."""

    records: int
    dead_letters: list[DeadLetter]
    copies: int
    unreplayable: list[Unreplayable]


def _workspace(value: str) -> str:
    if not is_workspace_id(value):
        raise ValueError(f"not a workspace id: {value!r}")
    return value


def _action(value: str) -> Action:
    try:
        return Action(value)
    except ValueError:
        known = ", ".join(a.value for a in Action)
        raise ValueError(f"unknown action {value!r}; known actions: {known}") from None


def _timestamp(value: str) -> datetime:
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValueError(
            f"not an ISO-8601 timestamp: {value!r} (e.g. 2026-11-21T20:30:00Z)"
        ) from None


def _by(value: str) -> str:
    if not _BY.fullmatch(value):
        raise ValueError(
            f"expected a name of letters, digits and _.@:- (at most 64), got {value!r}"
        )
    return value


@click.group("dlq")
def dlq_group() -> None:
    """Dead-lettered commands."""


def _checked(check: Callable[[str], T]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback applying `check` to a value or to each of a repeated option's values."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            if isinstance(value, tuple):
                return tuple(check(v) for v in value)
            return None if value is None else check(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


@dlq_group.command("replay")
@click.option("--workspace", multiple=True, callback=_checked(_workspace), help="a workspace id")
@click.option(
    "--action",
    multiple=True,
    callback=_checked(_action),
    help=f"one of: {', '.join(a.value for a in Action)}",
)
@click.option(
    "--error-class",
    multiple=True,
    help="the error's class name as dead-lettered (e.g. TerminalError)",
)
@click.option(
    "--since",
    callback=_checked(_timestamp),
    help="dead-lettered at or after (ISO-8601; naive is UTC)",
)
@click.option(
    "--until", callback=_checked(_timestamp), help="dead-lettered before (ISO-8601; naive is UTC)"
)
@click.option("--list", "list_only", is_flag=True, help="show what would be re-issued only")
@click.option(
    "--by",
    default="cli",
    show_default=True,
    callback=_checked(_by),
    help="who re-issues, for the ledger",
)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def replay_command(
    workspace: tuple[str, ...],
    action: tuple[Action, ...],
    error_class: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    list_only: bool,
    by: str,
    as_json: bool,
) -> None:
    """Send dead-lettered commands again under new ids derived from their place on
    commands.dlq, so a second run re-issues the same ids. Filters AND together; a repeated
    option matches any of its values."""
    if since and until and since >= until:
        raise click.BadParameter("--since must be before --until", param_hint="--since")
    selection = Selection(
        workspaces=frozenset(workspace),
        actions=frozenset(action),
        error_classes=frozenset(error_class),
        since=since,
        until=until,
    )
    run_dlq_replay(selection, by=by, list_only=list_only, as_json=as_json)


def run_dlq_replay(selection: Selection, *, by: str, list_only: bool, as_json: bool) -> int:
    """Re-issue the selected dead-lettered commands (or only list them); 0 unless it fails."""
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError(
            f"set KAFKA_BOOTSTRAP_SERVERS to the broker that holds {settings.topic(COMMANDS_DLQ)} "
            "(and AUTOPILOT_TOPIC_PREFIX to its deployment's topic prefix)"
        )
    content, reissues = asyncio.run(
        _replay(
            settings,
            settings.kafka_bootstrap_servers,
            selection,
            by=by,
            publish=not list_only,
        )
    )
    if as_json:
        report = _as_json(content, reissues, listed=list_only)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
    else:
        print(_render(content, reissues, listed=list_only))
    return 0


async def _replay(
    settings: Settings, bootstrap: str, selection: Selection, *, by: str, publish: bool
) -> tuple[DlqContent, list[Reissue]]:
    dlq = settings.topic(COMMANDS_DLQ)
    security = settings.kafka_security()
    partitions, existing = await _partitions_of(bootstrap, dlq, security)
    content = await _read_to_end(
        bootstrap, dlq, partitions, timeout=READ_TIMEOUT_SECONDS, security=security
    )
    now = datetime.now(UTC)
    selected = sorted(
        select(selection, content.dead_letters),
        key=lambda dead: (dead.dead_lettered_at, dead.partition, dead.offset),
    )
    reissues = [reissue(dead, now, by) for dead in selected]
    if reissues and publish:
        needed = {settings.topic(lane_topic(r.command.priority.value)) for r in reissues}
        missing = sorted(needed - existing)
        if missing:
            raise AutopilotError(
                f"no topic {', '.join(missing)} on the broker at {bootstrap}: "
                "run `autopilot topics`, or check AUTOPILOT_TOPIC_PREFIX"
            )
        await _publish(settings, bootstrap, reissues)
    return content, reissues


async def _partitions_of(
    bootstrap: str, topic: str, security: KafkaSecurity
) -> tuple[list[int], set[str]]:
    """The dlq topic's partitions and every topic on the broker; a clear error when missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.client_options())
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        # Only a listed topic is described: describing a missing one can auto-create it.
        if topic not in existing:
            raise AutopilotError(
                f"no dead-letter topic {topic} on the broker at {bootstrap}: "
                "check KAFKA_BOOTSTRAP_SERVERS and AUTOPILOT_TOPIC_PREFIX"
            )
        [described] = await admin.describe_topics([topic])
    except KafkaError as exc:
        raise AutopilotError(
            f"cannot read {topic} from {bootstrap}: check KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    finally:
        await admin.close()
    return sorted(p["partition"] for p in described["partitions"]), existing


async def _read_to_end(
    bootstrap: str, topic: str, partitions: list[int], *, timeout: float, security: KafkaSecurity
) -> DlqContent:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **security.client_options(),
    )
    try:
        await consumer.start()
        read = await read_partitions_to_end(
            consumer, [TopicPartition(topic, p) for p in partitions], timeout=timeout
        )
    except TimeoutError as exc:
        raise AutopilotError(
            f"{topic} not read to its end after {timeout:.0f} s: check the broker at {bootstrap}"
        ) from exc
    except KafkaError as exc:
        raise AutopilotError(
            f"cannot read {topic} from {bootstrap}: check KAFKA_BOOTSTRAP_SERVERS"
        ) from exc
    finally:
        await consumer.stop()
    parsed = [
        parse_record(tp.partition, r.offset, r.timestamp, r.value, list(r.headers))
        for tp in sorted(read, key=lambda tp: tp.partition)
        for r in read[tp]
    ]
    dead = [record for record in parsed if isinstance(record, DeadLetter)]
    kept = first_copies(dead)
    return DlqContent(
        records=len(parsed),
        dead_letters=kept,
        copies=len(dead) - len(kept),
        unreplayable=[record for record in parsed if isinstance(record, Unreplayable)],
    )


async def _publish(settings: Settings, bootstrap: str, reissues: list[Reissue]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        **settings.kafka_security().client_options(),
    )
    try:
        await producer.start()
        # Each command carries its action.reissued entry: the executor owning the workspace
        # appends it to the workspace's ledger chain before it runs the command.
        await asyncio.gather(
            *[
                await producer.send(
                    settings.topic(lane_topic(r.command.priority.value)),
                    r.command.model_dump_json().encode(),
                    key=r.command.workspace_id.encode(),
                    headers=[(REISSUE, r.entry.model_dump_json().encode())],
                )
                for r in reissues
            ]
        )
        await producer.flush()
    except KafkaError as exc:
        raise AutopilotError(
            f"cannot publish the re-issued commands to {bootstrap} ({type(exc).__name__}): "
            "check KAFKA_BOOTSTRAP_SERVERS and AUTOPILOT_TOPIC_PREFIX; running the replay again "
            "is safe, it re-issues the same command ids"
        ) from exc
    finally:
        await producer.stop()


def _render(content: DlqContent, reissues: list[Reissue], *, listed: bool) -> str:
    lines: list[str] = []
    if reissues:
        rows = [
            ("workspace", "action", "command → re-issued as", "error class", "dead-lettered at"),
            *(
                (
                    r.command.workspace_id,
                    r.command.action.value,
                    f"{r.dead_letter.command.command_id} → {r.command.command_id}",
                    r.dead_letter.error_class or "-",
                    r.dead_letter.dead_lettered_at.isoformat(),
                )
                for r in reissues
            ),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines += [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    else:
        lines.append("no dead-lettered command matched")
    if content.unreplayable:
        lines += ["", "not replayable (no valid command):"]
        lines += [
            f"  partition {u.partition} offset {u.offset}: {u.reason}" for u in content.unreplayable
        ]
    verb = "would re-issue" if listed else "re-issued"
    notes = [f"{len(content.unreplayable)} not replayable"]
    if content.copies:
        copies = "copy" if content.copies == 1 else "copies"
        notes.append(f"{content.copies} {copies} of an earlier dead letter skipped")
    summary = f"{verb} {len(reissues)} of {content.records} dead letters ({', '.join(notes)})"
    lines += ["", summary + ("; nothing published (--list)" if listed else "")]
    return "\n".join(lines)


def _as_json(content: DlqContent, reissues: list[Reissue], *, listed: bool) -> dict[str, object]:
    return {
        "published": bool(reissues) and not listed,
        "dead_letters": content.records,
        "copies": content.copies,
        "reissued": [
            {
                "workspace_id": r.command.workspace_id,
                "action": r.command.action.value,
                "priority": r.command.priority.value,
                "command_id": r.dead_letter.command.command_id,
                "reissued_as": r.command.command_id,
                "error_class": r.dead_letter.error_class,
                "reason": r.dead_letter.reason,
                "dead_lettered_at": r.dead_letter.dead_lettered_at.isoformat(),
                "dead_letter": r.entry.payload.dead_letter.model_dump(),
            }
            for r in reissues
        ],
        "not_replayable": [
            {"partition": u.partition, "offset": u.offset, "reason": u.reason}
            for u in content.unreplayable
        ],
    }
