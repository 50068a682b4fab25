"""`autopilot dlq replay` on the real broker: dead letters written as the executor writes them,
re-issued onto their lanes with an action.reissued entry each, the same ids on a second run."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import Settings
from projections.ledger_reader import seek_to_start
from tests.integration.commands import autopilot_cli
from tests.integration.conftest import WAIT_SECONDS
from topics.catalog import COMMANDS_DLQ, LANES, LEDGER, lane_topic
from topics.commands import Action, Command, Priority
from topics.headers import REISSUE
from topics.ids import stable_id
from topics.ledger import LedgerEntry, LedgerKind, parse_entry
from topics.shards import shard_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parent.parent.parent
T0 = datetime(2026, 11, 21, 20, 30, tzinfo=UTC)
H = timedelta(hours=1)
UNDECODABLE_REASON = "undecodable: not UTF-8 JSON"


@dataclass(frozen=True)
class Written:
    """A dead letter as written: its command (None: undecodable) and its place on the dlq."""

    command: Command | None
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """A record read back: where it is, its key and its value."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes] = field(default_factory=dict)


def command(
    n: str, workspace: str, action: Action, priority: Priority, *, dry_run: bool = False
) -> Command:
    """A command on its last attempt, with a schedule and a deadline that have passed."""
    return Command(
        command_id=f"cmd-{n}",
        decision_id=f"dec-{n}",
        workspace_id=workspace,
        action=action,
        priority=priority,
        rule_id=f"seed.{action.value}",
        policy_version="p-test",
        signal_ids=(f"sig-{n}",),
        correlation_id=f"sig-{n}",
        not_before=T0 - 2 * H,
        deadline=T0 + 24 * H,
        attempt=5,
        dry_run=dry_run,
    )


WEBHOOK_A = command("a1", "ws-a", Action.RETRY_WEBHOOK, Priority.MEDIUM)
FOLLOWUP_A = command("a2", "ws-a", Action.SEND_FOLLOWUP, Priority.LOW)
RESTART_B = command("b1", "ws-b", Action.RESTART_INTEGRATION, Priority.HIGH)
PROVISION_C = command("c1", "ws-c", Action.RUN_PROVISIONING, Priority.CRITICAL, dry_run=True)
# (command, error class, dead-lettered at, dlq partition): ws-b's dead letter is on another
# partition than its shard (3), and the re-issued command must still go to its shard.
DEAD = [
    (WEBHOOK_A, "TerminalError", T0, shard_of("ws-a", 4)),
    (FOLLOWUP_A, "RetryableError", T0 + H, shard_of("ws-a", 4)),
    (RESTART_B, "HTTPStatusError", T0 + 2 * H, 1),
    (PROVISION_C, "NotConfiguredError", T0 + 3 * H, shard_of("ws-c", 4)),
]


def headers(cmd: Command, error_class: str, at: datetime) -> list[tuple[str, bytes]]:
    """The executor's dead-letter headers."""
    return [
        ("autopilot.reason", f"{error_class}: gave up after 5 attempts".encode()),
        ("autopilot.error-class", error_class.encode()),
        ("autopilot.dead-lettered-at", at.isoformat().encode()),
        ("autopilot.attempts", b"5"),
        ("autopilot.source.topic", lane_topic(cmd.priority.value).encode()),
        ("autopilot.source.partition", str(shard_of(cmd.workspace_id, 4)).encode()),
        ("autopilot.source.offset", b"42"),
    ]


async def write_dead_letters(settings: Settings) -> list[Written]:
    """The four dead commands, a copy of the first (written again after a crash) and one
    undecodable record, in one transaction as a transactional executor would write them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        transactional_id=f"{settings.topic_prefix}dlq-writer",
    )
    topic = settings.topic(COMMANDS_DLQ)
    await producer.start()
    try:
        async with producer.transaction():
            sent: list[tuple[Command | None, Any]] = []
            for cmd, error_class, at, partition in [*DEAD, DEAD[0]]:
                future = await producer.send(
                    topic,
                    cmd.model_dump_json().encode(),
                    key=cmd.workspace_id.encode(),
                    partition=partition,
                    headers=headers(cmd, error_class, at),
                )
                sent.append((cmd, future))
            parked = await producer.send(
                topic,
                b"\xff\xfenot a command",
                key=b"ws-d",
                partition=0,
                headers=[
                    ("autopilot.reason", UNDECODABLE_REASON.encode()),
                    ("autopilot.source.topic", b"commands.low"),
                    ("autopilot.source.partition", b"0"),
                    ("autopilot.source.offset", b"7"),
                ],
            )
            sent.append((None, parked))
        written = []
        for value, future in sent:
            metadata = await future
            written.append(Written(value, metadata.partition, metadata.offset))
    finally:
        await producer.stop()
    return written


def run_cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`autopilot dlq replay ARGS` for this test's deployment."""
    return autopilot_cli(settings, "dlq", "replay", *args, **env)


