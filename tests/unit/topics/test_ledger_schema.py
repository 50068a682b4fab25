"""The ledger's typed entries against golden records of each schema version.

golden/ledger-v1.jsonl was written by the builders of schema version 1 (before the chain),
golden/ledger-v2.jsonl by those of version 2, as one sealed chain per workspace, and
golden/ledger-v3.jsonl by today's, with a workspace's actions on a chain of their own and
rejections per shard: one entry of every kind (decisions of every verdict, every outcome,
breakers, rejections, folds, switches), decided under golden/policy.toml (the seed policy of
the day). They are never regenerated: a change to what an entry holds is a new schema version
with its own file. Kinds added later within version 3 have a file of their own:
golden/ledger-v3-parking.jsonl holds a workspace's parking (workspace.parked, action.parked,
and workspace.released by an operator, by its TTL and as a drop).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from actions.reconciler import RetryableError, TerminalError
from core import ledger_entries, windows
from core.chain import ChainCheck, chain_of_entry, seal
from core.codec import Rejection
from core.dead_letters import DeadLetter, reissue
from core.decide import command_of, decide_signals, initial_quota
from core.ledger_entries import (
    approval_requested_entry,
    breaker_entry,
    dead_lettered_entry,
    decision_entry,
    deferred_entry,
    failed_entry,
    folded_entry,
    rejection_entry,
    skipped_entry,
    started_entry,
    succeeded_entry,
    switch_entry,
    verdict_entry,
)
from core.policy import Mode
from core.rules import load_policy
from core.windows import SourcePosition, WindowConfig
from projections.entries import decode_entry
from topics.approvals import ParkingRelease
from topics.commands import Action, Command, Priority
from topics.control import OperatorSwitch, Switch
from topics.ledger import (
    ActionFailed,
    DecisionEntry,
    LedgerEntry,
    LedgerKind,
    OperatorSwitched,
    SignalsFolded,
    parse_entry,
)
from topics.signals import signal_from

GOLDEN = Path(__file__).parent / "golden"
# The seed policy as it was when the v2 records were written: the seed policy may change, the
# records may not.
POLICY = load_policy(GOLDEN / "policy.toml")
AT = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def records(version: int) -> list[bytes]:
    return (GOLDEN / f"ledger-v{version}.jsonl").read_bytes().splitlines()


def parking_records() -> list[bytes]:
    return (GOLDEN / "ledger-v3-parking.jsonl").read_bytes().splitlines()


def every_kind() -> Iterator[LedgerEntry]:
    """One entry of every kind, as the v2 fixture holds them (see the module's docstring)."""
    failing = [
        signal_from(
            {
                "id": f"fx-{n}",
                "workspace_id": "ws-fixture",
                "type": "webhook_failed",
                "occurred_at": AT - timedelta(seconds=60 - n),
            }
        )
        for n in range(4)
    ]
    # Made; then suppressed while paused, and deferred past a platform cap of one per interval.
    runs = [("ws-fixture", failing, Mode(), 100, 41)]
    for workspace_id, mode, share in (
        ("ws-paused", Mode(paused=True), 100),
        ("ws-capped", Mode(), 1),
    ):
        first = [
            failing[0].model_copy(update={"workspace_id": w})
            for w in (workspace_id, workspace_id + "-2")
        ]
        runs.append((workspace_id, first, mode, share, 40))
    commands = []
    for _, signals, mode, share, offset in runs:
        states: dict[str, windows.WorkspaceState] = {}
        decided = decide_signals(
            lambda w, states=states: states.setdefault(w, windows.initialize()),
            signals,
            SourcePosition("signals", 3, offset),
            WindowConfig(grace_seconds=60),
            POLICY,
            initial_quota(),
            share,
            mode,
        )
        for decision in decided.decisions:
            yield decision_entry(decision, AT)
        commands += [command_of(d) for d in decided.decisions]
    yield folded_entry(len(failing), SourcePosition("signals", 3, 41), AT)
    command = commands[0]
    assert command is not None
    yield started_entry(command, AT, AT + timedelta(seconds=30), "worker-a")
    retry_at = AT + timedelta(seconds=2)
    yield failed_entry(command, AT, RetryableError("provider answered 503"), retry_at)
    yield deferred_entry(command, AT, "webhooks", AT + timedelta(seconds=20))
    yield succeeded_entry(command, AT, {"delivered": True, "status": 200})
    yield skipped_entry(command, AT, "dry_run")
    tags = frozenset({"gdpr", "billing"})
    yield approval_requested_entry(command, AT, tags, "retry_webhook for workspace ws-fixture")
    yield verdict_entry(command, AT, True, "alice", "looked fine")
    yield verdict_entry(command, AT, False, "bob", "not now")
    last = command.model_copy(update={"attempt": 5})
    yield dead_lettered_entry(last, AT, TerminalError("endpoint gone"))
    yield breaker_entry("webhooks", "open", 5, "worker-a", AT)
    yield breaker_entry("webhooks", "half_open", 5, "worker-a", AT)
    yield breaker_entry("webhooks", "closed", 0, "worker-a", AT)
    invalid = Rejection(
        "invalid: attributes.status_code: not an integer", b'{"workspace_id":"ws-fixture"}', 2
    )
    yield rejection_entry(invalid, SourcePosition("signals", 3, 42), AT)
    unreadable = Rejection("undecodable: not UTF-8 JSON", b"\xff")
    yield rejection_entry(unreadable, SourcePosition("signals", 3, 43), AT)
    mode_after = {"paused": False, "dry_run": False}
    for switch in Switch:
        request = OperatorSwitch(
            request_id=f"op-{switch.value}",
            switch=switch,
            by="alice",
            reason="maintenance",
            requested_at=AT,
        )
        yield switch_entry(request, 3, {**mode_after, "paused": switch is Switch.PAUSE}, AT)
    anonymous = OperatorSwitch(request_id="op-anon", switch=Switch.RESUME, requested_at=AT)
    yield switch_entry(anonymous, 3, mode_after, AT)
    dead = DeadLetter(1, 7, last, "TerminalError", "endpoint gone", AT, 5)
    yield reissue(dead, AT, "alice").entry


def parking_kinds() -> Iterator[LedgerEntry]:
    """A workspace's parking, as golden/ledger-v3-parking.jsonl holds it: a dead letter parks
    ws-fixture, a command is held behind it, an operator releases it; two more parkings end by
    their TTL and by a drop."""

    def command(n: int) -> Command:
        return Command(
            command_id=f"cmd-park-{n}",
            decision_id=f"dec-park-{n}",
            workspace_id="ws-fixture",
            action=Action.RUN_PROVISIONING,
            priority=Priority.MEDIUM,
            rule_id="seed.provisioning_needed",
            policy_version="p-golden",
            signal_ids=(f"fx-park-{n}",),
            correlation_id=f"fx-park-{n}",
        )

    dead = dead_lettered_entry(command(1), AT, TerminalError("platform answered 422"))
    yield ledger_entries.parked_entry(dead, AT, 86_400, 0, AT)
    yield ledger_entries.held_entry(command(2), "cmd-park-1", 1, AT)
    release = ParkingRelease(
        request_id="op-release",
        workspace_id="ws-fixture",
        by="alice",
        reason="platform fixed",
        requested_at=AT,
    )
    yield ledger_entries.released_entry("ws-fixture", "cmd-park-1", AT, release, 1, AT)
    yield ledger_entries.released_entry("ws-fixture", "cmd-park-3", AT, None, 2, AT)
    drop = release.model_copy(update={"request_id": "op-drop", "drop": True, "reason": None})
    yield ledger_entries.released_entry("ws-fixture", "cmd-park-4", AT, drop, 1, AT)


def sealed(entries: Iterator[LedgerEntry], version: int = 3) -> list[bytes]:
    """The records, each entry sealed onto its chain as a writer of `version` writes them on
    partition 3."""
    heads: dict[str, str] = {}
    written = []
    for built in entries:
        entry = built.model_copy(update={"schema_version": version})
        chain = chain_of_entry(entry, 3)
        record, heads[chain] = seal(entry, heads.get(chain), None)
        written.append(record)
    return written


def test_todays_builders_write_the_v3_records_byte_for_byte() -> None:
    """Given one entry of every kind built today, when sealed, then the records are the v3
    golden records exactly."""
    assert sealed(every_kind()) == records(3)


def test_todays_builders_as_version_2_write_the_v2_records_byte_for_byte() -> None:
    """Given the same entries marked version 2, when sealed by version 2's chains, then the
    records are the v2 golden records exactly: version 3 changed the chains and nothing else
    of what an entry holds."""
    assert sealed(every_kind(), version=2) == records(2)


def test_todays_builders_write_the_parking_records_byte_for_byte() -> None:
    """Given a workspace's parking built today, when sealed, then the records are the
    golden parking records exactly."""
    assert sealed(parking_kinds()) == parking_records()


@pytest.mark.parametrize("version", [2, 3])
def test_the_golden_records_hold_every_kind(version: int) -> None:
    """Given the golden records, then every kind of entry is among them, with the kinds added
    since in their own files (a new kind needs its record here, and the tests below then read
    it)."""
    later = parking_records() + [
        record
        for name in ("ledger-v3-sweeps.jsonl", "ledger-v3-playbooks.jsonl")
        for record in (GOLDEN / name).read_bytes().splitlines()
    ]
    assert {parse_entry(raw).kind for raw in records(version) + later} == set(LedgerKind)


def test_the_parking_records_read_as_their_models_and_chain() -> None:
    """Given the golden parking records, when read, then each is the model of its kind and
    written again gives back the same bytes, the fast decoder reads the same, they chain on
    the workspace's actions chain, and the released ones say by whom and whether dropped."""
    check = ChainCheck(key=None)
    entries = []
    for offset, raw in enumerate(parking_records()):
        entry = parse_entry(raw)
        entries.append(entry)
        check.add(3, offset, raw)

        assert type(entry).model_fields["kind"].annotation is not LedgerKind
        assert entry.model_dump_json().encode() == raw
        assert decode_entry(raw).payload == entry.payload.model_dump(mode="json")
        assert chain_of_entry(entry, 3) == "actions:ws-fixture"
    assert check.broken == {}
    released = [e.payload for e in entries if e.kind is LedgerKind.WORKSPACE_RELEASED]
    assert [(p.by, p.dropped, p.count) for p in released] == [
        ("alice", False, 1),
        ("ttl", False, 2),
        ("alice", True, 1),
    ]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_golden_record_reads_as_the_model_of_its_kind(version: int) -> None:
    """Given the golden records of a schema version, when read, then each is the model of its
    kind, with its schema version, and written again it gives back the same bytes (versions 2
    and 3)."""
    for raw in records(version):
        entry = parse_entry(raw)

        assert entry.schema_version == version
        assert type(entry).model_fields["kind"].annotation is not LedgerKind
        if version >= 2:
            assert entry.model_dump_json().encode() == raw
        else:
            assert entry.prev_hash is None and entry.hash is None


def test_typed_fields_of_golden_records() -> None:
    """Given the golden records, then readers get typed fields: the failed attempt's error and
    next attempt, the decision's inputs, the fold's source, the switch's mode."""
    for version in (1, 2, 3):
        entries = [parse_entry(raw) for raw in records(version)]
        failed = next(e for e in entries if isinstance(e, ActionFailed))
        made = next(e for e in entries if isinstance(e, DecisionEntry))
        paused = next(e for e in entries if e.kind is LedgerKind.OPERATOR_PAUSED)

        assert failed.payload.error.error_class == "RetryableError"
        assert failed.payload.error.retryable is True
        assert failed.payload.retry_at == AT + timedelta(seconds=2)
        assert made.payload.rule_id == "seed.webhook_failed"
        assert made.payload.input["workspace_id"] == "ws-fixture"
        assert isinstance(paused, OperatorSwitched)
        assert paused.payload.switch is Switch.PAUSE
        assert paused.payload.mode == {"paused": True, "dry_run": False}
    folded = next(e for e in map(parse_entry, records(2)) if isinstance(e, SignalsFolded))
    assert folded.payload.source == ("signals", 3, 41)


@pytest.mark.parametrize("version", [2, 3])
def test_the_golden_records_are_sealed_chains(version: int) -> None:
    """Given the v2 and v3 golden records, when checked as `autopilot ledger verify` checks,
    then no chain is broken (the seal covers the bytes as written)."""
    check = ChainCheck(key=None)
    for offset, raw in enumerate(records(version)):
        check.add(3, offset, raw)

    assert check.broken == {}
    assert check.checked == len(records(version))


def test_version_3_chains_a_workspaces_actions_apart_from_its_decisions() -> None:
    """Given the golden records, then version 2 chains all of a workspace's entries together,
    and version 3 its decisions (the signal stage's) apart from its actions' outcomes (the
    executor's), with rejected input on the shard's chain whichever workspace it names: each
    chain has one writer."""
    chains = {
        version: {
            (entry.kind, entry.workspace_id): chain_of_entry(entry, 3)
            for entry in map(parse_entry, records(version))
        }
        for version in (2, 3)
    }
    made = (LedgerKind.DECISION_MADE, "ws-fixture")
    started = (LedgerKind.ACTION_STARTED, "ws-fixture")
    reissued = (LedgerKind.ACTION_REISSUED, "ws-fixture")
    rejected = (LedgerKind.SIGNAL_REJECTED, "ws-fixture")

    assert [chains[2][k] for k in (made, started, reissued, rejected)] == ["ws-fixture"] * 4
    assert [chains[3][k] for k in (made, started, reissued, rejected)] == [
        "ws-fixture",
        "actions:ws-fixture",
        "actions:ws-fixture",
        "shard:3",
    ]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_fast_decoder_reads_what_the_models_read(version: int) -> None:
    """Given the golden records, then the projections' hand decoder gives the same envelope
    and the same payload as the models do."""
    for raw in records(version):
        model, fast = parse_entry(raw), decode_entry(raw)

        assert (fast.entry_id, fast.kind, fast.workspace_id) == (
            model.entry_id,
            model.kind,
            model.workspace_id,
        )
        assert (fast.correlation_id, fast.causation_id, fast.policy_version) == (
            model.correlation_id,
            model.causation_id,
            model.policy_version,
        )
        assert fast.recorded_at == model.recorded_at
        assert fast.payload == model.payload.model_dump(mode="json")


def test_a_payload_that_does_not_fit_its_kind_is_refused() -> None:
    """Given a v2 record whose payload lacks a field of its kind, or has one of another kind,
    when read, then it is refused naming the field."""
    failed = next(raw for raw in records(2) if b'"kind":"action.failed"' in raw)

    with pytest.raises(ValidationError, match="retry_at"):
        parse_entry(failed.replace(b'"retry_at":', b'"retry_later":'))
    with pytest.raises(ValidationError, match=r"union_tag_invalid|does not match"):
        parse_entry(failed.replace(b'"kind":"action.failed"', b'"kind":"action.unknown"'))
