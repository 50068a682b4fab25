"""Fold and decide: a shard's signals through their workspaces' windows and the policy, one
by one; what the state and the shard's slots remember; the ledger entry and the command of a
decision; and how records are cut never changing a verdict."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest

from core import windows
from core.decide import (
    Decided,
    ShardQuota,
    command_of,
    decide_signals,
    forget_old_slots,
    initial_quota,
)
from core.ledger_entries import decision_entry, decision_payload
from core.policy import (
    Decision,
    DecisionKind,
    Inputs,
    Mode,
    command_id_of,
    decision_id_of,
    evaluate,
)
from core.rules import Policy, parse_policy
from core.windows import SourcePosition, WindowConfig, WorkspaceState
from tests.support.factories import E0, SEED_POLICY, signal_at
from topics.commands import Action, Command, Priority
from topics.ledger import DecisionEntry, LedgerKind, parse_entry
from topics.signals import Signal, SignalType

DAY_19723 = 19_723  # E0 // 86 400
HOUR = 3600
CONFIG = WindowConfig(grace_seconds=60)
SOURCE = SourcePosition("signals", 5, 77)
RECORDED_AT = datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)
WEBHOOK = SignalType.WEBHOOK_FAILED
MADE, DEFERRED, SUPPRESSED = DecisionKind.MADE, DecisionKind.DEFERRED, DecisionKind.SUPPRESSED

# Retries may repeat at once, one slot per minute and shard, a budget of 2 a day.
TIGHT = parse_policy(
    """
[limits]
workspace_daily_budget = 2
platform_cap_per_interval = 1
interval_seconds = 60
defer_max_intervals = 1