async def read_topics(settings: Settings, names: list[str]) -> list[Record]:
    """Every record of the topics up to their end offsets now, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[Record] = []
    try:
        tps = [TopicPartition(settings.topic(n), p) for n in names for p in range(4)]
        consumer.assign(tps)
        await seek_to_start(consumer, tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + WAIT_SECONDS
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        while remaining:
            assert time.monotonic() < deadline, f"not read to the end: {remaining}"
            batches = await consumer.getmany(*remaining, timeout_ms=500)
            for tp, got in batches.items():
                records += [
                    Record(tp.topic, tp.partition, r.key, r.value, dict(r.headers)) for r in got
                ]
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return sorted(records, key=lambda r: (r.topic, r.partition))


async def lane_commands(settings: Settings) -> list[tuple[str, int, bytes | None, Command]]:
    """Every command on the lane topics: (lane topic, partition, key, command)."""
    return [
        (r.topic, r.partition, r.key, Command.model_validate_json(r.value))
        for r in await read_topics(settings, [lane_topic(lane) for lane in LANES])
    ]


async def reissue_entries(settings: Settings) -> list[tuple[int, bytes | None, LedgerEntry]]:
    """The action.reissued entries the lane commands carry: (partition, key, entry). The CLI
    writes nothing to the ledger itself (the workspace's executor is its chain's one writer)."""
    assert await read_topics(settings, [LEDGER]) == []
    return [
        (r.partition, r.key, parse_entry(r.headers[REISSUE]))
        for r in await read_topics(settings, [lane_topic(lane) for lane in LANES])
    ]


def expected_command(old: Command, at: Written) -> Command:
    """The re-issue as the contract states it, built independently of the code under test."""
    return Command.model_validate(
        {
            **old.model_dump(),
            "command_id": stable_id("cmd", "reissue", old.command_id, at.partition, at.offset),
            "attempt": 1,
            "not_before": None,
            "deadline": None,
        }
    )


def expected_entry(old: Command, at: Written, error_class: str, by: str) -> dict[str, Any]:
    """The action.reissued entry as the contract states it, without its recorded_at."""
    new_id = stable_id("cmd", "reissue", old.command_id, at.partition, at.offset)
    return {
        "schema_version": 3,
        "entry_id": stable_id("reissue", new_id),
        "kind": LedgerKind.ACTION_REISSUED,
        "workspace_id": old.workspace_id,
        "correlation_id": old.correlation_id,
        "causation_id": old.command_id,
        "policy_version": old.policy_version,
        "payload": {
            "command_id": new_id,
            "reissued_from": old.command_id,
            "action": old.action.value,
            "priority": old.priority.value,
            "rule_id": old.rule_id,
            "error_class": error_class,
            "dead_letter": {"partition": at.partition, "offset": at.offset},
            "by": by,
        },
        "prev_hash": None,
        "hash": None,
    }


def reissued_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The old command ids a --json run re-issued (or would), in its order."""
    assert result.returncode == 0, result.stdout + result.stderr
    return [row["command_id"] for row in orjson.loads(result.stdout)["reissued"]]


