"""Per-workspace parking on the real broker, against the sandbox platform (tools/sandbox.py).

A workspace whose command is dead-lettered parks: its later commands wait (`action.parked`)
while the other workspaces of its shard flow, until an operator releases them (they run in the
order they came) or drops them (each `action.skipped`), or the parking outlives its TTL.
Commands are written straight onto their lanes, as in tests/integration/test_executors.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest

from app.settings import Settings
from core.rules import SEED_POLICY_FILE
from projections.database import default_url
from tests.integration.commands import autopilot_cli, command, ended, ledger_until, send
from tests.integration.conftest import WAIT_SECONDS, StartWorker
from tests.integration.http import CONTROL_TOKEN, request, wait_until_answers
from tests.integration.streams import workspaces_of_shard
from tools.sandbox import Sandbox
from topics.commands import Action, Priority
from topics.ledger import LedgerEntry, LedgerKind

pytestmark = pytest.mark.integration

K = LedgerKind
T = TypeVar("T")


def story(entries: list[LedgerEntry], command_id: str) -> list[LedgerKind]:
    """The kinds of a command's entries, in ledger order."""
    return [e.kind for e in entries if getattr(e.payload, "command_id", None) == command_id]


def index(entries: list[LedgerEntry], kind: LedgerKind, command_id: str | None = None) -> int:
    """Where on the ledger (in the workspace's partition order) an entry of this kind lies."""
    return next(
        n
        for n, e in enumerate(entries)
        if e.kind is kind
        and (command_id is None or getattr(e.payload, "command_id", None) == command_id)
    )


def of_kind(entries: list[LedgerEntry], kind: LedgerKind) -> list[LedgerEntry]:
    return [e for e in entries if e.kind is kind]


def held(count: int) -> Callable[[list[LedgerEntry]], bool]:
    return lambda entries: len(of_kind(entries, K.ACTION_PARKED)) >= count


