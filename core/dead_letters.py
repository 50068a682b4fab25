"""Dead-lettered commands: reading commands.dlq records, selecting some, re-issuing them.

Pure: the Kafka shell (app/dlq_cli.py) hands in each record's partition, offset, timestamp,
value and headers, and the time to record. A re-issued command's id is derived from the dead
letter's place on the topic, so re-issuing the same dead letter again gives the same command
id, which the executor (de-duplicating by command id) carries out once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from core.codec import describe
from core.ledger_entries import reissued_entry
from topics.commands import Action, Command
from topics.headers import ATTEMPTS, DEAD_LETTERED_AT, ERROR_CLASS, REASON, VALUE_BYTES, VALUE_CUT
from topics.ids import stable_id
from topics.ledger import ActionReissued, DeadLetterPlace

# The reason is redacted where it is written; it is shown shortened all the same.
MAX_REASON_CHARS = 200


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered command at its place on commands.dlq, with why and when."""

    partition: int
    offset: int
    command: Command
    error_class: str | None
    reason: str
    dead_lettered_at: datetime
    attempts: int | None


@dataclass(frozen=True, slots=True)
class Unreplayable:
    """A commands.dlq record that holds no valid command (parked undecodable input)."""

    partition: int
    offset: int
    reason: str


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to re-issue: the filters AND together, each set's members OR.

    An empty set does not filter; `since` is inclusive and `until` exclusive.
    """

    workspaces: frozenset[str] = frozenset()
    actions: frozenset[Action] = frozenset()
    error_classes: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reissue:
    """One dead letter sent again: the new command and its action.reissued ledger entry."""

    dead_letter: DeadLetter
    command: Command
    entry: ActionReissued


def parse_record(
    partition: int,
    offset: int,
    timestamp_ms: int,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
) -> DeadLetter | Unreplayable:
    """A commands.dlq record as read: a dead letter when its value is a valid command."""
    named = _headers(headers)
    if value is None:
        return Unreplayable(partition, offset, shorten(named.get(REASON) or "no value"))
    if named.get(VALUE_CUT):
        # Only the first bytes were kept (core/rejections.py): nothing to carry out.
        cut = f"value cut from {named.get(VALUE_BYTES, '?')} bytes"
        return Unreplayable(partition, offset, shorten(f"{named.get(REASON, '')} ({cut})"))
    try:
        command = Command.model_validate_json(value)
    except ValidationError as exc:
        return Unreplayable(
            partition, offset, shorten(named.get(REASON) or f"not a command: {describe(exc)}")
        )
    return DeadLetter(
        partition=partition,
        offset=offset,
        command=command,
        error_class=named.get(ERROR_CLASS) or None,
        reason=shorten(named.get(REASON, "")),
        dead_lettered_at=_aware(named.get(DEAD_LETTERED_AT))
        or datetime.fromtimestamp(timestamp_ms / 1000, UTC),
        attempts=_integer(named.get(ATTEMPTS)),
    )


def first_copies(dead_letters: Sequence[DeadLetter]) -> list[DeadLetter]:
    """Each dead command once, at its first place on the topic (by partition, then offset).

    The executor dead-letters at-least-once: a copy written again after a crash holds the same
    command id (a re-issued command has a new one), and must not be carried out twice.
    """
    seen: set[str] = set()
    kept: list[DeadLetter] = []
    for dead in sorted(dead_letters, key=lambda d: (d.partition, d.offset)):
        if dead.command.command_id not in seen:
            seen.add(dead.command.command_id)
            kept.append(dead)
    return kept


def matches(selection: Selection, dead: DeadLetter) -> bool:
    """Whether a dead letter passes every filter of the selection."""
    command = dead.command
    return (
        (not selection.workspaces or command.workspace_id in selection.workspaces)
        and (not selection.actions or command.action in selection.actions)
        and (not selection.error_classes or dead.error_class in selection.error_classes)
        and (selection.since is None or dead.dead_lettered_at >= selection.since)
        and (selection.until is None or dead.dead_lettered_at < selection.until)
    )


def select(selection: Selection, dead_letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """The dead letters the selection keeps, in their order."""
    return [dead for dead in dead_letters if matches(selection, dead)]


def reissued_command(dead: DeadLetter) -> Command:
    """The command sent again: a new id from the dead letter's place, a fresh first attempt."""
    old = dead.command
    return Command.model_validate(
        {
            **old.model_dump(),
            "command_id": stable_id("cmd", "reissue", old.command_id, dead.partition, dead.offset),
            "attempt": 1,
            # The original schedule and deadline have passed; the operator wants it done now.
            "not_before": None,
            "deadline": None,
        }
    )


def reissue(dead: DeadLetter, recorded_at: datetime, by: str) -> Reissue:
    """The new command and the action.reissued entry that records who sent it and from where."""
    old = dead.command
    new = reissued_command(dead)
    place = DeadLetterPlace(partition=dead.partition, offset=dead.offset)
    entry = reissued_entry(new, old, place, dead.error_class, recorded_at, by)
    return Reissue(dead, new, entry)


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 timestamp, a naive one taken as UTC; ValueError when it is not one."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def shorten(text: str) -> str:
    """At most MAX_REASON_CHARS characters, marked when cut."""
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _headers(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    named: dict[str, str] = {}
    for name, value in headers:
        # The first of a repeated header wins, as the executor writes each once.
        named.setdefault(name, value.decode(errors="replace") if value is not None else "")
    return named


def _aware(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_timestamp(text)
    except ValueError:
        return None  # the record's own timestamp stands in


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
