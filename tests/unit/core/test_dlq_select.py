"""Dead-lettered commands: reading dlq records, selecting them, and the re-issue mapping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.dead_letters import (
    DeadLetter,
    Selection,
    Unreplayable,
    first_copies,
    parse_record,
    parse_timestamp,
    reissue,
    reissued_command,
    select,
)
from topics.commands import Action, Command, Priority
from topics.ids import stable_id
from topics.ledger import LedgerKind

T0 = datetime(2026, 11, 21, 20, 30, tzinfo=UTC)
H = timedelta(hours=1)
T0_MS = int(T0.timestamp() * 1000)
RECORDED_AT = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def command(
    n: str = "1",
    workspace: str = "ws-a",
    action: Action = Action.RETRY_WEBHOOK,
    priority: Priority = Priority.MEDIUM,
) -> Command:
    """A command on its fourth attempt, with a schedule and a deadline that have passed."""
    return Command(
        command_id=f"cmd-{n}",
        decision_id=f"dec-{n}",
        workspace_id=workspace,
        action=action,
        priority=priority,
        rule_id="seed.webhook_failed",
        policy_version="p-1",
        signal_ids=(f"sig-{n}", f"sig-{n}b"),
        correlation_id=f"sig-{n}",
        not_before=T0 - timedelta(minutes=5),
        deadline=T0 + H,
        attempt=4,
        dry_run=True,
    )


def headers(
    error_class: str = "TerminalError", at: str = "2026-11-21T20:30:00+00:00", attempts: str = "4"
) -> list[tuple[str, bytes | None]]:
    """The headers the executor writes on a dead-lettered command."""
    return [
        ("autopilot.reason", b"webhook answered 410"),
        ("autopilot.error-class", error_class.encode()),
        ("autopilot.dead-lettered-at", at.encode()),
        ("autopilot.attempts", attempts.encode()),
        ("autopilot.source.topic", b"commands.medium"),
        ("autopilot.source.partition", b"3"),
        ("autopilot.source.offset", b"17"),
    ]


def dead(
    cmd: Command | None = None,
    partition: int = 2,
    offset: int = 5,
    error_class: str | None = "TerminalError",
    at: datetime = T0,
) -> DeadLetter:
    """A parsed dead letter."""
    return DeadLetter(
        partition=partition,
        offset=offset,
        command=cmd or command(),
        error_class=error_class,
        reason="webhook answered 410",
        dead_lettered_at=at,
        attempts=4,
    )


def test_a_dead_lettered_command_is_read_with_its_headers() -> None:
    """Given a dlq record holding a command and the executor's headers, when it is parsed,
    then it is a dead letter with the command, error class, time and attempts."""
    cmd = command()

    parsed = parse_record(2, 5, T0_MS + 999_000, cmd.model_dump_json().encode(), headers())

    assert parsed == DeadLetter(
        partition=2,
        offset=5,
        command=cmd,
        error_class="TerminalError",
        reason="webhook answered 410",
        dead_lettered_at=T0,
        attempts=4,
    )


def test_the_record_timestamp_stands_in_for_a_missing_or_bad_dead_lettered_at() -> None:
    """Given a dead letter whose dead-lettered-at header is unreadable and attempts not a
    number, when it is parsed, then the record's timestamp is its time and attempts unknown."""
    value = command().model_dump_json().encode()

    parsed = parse_record(0, 1, T0_MS, value, headers(at="yesterday", attempts="four"))
    bare = parse_record(0, 2, T0_MS, value, [])

    assert isinstance(parsed, DeadLetter) and isinstance(bare, DeadLetter)
    assert (parsed.dead_lettered_at, parsed.attempts) == (T0, None)
    assert (bare.dead_lettered_at, bare.error_class, bare.reason) == (T0, None, "")


def test_a_naive_dead_lettered_at_is_utc() -> None:
    """Given a dead-lettered-at header without an offset, then it is read as UTC."""
    value = command().model_dump_json().encode()

    parsed = parse_record(0, 1, 0, value, headers(at="2026-11-21T20:30:00"))

    assert isinstance(parsed, DeadLetter) and parsed.dead_lettered_at == T0


def test_an_undecodable_record_is_not_replayable_and_keeps_its_reason() -> None:
    """Given records parked because they were no command (bytes, a signal, nothing), when
    parsed, then they are not replayable, with the parked reason or a redacted one."""
    parked = [("autopilot.reason", b"undecodable: not UTF-8 JSON")]

    raw = parse_record(1, 9, T0_MS, b"\xff\xfe", parked)
    other = parse_record(1, 10, T0_MS, b'{"id": "sk-live-secret"}', [])
    empty = parse_record(1, 11, T0_MS, None, [])

    assert raw == Unreplayable(1, 9, "undecodable: not UTF-8 JSON")
    assert isinstance(other, Unreplayable) and other.reason.startswith("not a command: invalid:")
    assert "sk-live-secret" not in other.reason
    assert empty == Unreplayable(1, 11, "no value")


def test_a_long_reason_is_cut_to_200_characters() -> None:
    """Given a parked record with a 500-character reason, then 200 characters are kept."""
    parsed = parse_record(0, 0, 0, b"x", [("autopilot.reason", b"r" * 500)])

    assert isinstance(parsed, Unreplayable)
    assert len(parsed.reason) == 200 and parsed.reason.endswith("…")