async def eventually(read: Callable[[], Awaitable[T]], until: Callable[[T], bool], what: str) -> T:
    """Poll `read` until `until` holds, or fail naming `what` and the last value."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = await read()
        if until(value):
            return value
        assert time.monotonic() < deadline, f"{what}: last {value!r}"
        await asyncio.sleep(0.3)


async def park(settings: Settings, sandbox: Sandbox, parked: str, other: str) -> list[LedgerEntry]:
    """`parked`'s provisioning refused (422: terminal), so it is dead-lettered and parks the
    workspace; then two more of its commands and one of `other` arrive, in that order."""
    sandbox.script(parked, "provision", [422])
    await send(settings, [command("p0", parked)])
    await ledger_until(settings, lambda got: bool(of_kind(got, K.WORKSPACE_PARKED)))
    await send(
        settings,
        [
            command("p1", parked, Action.FORCE_PUBLISH),
            command("p2", parked, Action.REBALANCE_QUEUE),
            command("o1", other),
        ],
    )
    return await ledger_until(settings, lambda got: held(2)(got) and ended("cmd-o1")(got))


def assert_parked_while_the_other_flows(
    entries: list[LedgerEntry], sandbox: Sandbox, parked: str
) -> None:
    # The dead letter parked the workspace, naming the action, the error's class, the command
    assert story(entries, "cmd-p0") == [K.ACTION_STARTED, K.ACTION_FAILED, K.ACTION_DEAD_LETTERED]
    [parking] = of_kind(entries, K.WORKSPACE_PARKED)
    assert parking.workspace_id == parked
    assert (
        parking.payload.reason == "run_provisioning dead-lettered (TerminalError), command cmd-p0"
    )
    assert (parking.payload.dead_lettered, parking.payload.queued) == ("cmd-p0", 0)
    # Its next two commands wait, in the order they came
    assert story(entries, "cmd-p1") == [K.ACTION_PARKED]
    assert story(entries, "cmd-p2") == [K.ACTION_PARKED]
    positions = [e.payload.position for e in of_kind(entries, K.ACTION_PARKED)]
    assert positions == [1, 2]
    # While the other workspace of the same shard ran its command
    assert story(entries, "cmd-o1") == [K.ACTION_STARTED, K.ACTION_SUCCEEDED]
    assert {e.key for e in sandbox.effects} == {"cmd-o1"}


async def test_a_parked_workspaces_commands_wait_and_run_in_order_once_released(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Given two workspaces on the same shard, and a worker projecting its ledger
    parked, other = workspaces_of_shard(1, 2, settings.partitions)
    worker = start_worker({"AUTOPILOT_PROJECTOR_ENABLED": "true"})
    await wait_until_answers(worker)
    # When the first's command is dead-lettered and three more commands arrive
    entries = await park(settings, sandbox, parked, other)
    # Then the parked workspace's two wait while the other's runs
    assert_parked_while_the_other_flows(entries, sandbox, parked)
    # And a dry-run command of the parked workspace is still only skipped as dry-run
    dry = command("p-dry", parked).model_copy(update={"dry_run": True})
    await send(settings, [dry])
    entries = await ledger_until(settings, ended("cmd-p-dry"))
    assert story(entries, "cmd-p-dry") == [K.ACTION_SKIPPED]
    assert of_kind(entries, K.ACTION_SKIPPED)[0].payload.reason == "dry_run"

    # And GET /parked lists the workspace, once projected, with its two commands held
    async def listed() -> tuple[int, Any]:
        return await request("GET", f"{worker.web_url}/parked", token=CONTROL_TOKEN)

    _, body = await eventually(
        listed, lambda answer: answer[0] == 200 and bool(answer[1]["parked"]), "GET /parked"
    )
    [row] = body["parked"]
    assert (row["workspace_id"], row["queued"], row["dead_lettered"]) == (parked, 2, "cmd-p0")
    assert row["reason"] == "run_provisioning dead-lettered (TerminalError), command cmd-p0"
    assert (await request("GET", f"{worker.web_url}/parked"))[0] == 401
    # And `autopilot parked list` shows the same, as a table and as JSON
    database = default_url(tmp_path / "data")
    table = autopilot_cli(settings, "parked", "list", "--db", database)
    assert table.returncode == 0, table.stderr
    assert parked in table.stdout and "cmd-p0" in table.stdout
    listed_json = autopilot_cli(settings, "parked", "list", "--db", database, "--json")
    assert listed_json.returncode == 0, listed_json.stderr
    assert orjson.loads(listed_json.stdout) == body

    # When an operator releases it from the command line
    released = autopilot_cli(
        settings, "parked", "release", parked, "--by", "oncall.alice", "--reason", "fixed"
    )
    assert released.returncode == 0, released.stderr
    entries = await ledger_until(settings, ended("cmd-p1", "cmd-p2"))
    # Then the release is on the ledger, then the two commands ran in the order they came
    [release] = of_kind(entries, K.WORKSPACE_RELEASED)
    assert (release.payload.by, release.payload.reason) == ("oncall.alice", "fixed")
    assert (release.payload.count, release.payload.dropped) == (2, False)
    mine = [e for e in entries if e.workspace_id == parked]
    assert (
        index(mine, K.WORKSPACE_RELEASED)
        < index(mine, K.ACTION_STARTED, "cmd-p1")
        < index(mine, K.ACTION_SUCCEEDED, "cmd-p1")
        < index(mine, K.ACTION_STARTED, "cmd-p2")
        < index(mine, K.ACTION_SUCCEEDED, "cmd-p2")
    )
    assert story(entries, "cmd-p1") == [K.ACTION_PARKED, K.ACTION_STARTED, K.ACTION_SUCCEEDED]
    assert [(e.key, e.operation) for e in sandbox.effects][-2:] == [
        ("cmd-p1", "force-publish"),
        ("cmd-p2", "rebalance-queue"),
    ]
    # And the workspace's next command runs at once
    await send(settings, [command("p3", parked)])
    entries = await ledger_until(settings, ended("cmd-p3"))
    assert story(entries, "cmd-p3") == [K.ACTION_STARTED, K.ACTION_SUCCEEDED]
    # And GET /parked no longer lists it; every command ended once, every chain holds
    await eventually(listed, lambda answer: answer == (200, {"parked": []}), "GET /parked")
    terminal = Counter(
        e.payload.command_id for e in entries if e.kind in {K.ACTION_SUCCEEDED, K.ACTION_SKIPPED}
    )
    assert set(terminal.values()) == {1}
    verified = autopilot_cli(settings, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_dropping_a_parking_skips_every_held_command(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox
) -> None:
    # Given a parked workspace with two commands held, beside another on its shard
    parked, other = workspaces_of_shard(2, 2, settings.partitions)
    worker = start_worker()
    await wait_until_answers(worker)
    entries = await park(settings, sandbox, parked, other)
    assert_parked_while_the_other_flows(entries, sandbox, parked)

    async def drop(workspace: str, token: str | None) -> tuple[int, Any]:
        body = orjson.dumps({"by": "oncall.bob", "reason": "obsolete"})
        url = f"{worker.web_url}/parked/{workspace}/drop"
        return await request("POST", url, body=body, token=token)

    # When a drop comes without the token, or for what is not a workspace id
    assert (await drop(parked, None))[0] == 401
    assert (await drop("ws%20bad", CONTROL_TOKEN))[0] == 400
    # And then with the token
    status, answer = await drop(parked, CONTROL_TOKEN)
    assert (status, answer["workspace_id"], answer["drop"]) == (202, parked, True)
    entries = await ledger_until(settings, ended("cmd-p1", "cmd-p2"))
    # Then the parking ended as dropped, and each held command ended as skipped, never run
    [release] = of_kind(entries, K.WORKSPACE_RELEASED)
    assert (release.payload.by, release.payload.dropped, release.payload.count) == (
        "oncall.bob",
        True,
        2,
    )
    for command_id in ("cmd-p1", "cmd-p2"):
        assert story(entries, command_id) == [K.ACTION_PARKED, K.ACTION_SKIPPED]
    assert {e.payload.reason for e in of_kind(entries, K.ACTION_SKIPPED)} == {"dropped by operator"}
    assert {e.key for e in sandbox.effects} == {"cmd-o1"}
    # And a second drop of a workspace no longer parked changes nothing
    assert (await drop(parked, CONTROL_TOKEN))[0] == 202
    await send(settings, [command("p3", parked)])
    entries = await ledger_until(settings, ended("cmd-p3"), dedupe=False)
    assert len(of_kind(entries, K.WORKSPACE_RELEASED)) == 1
    assert story(entries, "cmd-p3") == [K.ACTION_STARTED, K.ACTION_SUCCEEDED]


async def test_a_parking_past_its_ttl_releases_itself_on_the_next_command(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Given a policy whose parkings last 3 s, and only provisioning dead letters park
    policy = tmp_path / "policy.toml"
    policy.write_text(
        SEED_POLICY_FILE.read_text()
        + '\n[parking]\nactions = ["run_provisioning"]\nttl_seconds = 3\n'
    )
    parked, other = workspaces_of_shard(3, 2, settings.partitions)
    start_worker({"AUTOPILOT_POLICY_FILE": str(policy)})
    # And a dead-lettered integration restart, which does not park its workspace
    sandbox.script(other, "restart-integration", [422])
    await send(settings, [command("w0", other, Action.RESTART_INTEGRATION, Priority.HIGH)])
    await send(settings, [command("w1", other, Action.FORCE_PUBLISH)])
    entries = await ledger_until(settings, ended("cmd-w0", "cmd-w1"))
    assert story(entries, "cmd-w0")[-1] is K.ACTION_DEAD_LETTERED
    assert story(entries, "cmd-w1") == [K.ACTION_STARTED, K.ACTION_SUCCEEDED]
    assert of_kind(entries, K.WORKSPACE_PARKED) == []
    # When a provisioning command is dead-lettered and the next one is held
    sandbox.script(parked, "provision", [422])
    await send(settings, [command("p0", parked)])
    await ledger_until(settings, lambda got: bool(of_kind(got, K.WORKSPACE_PARKED)))
    await send(settings, [command("p1", parked, Action.FORCE_PUBLISH)])
    entries = await ledger_until(settings, held(1))
    [parking] = of_kind(entries, K.WORKSPACE_PARKED)
    assert parking.payload.ttl_seconds == 3
    # And a command comes once the parking is older than its TTL
    await asyncio.sleep(max(0.0, parking.payload.since.timestamp() + 3.5 - time.time()))
    await send(settings, [command("p2", parked, Action.REBALANCE_QUEUE)])
    entries = await ledger_until(settings, ended("cmd-p1", "cmd-p2"))
    # Then the parking released itself (by ttl), the held command ran first, then the new one
    [release] = of_kind(entries, K.WORKSPACE_RELEASED)
    assert (release.payload.by, release.payload.count) == ("ttl", 1)
    mine = [e for e in entries if e.workspace_id == parked]
    assert (
        index(mine, K.WORKSPACE_RELEASED)
        < index(mine, K.ACTION_SUCCEEDED, "cmd-p1")
        < index(mine, K.ACTION_STARTED, "cmd-p2")
    )
    assert story(entries, "cmd-p2") == [K.ACTION_STARTED, K.ACTION_SUCCEEDED]
