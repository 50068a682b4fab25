"""Playbooks on the real broker, against the sandbox platform (tools/sandbox.py).

The seed's provisioning-recovery playbook survives a worker killed (SIGKILL) between its steps:
a worker that takes the shard over resumes the run where it was, and each step's effect is
applied once at the platform. A fan-out restarts each offline integration; its fan-in waits for
every branch, or takes the failure branch when its deadline passes first. The policy replay
derives every recorded transition again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.settings import Settings
from tests.integration.commands import ended, ledger_until
from tests.integration.conftest import StartWorker
from tests.integration.http import wait_until_answers
from tests.integration.streams import publish_one_per_record
from tests.integration.test_schedules import now_signal, replay_agrees
from tools.sandbox import Sandbox
from topics.ledger import LedgerEntry, LedgerKind, PlaybookEntry

pytestmark = pytest.mark.integration

K = LedgerKind


def transitions(entries: list[LedgerEntry], workspace_id: str) -> list[tuple[str, ...]]:
    """A workspace's playbook entries: kind, step, outcome, next step."""
    return [
        (e.kind.value, e.payload.step or "", e.payload.outcome or "", e.payload.next or "")
        for e in entries
        if isinstance(e, PlaybookEntry) and e.workspace_id == workspace_id
    ]


def run_ended(workspace_id: str) -> Callable[[list[LedgerEntry]], bool]:
    def done(entries: list[LedgerEntry]) -> bool:
        return any(
            e.kind in (K.PLAYBOOK_COMPLETED, K.PLAYBOOK_FAILED) and e.workspace_id == workspace_id
            for e in entries
        )

    return done


def effects(sandbox: Sandbox, workspace_id: str) -> list[tuple[str, str | None]]:
    """The effects applied for a workspace, in order: operation, and integration if any."""
    return [
        (effect.operation, effect.body.get("integration"))
        for effect in sandbox.effects
        if effect.workspace_id == workspace_id
    ]


async def test_a_run_killed_between_steps_resumes_and_applies_each_step_once(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox
) -> None:
    # Given a worker on the seed policy, and a workspace the platform reports degraded
    workspace = "ws-recover-1"
    sandbox.set_health(workspace, "degraded", 41)
    # (a killed worker's lease on an attempt is waited out: 6 s here)
    env = {"AUTOPILOT_RETRY_MAX_ATTEMPTS": "100", "AUTOPILOT_LEASE_TTL_SECONDS": "6"}
    first = start_worker(env, data="first")
    await wait_until_answers(first)

    # When its provisioning fails, the provisioning-recovery playbook starts: provision, then
    # verify health; the worker is killed while the check is being retried
    await publish_one_per_record(
        settings, [now_signal("pf-1", workspace, "provisioning_failed", datetime.now(UTC))]
    )

    def checking(entries: list[LedgerEntry]) -> bool:
        return any(e.kind is K.ACTION_FAILED and e.workspace_id == workspace for e in entries)

    before = await ledger_until(settings, checking)
    assert transitions(before, workspace) == [
        ("playbook.started", "", "", "provision"),
        ("playbook.step_completed", "provision", "succeeded", "verify"),
    ]
    first.kill()

    # And another worker, on its own data, takes over; the workspace is healthy by then
    sandbox.set_health(workspace, "healthy", 92)
    second = start_worker(env, data="second")
    await wait_until_answers(second)
    entries = await ledger_until(settings, run_ended(workspace))

    # Then the run resumed where it was and completed, each transition recorded once
    assert transitions(entries, workspace) == [
        ("playbook.started", "", "", "provision"),
        ("playbook.step_completed", "provision", "succeeded", "verify"),
        ("playbook.step_completed", "verify", "succeeded", "notify"),
        ("playbook.step_completed", "notify", "succeeded", "complete"),
        ("playbook.completed", "", "", ""),
    ]
    # And the platform applied one provisioning and one message, each once
    assert effects(sandbox, workspace) == [("provision", None), ("messages", None)]
    assert set(Counter(e.key for e in sandbox.effects).values()) == {1}
    assert "4 playbook transitions derived again" in replay_agrees(settings, {})


FAN_OUT = """
[[rules]]
id = "sweep-integrations"
on = ["integration_offline"]
playbook = "integration-sweep"
priority = 7
cooldown_seconds = 0

[[playbooks]]
id = "integration-sweep"
[[playbooks.steps]]
id = "list"
action = "check_integrations"
on_success = "restart"
compensate = "trigger_reconciliation"
[[playbooks.steps]]
id = "restart"
action = "restart_integration"
for_each = "list"
deadline_seconds = 6
on_success = "report"
on_failure = "escalate"
[[playbooks.steps]]
id = "report"
action = "send_followup"
[[playbooks.steps]]
id = "escalate"
action = "send_followup"
on_success = "fail"
"""