async def test_every_dead_command_is_reissued_once_onto_its_lane_and_again_with_the_same_ids(
    settings: Settings,
) -> None:
    # Given four dead commands of three workspaces, a copy of one, and an undecodable record
    written = await write_dead_letters(settings)
    first_places = written[:4]
    before = datetime.now(UTC)

    # When every dead letter is replayed
    result = run_cli(settings, "--by", "ops-alice")
    after = datetime.now(UTC)

    # Then it says what it re-issued, the copy skipped and the undecodable record listed
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    new_ids = {
        old.command_id: expected_command(old, at).command_id
        for (old, *_), at in zip(DEAD, first_places, strict=True)
    }
    for old, error_class, at, _ in DEAD:
        [row] = [line for line in lines if f"{old.command_id} → {new_ids[old.command_id]}" in line]
        assert row.split()[:2] == [old.workspace_id, old.action.value]
        assert row.split()[-2:] == [error_class, at.isoformat()]
    rows = [line for line in lines if line.startswith("ws-")]
    assert [row.split()[2] for row in rows] == ["cmd-a1", "cmd-a2", "cmd-b1", "cmd-c1"]
    parked = written[5]
    assert f"  partition 0 offset {parked.offset}: {UNDECODABLE_REASON}" in lines
    assert lines[-1] == (
        "re-issued 4 of 6 dead letters (1 not replayable, 1 copy of an earlier dead letter skipped)"
    )

    # And each command is on its lane, keyed by workspace on the workspace's shard, attempt 1,
    # with nothing else changed
    expected = sorted(
        (
            (
                settings.topic(lane_topic(old.priority.value)),
                shard_of(old.workspace_id, 4),
                old.workspace_id.encode(),
                expected_command(old, at),
            )
            for (old, *_), at in zip(DEAD, first_places, strict=True)
        ),
        key=str,
    )
    commands = await lane_commands(settings)
    assert sorted(commands, key=str) == expected
    assert {c.attempt for *_, c in commands} == {1}
    assert next(c for *_, c in commands if c.workspace_id == "ws-c").dry_run is True

    # And each carries exactly one action.reissued entry, keyed by workspace on its shard
    entries = await reissue_entries(settings)
    got_entries = [(p, k, e.model_dump(exclude={"recorded_at"})) for p, k, e in entries]
    assert sorted(got_entries, key=str) == sorted(
        (
            (
                shard_of(old.workspace_id, 4),
                old.workspace_id.encode(),
                expected_entry(old, at, error_class, "ops-alice"),
            )
            for (old, error_class, *_), at in zip(DEAD, first_places, strict=True)
        ),
        key=str,
    )
    assert all(before <= e.recorded_at <= after for *_, e in entries)

    # When it is run a second time
    again = run_cli(settings, "--json")

    # Then it re-issues the very same ids (which the executor carries out once)
    assert again.returncode == 0, again.stdout + again.stderr
    report = orjson.loads(again.stdout)
    assert {r["command_id"]: r["reissued_as"] for r in report["reissued"]} == new_ids
    assert (report["published"], report["dead_letters"], report["copies"]) == (True, 6, 1)
    assert report["not_replayable"] == [
        {"partition": 0, "offset": parked.offset, "reason": UNDECODABLE_REASON}
    ]
    twice = await lane_commands(settings)
    assert sorted(twice, key=str) == sorted(expected + expected, key=str)
    entry_ids = [e.entry_id for *_, e in await reissue_entries(settings)]
    assert sorted(entry_ids) == sorted(2 * [e.entry_id for *_, e in entries])


async def test_filters_select_and_list_publishes_nothing(settings: Settings) -> None:
    # Given the dead letters
    await write_dead_letters(settings)
    a1, a2, b1, c1 = (c.command_id for c in (WEBHOOK_A, FOLLOWUP_A, RESTART_B, PROVISION_C))

    # When listing with each filter, then each selects exactly its dead letters (AND between
    # options, OR within one; since inclusive, until exclusive; naive times are UTC)
    cases: list[tuple[list[str], list[str]]] = [
        ([], [a1, b1, c1, a2]),
        (["--workspace", "ws-a"], [a1, a2]),
        (["--workspace", "ws-b", "--workspace", "ws-c"], [b1, c1]),
        (["--action", "retry_webhook", "--action", "restart_integration"], [b1, a1]),
        (["--error-class", "NotConfiguredError"], [c1]),
        (["--error-class", "TerminalError", "--workspace", "ws-b"], []),
        (["--since", "2026-11-21T21:30:00Z"], [b1, c1, a2]),
        (["--until", "2026-11-21T21:30:00+00:00"], [a1]),
        (["--since", "2026-11-21T21:00", "--until", "2026-11-21T23:00"], [b1, a2]),
        (["--since", "2026-11-21T22:30:00+01:00", "--action", "send_followup"], [a2]),
    ]
    for options, expected in cases:
        listed = run_cli(settings, "--list", "--json", *options)
        assert sorted(reissued_ids(listed)) == sorted(expected), options
        assert orjson.loads(listed.stdout)["published"] is False

    # And the plain listing says it published nothing
    text = run_cli(settings, "--list", "--workspace", "ws-c")
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.splitlines()[-1] == (
        "would re-issue 1 of 6 dead letters "
        "(1 not replayable, 1 copy of an earlier dead letter skipped); nothing published (--list)"
    )
    # And nothing matching is no error
    none = run_cli(settings, "--workspace", "ws-z")
    assert none.returncode == 0, none.stdout + none.stderr
    assert none.stdout.splitlines()[0] == "no dead-lettered command matched"
    assert none.stdout.splitlines()[-1].startswith("re-issued 0 of 6 dead letters")
    assert await lane_commands(settings) == []
    assert await reissue_entries(settings) == []

    # When re-issuing with a filter, then only the selected dead letter is published
    only = run_cli(settings, "--workspace", "ws-a", "--error-class", "RetryableError")
    assert only.returncode == 0, only.stdout + only.stderr
    [(topic, partition, _, reissued)] = await lane_commands(settings)
    assert (topic, partition, reissued.decision_id) == (
        settings.topic("commands.low"),
        shard_of("ws-a", 4),
        FOLLOWUP_A.decision_id,
    )
    [(_, _, entry)] = await reissue_entries(settings)
    assert (entry.causation_id, entry.payload.command_id, entry.payload.by) == (
        a2,
        reissued.command_id,
        "cli",
    )