[[rules]]
id = "retry"
on = ["webhook_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 0
""",
    "tight.toml",
)


def sig(
    signal_id: str,
    at: float,
    signal_type: SignalType = WEBHOOK,
    workspace_id: str = "ws-1",
    **attributes: Any,
) -> Signal:
    return signal_at(signal_id, at, signal_type, workspace_id, **attributes)


class Shard:
    """One shard's table: workspace states and the slots under the cap, kept across records."""

    def __init__(self, policy: Policy = SEED_POLICY, share: int = 50) -> None:
        self.policy = policy
        self.share = share
        self.states: dict[str, WorkspaceState] = {}
        self.quota: ShardQuota = initial_quota()

    def state_of(self, workspace_id: str) -> WorkspaceState:
        return self.states.setdefault(workspace_id, windows.initialize())

    def record(self, signals: list[Signal], mode: Mode | None = None) -> Decided:
        """Decide one record's signals, as the aggregate agent does."""
        return decide_signals(
            self.state_of,
            signals,
            SOURCE,
            CONFIG,
            self.policy,
            self.quota,
            self.share,
            mode or Mode(),
        )

    def records(self, batches: list[list[Signal]], forget: bool = False) -> list[Decision]:
        """Decide record after record; `forget` drops old slots after each, as live does."""
        decisions = []
        for batch in batches:
            decisions.extend(self.record(batch).decisions)
            if forget:
                forget_old_slots(self.quota, self.policy)
        return decisions


def summary(decisions: list[Decision]) -> list[tuple[str, str, str, DecisionKind]]:
    return [(d.inputs.signal_id, d.workspace_id, d.rule_id, d.kind) for d in decisions]


# --- folding and deciding ---------------------------------------------------------------------


def test_each_signal_is_decided_on_the_state_as_of_that_signal() -> None:
    """Given seven errors in one record, then the errors rule fires on the fifth, with the
    hour's count as of the fifth (not of the whole record)."""
    errors = [sig(f"e{n}", n, SignalType.ERROR_REPORTED) for n in range(7)]

    [decision] = Shard().record(errors).decisions

    assert (decision.inputs.signal_id, decision.rule_id) == ("e4", "monitor.errors_high")
    assert decision.inputs.facts["hour.error_reported"] == 5
    assert decision.inputs.at == E0 + 4


def test_a_record_returns_its_decisions_the_states_it_touched_and_what_it_set_aside() -> None:
    """Given a record with a duplicate and a late signal for ws-1 and one signal for ws-2,
    then only the counted signals are decided, the touched states are returned, and the
    duplicate and late signals are counted."""
    shard = Shard()
    shard.state_of("ws-9")
    signals = [
        sig("a", 0),
        sig("a", 0),
        sig("c", 400, SignalType.FOLLOWUP_DUE),
        sig("d", 200, SignalType.PROVISIONING_NEEDED),
        sig("b", 10, SignalType.INTEGRATION_OFFLINE, workspace_id="ws-2"),
    ]

    decided = shard.record(signals)

    assert summary(decided.decisions) == [
        ("a", "ws-1", "seed.webhook_failed", MADE),
        ("c", "ws-1", "seed.followup_due", MADE),
        ("b", "ws-2", "seed.integration_offline", MADE),
    ]
    assert (decided.duplicates, decided.late) == (1, 1)
    assert set(decided.states) == {"ws-1", "ws-2"}
    assert decided.states["ws-1"] is shard.states["ws-1"]
    assert {d.inputs.source for d in decided.decisions} == {SOURCE}


def test_the_state_remembers_what_was_issued_and_the_days_budget() -> None:
    """Given two retries made and a third suppressed by the budget of 2, then the state's
    policy memory holds the last suppression of the action, the day and two actions used (a
    suppressed decision neither starts the cooldown nor uses budget); the issues themselves
    are already forgotten, as the rule's cooldown is 0."""
    shard = Shard(TIGHT, share=10)

    decided = shard.record([sig("a", 0), sig("b", 1), sig("c", 2)])

    assert [d.kind for d in decided.decisions] == [MADE, MADE, SUPPRESSED]
    assert shard.states["ws-1"]["policy"] == {
        "issued": {},
        "held": {"retry_webhook": E0 + 2},
        "day": DAY_19723,
        "used": 2,
    }


@pytest.mark.parametrize(("later", "remembered"), [(HOUR, True), (HOUR + 1, False)])
def test_an_issue_is_forgotten_once_no_rule_can_be_cooling_down_on_it(
    later: int, remembered: bool
) -> None:
    """Given a retry at 0 and a heartbeat in a later record, then the retry is remembered up
    to the longest cooldown of the seed policy (an hour) and forgotten after it."""
    shard = Shard()
    shard.record([sig("a", 0)])

    shard.record([sig("h", later, SignalType.HEARTBEAT)])

    expected = {"retry_webhook": E0} if remembered else {}
    assert shard.states["ws-1"]["policy"]["issued"] == expected


def test_the_shard_remembers_which_decision_took_which_slot() -> None:
    """Given three workspaces' retries in one minute with one slot a minute, then the first
    takes this minute, the second the next one, the third is suppressed and takes none."""
    shard = Shard(TIGHT, share=1)
    assert shard.quota == {"v": 1, "counts": {}, "slots": {}, "newest": None}
    signals = [sig("s", 10 + n, workspace_id=f"ws-{n}") for n in range(3)]

    decisions = shard.record(signals).decisions

    assert [(d.kind, d.not_before) for d in decisions] == [
        (MADE, None),
        (DEFERRED, E0 + 60),
        (SUPPRESSED, None),
    ]
    assert shard.quota == {
        "v": 1,
        "counts": {str(E0): 1, str(E0 + 60): 1},
        "slots": {decisions[0].decision_id: E0, decisions[1].decision_id: E0 + 60},
        "newest": E0 + 12,
    }


def test_old_slots_are_forgotten_an_hour_behind_the_newest_decision() -> None:
    """Given slots taken at 0 and at 61 min, then forget_old_slots drops the intervals (and
    their decisions) more than an hour before the newest decision, and keeps the rest."""
    shard = Shard(TIGHT, share=1)
    [first] = shard.record([sig("a", 0)]).decisions
    [second] = shard.record([sig("b", 59 * 60, workspace_id="ws-2")]).decisions
    [third] = shard.record([sig("c", 61 * 60, workspace_id="ws-3")]).decisions

    forget_old_slots(shard.quota, shard.policy)

    assert shard.quota == {
        "v": 1,
        "counts": {str(E0 + 59 * 60): 1, str(E0 + 61 * 60): 1},
        "slots": {second.decision_id: E0 + 59 * 60, third.decision_id: E0 + 61 * 60},
        "newest": E0 + 61 * 60,
    }
    assert first.kind is MADE


def test_forgetting_old_slots_never_changes_a_decision() -> None:
    """Given a workspace far behind the shard's newest decision, whose minute's only slot was
    taken over an hour before that, then it is made whether the old slots were dropped
    between records (live) or not (offline replay): slots past the memory count as free."""
    batches = [
        [sig("a", 30)],
        [sig("b", 2 * HOUR, workspace_id="ws-2")],
        [sig("c", 40, workspace_id="ws-3")],
    ]

    live = Shard(TIGHT, share=1).records(batches, forget=True)
    offline = Shard(TIGHT, share=1).records(batches, forget=False)

    assert [(d.inputs.signal_id, d.kind) for d in live] == [
        ("a", MADE),
        ("b", MADE),
        ("c", MADE),
    ]
    assert live == offline


# --- records do not change verdicts ----------------------------------------------------------

STREAM = [
    sig("w1", 0),
    sig("h1", 10, SignalType.HEALTH_DEGRADED, health_score=20),
    sig("w2", 20, workspace_id="ws-2"),
    sig("q1", 30, SignalType.QUEUE_DEPTH, pending=80),
    sig("w3", 400),
    sig("hb", 4000, SignalType.HEARTBEAT),
    sig("f1", 4001, SignalType.FOLLOWUP_DUE),
    sig("w4", 4002, workspace_id="ws-2"),
]


def verdict(decision: Decision) -> dict[str, Any]:
    """A decision without its recorded inputs: what it decided."""
    payload = decision_payload(decision).model_dump()
    del payload["input"]
    return {**payload, "kind": decision.kind, "version": decision.policy_version}


@pytest.mark.parametrize("cuts", [[], [1], [3, 6], [1, 2, 3, 4, 5, 6, 7], [6]])
def test_how_signals_are_cut_into_records_never_changes_a_verdict(cuts: list[int]) -> None:
    """Given the same shard-ordered signals in one record or cut into several, then every
    decision's verdict (id, kind, rule, lane, command, reason, ...) is the same."""
    bounds = [0, *cuts, len(STREAM)]
    batches = [STREAM[start:end] for start, end in pairwise(bounds)]

    whole = Shard(SEED_POLICY, share=2).records([STREAM])
    split = Shard(SEED_POLICY, share=2).records(batches)

    assert [verdict(d) for d in split] == [verdict(d) for d in whole]
    assert [d.rule_id for d in whole] == [
        "seed.webhook_failed",
        "emergency.reported_critical",
        "seed.webhook_failed",
        "monitor.queue_saturated",
        "seed.webhook_failed",
        "seed.followup_due",
        "seed.webhook_failed",
    ]


def test_how_signals_are_cut_into_records_never_changes_the_recorded_inputs() -> None:
    """Given a retry at 0, a heartbeat an hour and a bit later, then a follow-up, in one
    record or with a cut before the follow-up, then the follow-up's decision records the
    same inputs both ways."""
    whole = Shard().records([STREAM[:1] + STREAM[5:7]])
    split = Shard().records([STREAM[:1] + STREAM[5:6], STREAM[6:7]])

    assert [d.inputs.issued for d in split] == [d.inputs.issued for d in whole]


def test_a_signal_id_seen_again_in_a_later_bucket_is_not_deferred_into_the_past() -> None:
    """Given a webhook failure with id "a" at 0 and another with the same id 10 minutes later
    (a new signal to the windows: another 5-minute bucket), then no decision waits for an
    interval before its own, no two decisions share a command id, and every decision is
    derived again from the inputs it recorded."""
    decisions = Shard().record([sig("a", 0), sig("a", 600)]).decisions

    assert all(d.not_before is None or d.not_before > d.inputs.at for d in decisions)
    assert len({d.command_id for d in decisions}) == len(decisions)
    assert all(evaluate(SEED_POLICY, d.inputs) == [d] for d in decisions)


# --- the ledger entry and the command ---------------------------------------------------------

INPUTS = Inputs(
    workspace_id="ws-1",
    signal_id="sig-7",
    signal_type="webhook_failed",
    signal_at=E0 + 20,
    source=SOURCE,
    at=E0 + 30,
    facts={"signal.type": "webhook_failed", "signal.status": 502, "health.score": 100},
    issued={"send_followup": E0},
    held={},
    day_used=1,
    quota_share=1,
    quota_used={E0: 1},
    mode=Mode(dry_run=True),
)
INPUT_JSON = {
    "workspace_id": "ws-1",
    "signal": {
        "id": "sig-7",
        "type": "webhook_failed",
        "at": E0 + 20,
        "source": ["signals", 5, 77],
    },
    "at": E0 + 30,
    "facts": {"signal.type": "webhook_failed", "signal.status": 502, "health.score": 100},
    "issued": {"send_followup": E0},
    "held": {},
    "day_used": 1,
    "quota": {"share": 1, "used": {str(E0): 1}},
    "mode": {"paused": False, "dry_run": True},
}
DECISION_ID = decision_id_of("retry", "ws-1", "sig-7", E0 + 20)
COMMAND_ID = command_id_of(DECISION_ID)


def only(decide: Callable[[], list[Decision]]) -> Decision:
    [decision] = decide()
    return decision


def test_a_deferred_decision_is_recorded_with_its_verdict_and_inputs() -> None:
    """Given a dry-run retry deferred to the next minute, then its ledger entry is a
    decision.deferred keyed by the decision id, caused by the signal, naming the policy,
    with the verdict and every input it was derived from."""
    decision = only(lambda: evaluate(TIGHT, INPUTS))

    entry = decision_entry(decision, RECORDED_AT)

    assert entry == DecisionEntry(
        entry_id=DECISION_ID,
        kind=LedgerKind.DECISION_DEFERRED,
        workspace_id="ws-1",
        correlation_id="sig-7",
        causation_id="sig-7",
        policy_version=TIGHT.version,
        recorded_at=RECORDED_AT,
        payload={
            "decision_id": DECISION_ID,
            "rule_id": "retry",
            "action": "retry_webhook",
            "priority": "medium",
            "rank": 6,
            "command_id": COMMAND_ID,
            "not_before": E0 + 60,
            "reason": f"platform cap reached for interval {E0}: deferred to the interval "
            f"starting {E0 + 60}",
            "dry_run": True,
            "input": INPUT_JSON,
        },
    )


def test_a_deferred_decision_issues_a_command_that_waits_for_its_interval() -> None:
    """Given the deferred dry-run retry, then its command carries the derived ids, the lane,
    the rule and policy, the signal, not_before the interval's start, and dry_run."""
    command = command_of(only(lambda: evaluate(TIGHT, INPUTS)))

    assert command == Command(
        command_id=COMMAND_ID,
        decision_id=DECISION_ID,
        workspace_id="ws-1",
        action=Action.RETRY_WEBHOOK,
        priority=Priority.MEDIUM,
        rule_id="retry",
        policy_version=TIGHT.version,
        signal_ids=("sig-7",),
        correlation_id="sig-7",
        not_before=datetime(2024, 1, 1, 0, 1, tzinfo=UTC),
        dry_run=True,
    )


def test_a_made_decision_is_recorded_and_issues_a_command_to_run_now() -> None:
    """Given a live retry with room under the cap, then the entry is decision.made with no
    not_before or reason, and the command may run at once."""
    made = only(lambda: evaluate(TIGHT, replace(INPUTS, quota_used={})))

    entry = decision_entry(made, RECORDED_AT)
    command = command_of(made)

    assert entry.kind is LedgerKind.DECISION_MADE
    verdict = entry.payload.model_dump(include={"command_id", "not_before", "reason", "dry_run"})
    assert verdict == {
        "command_id": COMMAND_ID,
        "not_before": None,
        "reason": None,
        "dry_run": True,
    }
    assert command is not None
    assert (command.command_id, command.not_before, command.priority) == (
        COMMAND_ID,
        None,
        Priority.MEDIUM,
    )


def test_a_suppressed_decision_is_recorded_without_a_command() -> None:
    """Given a retry suppressed by the spent budget, then its entry is decision.suppressed
    with no command id and the budget as the reason, and it issues no command."""
    spent = replace(INPUTS, day_used=2, mode=Mode())
    suppressed = only(lambda: evaluate(TIGHT, spent))

    entry = decision_entry(suppressed, RECORDED_AT)

    assert (entry.entry_id, entry.kind) == (DECISION_ID, LedgerKind.DECISION_SUPPRESSED)
    verdict = entry.payload.model_dump(include={"command_id", "not_before", "reason", "dry_run"})
    assert verdict == {
        "command_id": None,
        "not_before": None,
        "reason": f"workspace daily budget spent: 2 of 2 actions on day {DAY_19723}",
        "dry_run": False,
    }
    assert entry.payload.input["day_used"] == 2
    assert command_of(suppressed) is None


def test_the_recorded_entry_re_derives_the_decision() -> None:
    """Given the deferred decision's ledger entry read back from JSON, then evaluating its
    recorded input gives the same decision."""
    decision = only(lambda: evaluate(TIGHT, INPUTS))
    entry = parse_entry(decision_entry(decision, RECORDED_AT).model_dump_json())

    assert evaluate(TIGHT, Inputs.from_json(entry.payload.input)) == [decision]
