"""The playbook.* entries, as golden/ledger-v3-playbooks.jsonl holds them: byte for byte as
today's builder writes them, read back as their model, on the workspace's decision chain."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.chain import ChainCheck, chain_of_entry, seal
from core.ledger_entries import playbook_entry
from core.playbooks import Advance, Origin, Playbook, on_outcome, start
from topics.commands import Priority
from topics.ledger import LedgerEntry, LedgerKind, PlaybookEntry, parse_entry

GOLDEN = Path(__file__).parent / "golden"
AT = datetime(2026, 12, 8, 9, 0, 1, 250000, tzinfo=UTC)
VERSION = "p-0123456789ab"
PLAYBOOK = Playbook.model_validate(
    {
        "id": "provisioning-recovery",
        "steps": [
            {"id": "provision", "action": "run_provisioning", "on_success": "verify"},
            {"id": "verify", "action": "verify_health", "on_failure": "fail"},
        ],
    }
)


def playbook_records() -> list[bytes]:
    return (GOLDEN / "ledger-v3-playbooks.jsonl").read_bytes().splitlines()


def entries_of(advance: Advance, cause: dict[str, Any]) -> Iterator[LedgerEntry]:
    for move in advance.moves:
        yield playbook_entry(advance.run, move, cause, VERSION, AT)


def playbook_kinds() -> Iterator[LedgerEntry]:
    """Two runs: one provisioned, then failed its health check (started, two steps, failed);
    one provisioned and healthy (started, two steps, completed)."""
    at = 1_796_720_400
    for run_id, healthy in (("dec-7a1", False), ("dec-7a2", True)):
        origin = Origin(run_id, "playbook.provisioning_failed", Priority.HIGH, "sig-1", False)
        first = run_id.replace("dec", "cmd")
        started = start(PLAYBOOK, run_id, "ws-golden", origin, first, at)
        yield from entries_of(started, {"kind": "decision", "id": run_id, "at": at})
        provisioned = on_outcome(PLAYBOOK, started.run, first, True, (), at + 30)
        assert provisioned is not None
        cause = {"kind": "outcome", "id": first, "at": at + 30, "succeeded": True}
        yield from entries_of(provisioned, cause)
        (verify,) = provisioned.commands
        ended = on_outcome(PLAYBOOK, provisioned.run, verify.command_id, healthy, (), at + 90)
        assert ended is not None
        cause = {"kind": "outcome", "id": verify.command_id, "at": at + 90, "succeeded": healthy}
        yield from entries_of(ended, cause)


def sealed(entries: Iterator[LedgerEntry]) -> list[bytes]:
    heads: dict[str, str] = {}
    written = []
    for entry in entries:
        chain = chain_of_entry(entry, 2)
        record, heads[chain] = seal(entry, heads.get(chain), None)
        written.append(record)
    return written


def test_todays_builder_writes_the_playbook_records_byte_for_byte() -> None:
    """Given the run built today, when sealed, then the records are the golden ones."""
    assert sealed(playbook_kinds()) == playbook_records()


def test_the_playbook_records_read_as_their_model_on_the_workspaces_chain() -> None:
    """Given the golden records, when read, then each is a playbook entry of the run, in the
    order it moved, and they chain on the workspace's own (decision) chain."""
    check = ChainCheck(key=None)
    entries = []
    for offset, raw in enumerate(playbook_records()):
        entry = parse_entry(raw)
        entries.append(entry)
        check.add(2, offset, raw)
    assert all(isinstance(e, PlaybookEntry) for e in entries)
    started = (LedgerKind.PLAYBOOK_STARTED, None, None, "provision")
    provisioned = (LedgerKind.PLAYBOOK_STEP_COMPLETED, "provision", "succeeded", "verify")
    assert [(e.kind, e.payload.step, e.payload.outcome, e.payload.next) for e in entries] == [
        started,
        provisioned,
        (LedgerKind.PLAYBOOK_STEP_COMPLETED, "verify", "failed", "fail"),
        (LedgerKind.PLAYBOOK_FAILED, None, None, None),
        started,
        provisioned,
        (LedgerKind.PLAYBOOK_STEP_COMPLETED, "verify", "succeeded", "complete"),
        (LedgerKind.PLAYBOOK_COMPLETED, None, None, None),
    ]
    assert {chain_of_entry(e, 2) for e in entries} == {"ws-golden"}
    assert [e.payload.run_id for e in entries] == ["dec-7a1"] * 4 + ["dec-7a2"] * 4
    assert check.broken == {}
    assert check.checked == 8
