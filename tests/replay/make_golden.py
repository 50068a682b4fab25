"""Writes the golden ledgers of tests/replay/ (run by hand, never by the tests):

    .venv/bin/python -m tests.replay.make_golden

golden.jsonl is what workers deciding a fixed stream with tests/replay/policy.toml record, as
the ledger holds it (decisions of every verdict, outcomes, a rejection, an operator switch);
tampered.jsonl is the same ledger with two decisions altered after the fact: one's action, and
another's recorded input. The tests replay them; regenerate only on purpose (a new entry
format), and say so in the commit.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from core import windows
from core.codec import Rejection
from core.decide import command_of, decide_signals, initial_quota
from core.ledger_entries import decision_entry, rejection_entry, succeeded_entry
from core.policy import Mode, shard_share
from core.rules import load_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from topics.ledger import DecisionEntry, LedgerEntry, LedgerKind
from topics.shards import Shards
from topics.signals import Signal, SignalType, signal_from

HERE = Path(__file__).parent
PARTITIONS = 4
RECORDED_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 20, 23, 40, tzinfo=UTC)  # crosses a UTC day: budgets reset
TYPES = [
    (SignalType.WEBHOOK_FAILED, {}),
    (SignalType.FOLLOWUP_DUE, {}),
    (SignalType.HEALTH_DEGRADED, {"health_score": 35.0}),
    (SignalType.HEALTH_DEGRADED, {"health_score": 70.0}),
    (SignalType.INTEGRATION_OFFLINE, {}),
    (SignalType.PROVISIONING_NEEDED, {}),
    (SignalType.QUEUE_DEPTH, {"pending": 80}),
    (SignalType.OLDEST_PENDING_AGE, {"age_seconds": 4000.0}),
    (SignalType.PUBLISH_FAILED, {}),
    (SignalType.ERROR_REPORTED, {}),
]


def stream() -> list[Signal]:
    """Twelve workspaces, 400 signals over 40 minutes of event time, fixed by the seed."""
    rng = random.Random(20261121)
    signals = []
    for n in range(400):
        signal_type, attributes = rng.choice(TYPES)
        signals.append(
            signal_from(
                {
                    "id": f"g-{n:04d}",
                    "workspace_id": f"ws-{rng.randrange(12):02d}",
                    "type": signal_type,
                    "occurred_at": T0 + timedelta(seconds=6 * n + rng.randrange(5)),
                    "source": "golden",
                    "attributes": attributes,
                }
            )
        )
    return signals


def ledger() -> list[LedgerEntry]:
    """The entries, shard by shard, records of ten signals each, as workers write them."""
    policy = load_policy(HERE / "policy.toml")
    config = WindowConfig(grace_seconds=60)
    shards = Shards(PARTITIONS)
    per_shard: dict[int, list[Signal]] = {}
    for signal in stream():
        per_shard.setdefault(shards.owner(signal.workspace_id), []).append(signal)
    entries: list[LedgerEntry] = []
    for shard, signals in sorted(per_shard.items()):
        states: dict[str, WorkspaceState] = {}
        quota = initial_quota()
        share = shard_share(policy.limits.platform_cap_per_interval, PARTITIONS, shard)
        for offset, start in enumerate(range(0, len(signals), 10)):
            # The operator paused shard 1 for its fourth record, and switched dry-run on for
            # its fifth: the mode is an input like any other.
            mode = Mode(paused=(shard, offset) == (1, 3), dry_run=(shard, offset) == (1, 4))
            decided = decide_signals(
                lambda w, states=states: states.setdefault(w, windows.initialize()),
                signals[start : start + 10],
                SourcePosition("signals", shard, offset),
                config,
                policy,
                quota,
                share,
                mode,
            )
            for decision in decided.decisions:
                entries.append(decision_entry(decision, RECORDED_AT))
                command = command_of(decision)
                if command is not None and not command.dry_run:
                    entries.append(succeeded_entry(command, RECORDED_AT, {}))
    source = SourcePosition("signals", 0, 99)
    entries.append(
        rejection_entry(Rejection("undecodable: not UTF-8 JSON", b"\xff"), source, RECORDED_AT)
    )
    return entries


def tamper(entries: list[LedgerEntry]) -> list[LedgerEntry]:
    """Alter the first made retry_webhook decision's action, and the first emergency
    decision's recorded health score (as if someone had rewritten why it was made)."""
    tampered = list(entries)
    decisions = [(i, e) for i, e in enumerate(tampered) if isinstance(e, DecisionEntry)]
    for i, entry in decisions:
        if entry.kind is LedgerKind.DECISION_MADE and entry.payload.action == "retry_webhook":
            payload = entry.payload.model_copy(update={"action": "restart_integration"})
            tampered[i] = entry.model_copy(update={"payload": payload})
            break
    for i, entry in decisions:
        if entry.payload.rule_id == "emergency.reported_critical":
            facts = {**entry.payload.input["facts"], "signal.health_score": 90.0}
            inputs = {**entry.payload.input, "facts": facts}
            payload = entry.payload.model_copy(update={"input": inputs})
            tampered[i] = entry.model_copy(update={"payload": payload})
            break
    return tampered


def write(path: Path, entries: list[LedgerEntry]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e.model_dump(mode="json")) + b"\n" for e in entries))


def main() -> None:
    entries = ledger()
    write(HERE / "golden.jsonl", entries)
    write(HERE / "tampered.jsonl", tamper(entries))
    kinds: dict[str, int] = {}
    for entry in entries:
        kinds[entry.kind.value] = kinds.get(entry.kind.value, 0) + 1
    print(f"wrote {len(entries)} entries: {kinds}")


if __name__ == "__main__":
    main()
