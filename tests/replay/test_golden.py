"""Golden ledgers: recorded decisions derived again, identical, tampered, and what-if."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from core.policy_replay import replay_policy
from core.rules import load_policy
from projections.ledger_reader import load_ledger_file
from tests.support.factories import SEED_POLICY
from topics.ledger import LedgerEntry

HERE = Path(__file__).parent
POLICY = HERE / "policy.toml"
ROOT = HERE.parent.parent


def ledger(name: str) -> list[LedgerEntry]:
    with (HERE / name).open("rb") as lines:
        return load_ledger_file(lines)


def replay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "policy", "replay", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_golden_ledger_holds_every_kind_of_verdict() -> None:
    """Given the golden ledger, then it records made, deferred and suppressed decisions,
    including ones made while paused and in dry-run, so the replay covers every path."""
    entries = ledger("golden.jsonl")
    kinds = Counter(e.kind.value for e in entries)
    reasons = {e.payload.reason for e in entries if e.kind.value == "decision.suppressed"}

    assert kinds["decision.made"] > 0 and kinds["decision.deferred"] > 0
    assert "operator paused autonomous decisions" in reasons
    assert any(r.startswith("workspace daily budget spent") for r in reasons)
    assert any(r.startswith("platform cap reached") for r in reasons)
    assert any(
        getattr(e.payload, "dry_run", None) for e in entries if e.kind.value == "decision.made"
    )


def test_the_golden_ledger_replays_identically_with_its_policy() -> None:
    """Given the golden ledger and the policy that recorded it, when replayed, then every
    evaluation of every workspace is identical."""
    entries = ledger("golden.jsonl")

    report = replay_policy(entries, load_policy(POLICY))

    assert report.diverging == [] and report.changed == []
    assert report.evaluations == len(
        {e.causation_id for e in entries if e.kind.value.startswith("decision.")}
    )
    assert report.recorded_versions == {load_policy(POLICY).version}
    assert all(result.status == "identical" for result in report.workspaces.values())


def test_the_tampered_ledger_is_flagged_where_it_was_altered() -> None:
    """Given the golden ledger with one decision's action rewritten and another decision's
    recorded input rewritten, when replayed with the same policy, then exactly those two
    evaluations diverge and every other one is identical."""
    golden, tampered = ledger("golden.jsonl"), ledger("tampered.jsonl")
    altered = {
        (g.workspace_id, g.causation_id) for g, t in zip(golden, tampered, strict=True) if g != t
    }

    report = replay_policy(tampered, load_policy(POLICY))

    flagged = {
        (workspace_id, d.signal_id)
        for workspace_id, result in report.workspaces.items()
        for d in result.diverging
    }
    assert len(altered) == 2
    assert flagged == altered
    assert report.changed == []
    action = next(
        d
        for r in report.workspaces.values()
        for d in r.diverging
        if d.recorded[0]["action"] == "restart_integration"
    )
    assert [row["action"] for row in action.derived] == ["retry_webhook"]


def test_the_cli_exits_0_on_the_golden_ledger_and_1_on_the_tampered_one() -> None:
    """Given the two ledgers as JSON-lines exports, when `autopilot policy replay` runs with
    the recording policy, then it exits 0 and 1, and names the diverging workspaces."""
    clean = replay_cli("--ledger", str(HERE / "golden.jsonl"), "--policy", str(POLICY))
    bad = replay_cli("--ledger", str(HERE / "tampered.jsonl"), "--policy", str(POLICY))

    assert clean.returncode == 0, clean.stderr
    assert "0 diverging" in clean.stdout
    assert bad.returncode == 1, bad.stderr
    assert "2 diverging" in bad.stdout
    diverging = sorted(line.split()[0] for line in bad.stdout.splitlines() if " diverging " in line)
    assert diverging == sorted(
        replay_policy(ledger("tampered.jsonl"), load_policy(POLICY)).diverging
    )


def test_a_changed_policy_gives_a_what_if_diff_and_exits_0() -> None:
    """Given the golden ledger, when replayed with a policy that puts webhook retries in the
    high lane, then exactly the retry_webhook decisions change (lane and rank), nothing is
    called diverging, and the CLI exits 0."""
    whatif = load_policy(HERE / "policy_whatif.toml")

    report = replay_policy(ledger("golden.jsonl"), whatif)

    assert report.diverging == []
    changes = [
        (before, after)
        for result in report.workspaces.values()
        for d in result.changed
        for before, after in zip(d.recorded, d.derived, strict=True)
        if before != after
    ]
    assert changes
    for before, after in changes:
        assert before["action"] == after["action"] == "retry_webhook"
        assert (before["priority"], after["priority"]) == ("medium", "high")
        assert {k for k in before if before[k] != after[k]} == {"priority", "rank"}
    cli = replay_cli(
        "--ledger", str(HERE / "golden.jsonl"), "--policy", str(HERE / "policy_whatif.toml")
    )
    assert cli.returncode == 0, cli.stderr
    assert "changed by this policy" in cli.stdout


def test_an_unreadable_ledger_file_is_a_clear_error() -> None:
    """Given a path that does not exist, then the CLI says which file and exits 2."""
    missing = replay_cli("--ledger", str(HERE / "missing.jsonl"))

    assert missing.returncode == 2
    assert "cannot read ledger export" in missing.stderr
    assert "missing.jsonl" in missing.stderr


@pytest.mark.parametrize("name", ["golden.jsonl", "tampered.jsonl"])
def test_the_seed_policy_is_another_version_so_differences_are_a_what_if(name: str) -> None:
    """Given a ledger recorded with another policy version, when replayed with the seed
    policy, then differences are reported as changed, never as diverging (unless the
    recorded input itself is unreadable)."""
    report = replay_policy(ledger(name), SEED_POLICY)

    assert SEED_POLICY.version not in report.recorded_versions
    assert report.diverging == []