async def test_an_empty_dead_letter_topic_matches_nothing(settings: Settings) -> None:
    """Given no dead letter at all, then the replay says nothing matched and exits 0."""
    result = run_cli(settings)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "no dead-lettered command matched",
        "",
        "re-issued 0 of 0 dead letters (0 not replayable)",
    ]


async def test_a_deployment_without_lane_topics_is_told_to_create_them(
    settings: Settings,
) -> None:
    """Given a dead letter on a dlq topic whose deployment has no lane topics, then listing
    works, and re-issuing exits 2 naming the missing topic, creating none (the CLI writes no
    ledger entry itself, so it needs no ledger topic)."""
    alone = settings.model_copy(update={"topic_prefix": f"{settings.topic_prefix}alone."})
    dlq = alone.topic(COMMANDS_DLQ)
    admin = AIOKafkaAdminClient(bootstrap_servers=alone.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(dlq, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=alone.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            dlq,
            WEBHOOK_A.model_dump_json().encode(),
            key=b"ws-a",
            headers=headers(WEBHOOK_A, "TerminalError", T0),
        )
    finally:
        await producer.stop()

    listed = run_cli(alone, "--list")
    result = run_cli(alone)

    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "would re-issue 1 of 1 dead letters" in listed.stdout
    assert result.returncode == 2, result.stdout + result.stderr
    assert (
        f"autopilot: no topic {alone.topic('commands.medium')} on the broker at "
    ) in result.stderr
    assert "run `autopilot topics`" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--action", "reboot"],
            {},
            "Invalid value for '--action': unknown action 'reboot'; known actions: "
            "run_provisioning, send_followup, retry_webhook",
        ),
        (["--since", "yesterday"], {}, "Invalid value for '--since': not an ISO-8601 timestamp"),
        (["--until", "2026-13-01"], {}, "Invalid value for '--until': not an ISO-8601 timestamp"),
        (
            ["--since", "2026-11-22", "--until", "2026-11-21"],
            {},
            "--since must be before --until",
        ),
        (["--workspace", "ws a"], {}, "Invalid value for '--workspace': not a workspace id"),
        (
            [],
            {"KAFKA_BOOTSTRAP_SERVERS": ""},
            "autopilot: set KAFKA_BOOTSTRAP_SERVERS to the broker that holds {dlq}",
        ),
        (
            [],
            {"AUTOPILOT_TOPIC_PREFIX": "nowhere."},
            "autopilot: no dead-letter topic nowhere.commands.dlq on the broker at ",
        ),
        (
            [],
            {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            "autopilot: cannot read {dlq} from 127.0.0.1:1: check KAFKA_BOOTSTRAP_SERVERS",
        ),
    ],
)
def test_bad_options_and_an_unreachable_deployment_exit_2_saying_what_to_fix(
    settings: Settings, args: list[str], env: dict[str, str], message: str
) -> None:
    """Given a bad option, no broker setting, a wrong prefix or a broker that does not
    answer, then the replay exits 2 with a message naming what to fix."""
    result = run_cli(settings, *args, **env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert message.format(dlq=settings.topic(COMMANDS_DLQ)) in result.stderr, result.stderr
    assert result.stdout == ""