async def test_a_fan_in_waits_for_every_branch_or_fails_on_its_deadline(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox, tmp_path: Path
) -> None:
    # Given a worker whose playbook restarts every offline integration, waiting 6 s for all;
    # one workspace's restarts all succeed, the other's third keeps failing (503)
    policy = tmp_path / "policy.toml"
    policy.write_text(FAN_OUT)
    # (the stuck branch's failures would open the platform's breaker: not this test's subject)
    env = {
        "AUTOPILOT_POLICY_FILE": str(policy),
        "AUTOPILOT_RETRY_MAX_ATTEMPTS": "100",
        "AUTOPILOT_BREAKER_FAILURE_THRESHOLD": "1000",
    }
    offline = [{"id": name, "status": "offline"} for name in ("crm", "mail", "calendar")]
    sandbox.set_integrations("ws-all-ok", offline[:2])
    sandbox.set_integrations("ws-one-stuck", offline)
    sandbox.script("ws-one-stuck", "restart-integration", [200, 200] + [503] * 200)
    worker = start_worker(env)
    await wait_until_answers(worker)

    # When an integration of each goes offline
    now = datetime.now(UTC)
    await publish_one_per_record(
        settings,
        [
            now_signal("io-1", "ws-all-ok", "integration_offline", now, integration_id="crm"),
            now_signal("io-2", "ws-one-stuck", "integration_offline", now, integration_id="crm"),
        ],
    )
    entries = await ledger_until(
        settings, lambda got: run_ended("ws-all-ok")(got) and run_ended("ws-one-stuck")(got)
    )

    # Then the first run restarted both, waited for both, and reported
    assert transitions(entries, "ws-all-ok") == [
        ("playbook.started", "", "", "list"),
        ("playbook.step_completed", "list", "succeeded", "restart"),
        ("playbook.step_completed", "restart", "succeeded", "report"),
        ("playbook.step_completed", "report", "succeeded", "complete"),
        ("playbook.completed", "", "", ""),
    ]
    fan_in = next(
        e
        for e in entries
        if isinstance(e, PlaybookEntry)
        and e.workspace_id == "ws-all-ok"
        and e.payload.step == "restart"
    )
    assert fan_in.payload.cause["kind"] == "outcome"
    assert len(fan_in.payload.cause["earlier"]) == 1  # the other branch, which moved nothing
    assert effects(sandbox, "ws-all-ok") == [
        ("restart-integration", "crm"),
        ("restart-integration", "mail"),
        ("messages", None),
    ]
    # And the second took the failure branch when the deadline passed with one branch open
    assert transitions(entries, "ws-one-stuck") == [
        ("playbook.started", "", "", "list"),
        ("playbook.step_completed", "list", "succeeded", "restart"),
        ("playbook.step_completed", "restart", "timed_out", "escalate"),
        ("playbook.step_completed", "escalate", "succeeded", "fail"),
        ("playbook.failed", "", "", ""),
    ]
    timed_out = next(
        e
        for e in entries
        if isinstance(e, PlaybookEntry)
        and e.workspace_id == "ws-one-stuck"
        and e.payload.outcome == "timed_out"
    )
    assert timed_out.payload.cause["kind"] == "due"
    started = next(
        e for e in entries if e.kind is K.PLAYBOOK_STARTED and e.workspace_id == "ws-one-stuck"
    )
    assert timed_out.recorded_at.timestamp() >= started.recorded_at.timestamp() + 6
    # And its failure issued the compensation of the step that had succeeded (the listing's:
    # a reconciliation), which ran although the failure parked the workspace
    failed = next(
        e for e in entries if e.kind is K.PLAYBOOK_FAILED and e.workspace_id == "ws-one-stuck"
    )
    (compensation,) = failed.payload.commands
    done = await ledger_until(settings, ended(compensation))
    assert [e.kind for e in done if getattr(e.payload, "command_id", None) == compensation] == [
        K.ACTION_STARTED,
        K.ACTION_SUCCEEDED,
    ]
    assert effects(sandbox, "ws-one-stuck") == [
        ("restart-integration", "crm"),
        ("restart-integration", "mail"),
        ("messages", None),
        ("reconcile", None),
    ]
    assert set(Counter(e.key for e in sandbox.effects).values()) == {1}
    # And the failed run parked its workspace (its later commands wait for an operator); the
    # run that completed parked nothing
    parked = await ledger_until(
        settings, lambda got: any(e.kind is K.WORKSPACE_PARKED for e in got)
    )
    (parking,) = [e for e in parked if e.kind is K.WORKSPACE_PARKED]
    assert parking.workspace_id == "ws-one-stuck"
    run_id = timed_out.payload.run_id
    assert (
        parking.payload.reason
        == f"playbook integration-sweep failed after step escalate, run {run_id}"
    )
    # (each run: its start, and three outcomes or due times that moved it)
    replayed = replay_agrees(settings, {"AUTOPILOT_POLICY_FILE": str(policy)})
    assert "8 playbook transitions derived again" in replayed