def test_a_reissued_command_has_a_stable_new_id_a_first_attempt_and_no_schedule() -> None:
    """Given a dead letter at partition 2 offset 5, when it is re-issued, then the new command
    has the id derived from the old id and that place, attempt 1, no not_before or deadline,
    and every other field of the old command."""
    old = command()

    new = reissued_command(dead(old))

    new_id = stable_id("cmd", "reissue", "cmd-1", 2, 5)
    assert new == Command.model_validate(
        {
            **old.model_dump(),
            "command_id": new_id,
            "attempt": 1,
            "not_before": None,
            "deadline": None,
        }
    )
    assert (new.decision_id, new.signal_ids, new.dry_run) == ("dec-1", ("sig-1", "sig-1b"), True)


def test_the_same_dead_letter_always_gives_the_same_id_and_another_place_another() -> None:
    """Given one command dead-lettered at two places, then each place gives its own id, and
    re-issuing one place again gives the same id."""
    old = command()

    first = reissued_command(dead(old, 2, 5)).command_id
    again = reissued_command(dead(old, 2, 5)).command_id
    elsewhere = reissued_command(dead(old, 2, 6)).command_id

    assert first == again != elsewhere


def test_a_reissue_records_an_action_reissued_entry() -> None:
    """Given a dead letter, when it is re-issued by an operator, then the ledger entry names
    the new and old ids, the place, the error class and who re-issued it."""
    old = command()

    result = reissue(dead(old), RECORDED_AT, "alice")

    new_id = result.command.command_id
    entry = result.entry
    assert entry.entry_id == stable_id("reissue", new_id)
    assert (entry.kind, entry.workspace_id, entry.recorded_at) == (
        LedgerKind.ACTION_REISSUED,
        "ws-a",
        RECORDED_AT,
    )
    assert (entry.correlation_id, entry.causation_id, entry.policy_version) == (
        "sig-1",
        "cmd-1",
        "p-1",
    )
    assert entry.payload.model_dump(mode="json") == {
        "command_id": new_id,
        "reissued_from": "cmd-1",
        "action": "retry_webhook",
        "priority": "medium",
        "rule_id": "seed.webhook_failed",
        "error_class": "TerminalError",
        "dead_letter": {"partition": 2, "offset": 5},
        "by": "alice",
    }


WS_A_WEBHOOK = dead(command("1", "ws-a"), 0, 0, "TerminalError", T0)
WS_A_FOLLOWUP = dead(
    command("2", "ws-a", Action.SEND_FOLLOWUP, Priority.LOW), 0, 1, "RetryableError", T0 + H
)
RESTART = command("3", "ws-b", Action.RESTART_INTEGRATION, Priority.HIGH)
WS_B_RESTART = dead(RESTART, 1, 0, "HTTPStatusError", T0 + 2 * H)
WS_C_NO_CLASS = dead(command("4", "ws-c"), 1, 1, None, T0 + 3 * H)
ALL = [WS_A_WEBHOOK, WS_A_FOLLOWUP, WS_B_RESTART, WS_C_NO_CLASS]


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (Selection(), ALL),
        (Selection(workspaces=frozenset({"ws-a"})), [WS_A_WEBHOOK, WS_A_FOLLOWUP]),
        (Selection(workspaces=frozenset({"ws-b", "ws-c"})), [WS_B_RESTART, WS_C_NO_CLASS]),
        (
            Selection(actions=frozenset({Action.RETRY_WEBHOOK})),
            [WS_A_WEBHOOK, WS_C_NO_CLASS],
        ),
        (
            Selection(error_classes=frozenset({"RetryableError", "HTTPStatusError"})),
            [WS_A_FOLLOWUP, WS_B_RESTART],
        ),
        (Selection(error_classes=frozenset({"terminalerror"})), []),
        (Selection(since=T0 + H), [WS_A_FOLLOWUP, WS_B_RESTART, WS_C_NO_CLASS]),
        (Selection(until=T0 + H), [WS_A_WEBHOOK]),
        (
            Selection(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=3)),
            [WS_A_FOLLOWUP, WS_B_RESTART],
        ),
        (
            Selection(
                workspaces=frozenset({"ws-a", "ws-c"}),
                actions=frozenset({Action.RETRY_WEBHOOK}),
                since=T0 + timedelta(minutes=1),
            ),
            [WS_C_NO_CLASS],
        ),
    ],
)
def test_a_selection_keeps_what_every_filter_matches(
    selection: Selection, expected: list[DeadLetter]
) -> None:
    """Given dead letters of several workspaces, actions, classes and times, when a selection
    is applied, then its filters AND together, a filter's values OR, since is inclusive and
    until exclusive, and class names match exactly."""
    assert select(selection, ALL) == expected


def test_a_copy_of_a_dead_letter_is_reissued_once_from_its_first_place() -> None:
    """Given one command dead-lettered twice (an executor crash between writes) and another
    once, when copies are dropped, then each command is kept at its first place."""
    cmd = command("9")
    later = dead(cmd, 1, 40)
    earlier = dead(cmd, 1, 12)
    other = dead(command("8"), 0, 3)

    assert first_copies([later, other, earlier]) == [other, earlier]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T20:30:00+00:00", T0),
        ("2026-11-21T20:30:00Z", T0),
        ("2026-11-21T20:30", T0),
        ("2026-11-21T21:30:00+01:00", T0),
        ("2026-11-21", T0.replace(hour=0, minute=0)),
    ],
)
def test_timestamps_are_iso_8601_and_naive_ones_utc(text: str, expected: datetime) -> None:
    """Given an option's timestamp, then it is parsed as ISO-8601, naive as UTC."""
    assert parse_timestamp(text) == expected


def test_a_timestamp_that_is_not_iso_8601_is_refused() -> None:
    """Given free text, then parsing it raises ValueError."""
    with pytest.raises(ValueError):
        parse_timestamp("last tuesday")
