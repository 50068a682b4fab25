"""`autopilot policy replay` over playbook transitions: a recorded run derives again
identically, a tampered transition diverges, and a changed playbook shows as a what-if."""

from __future__ import annotations

from core.policy_replay import render, replay_policy
from core.rules import parse_policy
from tests.unit.topics.test_playbook_ledger import playbook_kinds
from topics.ledger import PlaybookEntry

POLICY = """
[[rules]]
id = "playbook.provisioning_failed"
on = ["provisioning_failed"]
playbook = "provisioning-recovery"
priority = 9
cooldown_seconds = 0

[[playbooks]]
id = "provisioning-recovery"
[[playbooks.steps]]
id = "provision"
action = "run_provisioning"
on_success = "verify"
[[playbooks.steps]]
id = "verify"
action = "verify_health"
on_failure = "fail"
"""


def recorded(version: str) -> list[PlaybookEntry]:
    """The golden runs, as recorded under `version`."""
    return [
        entry.model_copy(update={"policy_version": version})
        for entry in playbook_kinds()
        if isinstance(entry, PlaybookEntry)
    ]


def test_recorded_runs_derive_again_identically() -> None:
    policy = parse_policy(POLICY, "test")
    report = replay_policy(recorded(policy.version), policy)
    assert report.transitions == 6  # two runs: started, provisioned, verified
    assert report.diverging == [] and report.changed == []
    assert "6 playbook transitions derived again" in render(report)


def test_a_tampered_transition_diverges() -> None:
    policy = parse_policy(POLICY, "test")
    entries = recorded(policy.version)
    # The failed health check recorded as going on to "complete".
    verify = next(e for e in entries if e.payload.step == "verify" and e.payload.next == "fail")
    forged = verify.model_copy(
        update={"payload": verify.payload.model_copy(update={"next": "complete"})}
    )
    entries[entries.index(verify)] = forged
    report = replay_policy(entries, policy)
    assert report.diverging == ["ws-golden"]
    (difference,) = report.workspaces["ws-golden"].diverging
    assert difference.problem is not None and "verify->complete" in difference.problem


def test_a_changed_playbook_is_a_what_if() -> None:
    recording = parse_policy(POLICY, "test")
    # The new policy retries the health check's failure with a second provisioning.
    changed = parse_policy(
        POLICY.replace('on_failure = "fail"', 'on_failure = "again"')
        + '[[playbooks.steps]]\nid = "again"\naction = "run_provisioning"\n',
        "new",
    )
    report = replay_policy(recorded(recording.version), changed)
    assert report.diverging == []
    assert report.changed == ["ws-golden"]
