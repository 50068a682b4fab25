"""Builders and constants shared by the tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core.rules import seed_policy
from topics.commands import Action, Command, Priority
from topics.ledger import LEDGER_ENTRY, AnyLedgerEntry, LedgerKind
from topics.signals import Signal, SignalType, signal_from

# The policy shipped with Autopilot, as every test that does not bring its own uses it.
SEED_POLICY = seed_policy()

# The unit tests' epoch: a multiple of 60 and of 86,400 (day 19,723 since 1970), so minute,
# hour and day windows all start on it.
T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200


def signal_at(
    signal_id: str,
    at: float,
    signal_type: SignalType,
    workspace_id: str = "ws-1",
    **attributes: Any,
) -> Signal:
    """A signal `at` seconds after T0."""
    return signal_from(
        {
            "id": signal_id,
            "workspace_id": workspace_id,
            "type": signal_type,
            "occurred_at": T0 + timedelta(seconds=at),
            "attributes": attributes,
        }
    )


def command(
    name: str,
    workspace_id: str = "ws-1",
    action: Action = Action.RUN_PROVISIONING,
    priority: Priority = Priority.MEDIUM,
    **fields: Any,
) -> Command:
    """Command `cmd-NAME` of a workspace, decided as `dec-NAME` on signal `sig-NAME` (rule and
    policy version of tests unless `fields` say otherwise)."""
    return Command(
        command_id=f"cmd-{name}",
        decision_id=f"dec-{name}",
        workspace_id=workspace_id,
        action=action,
        priority=priority,
        rule_id=fields.pop("rule_id", "test.rule"),
        policy_version=fields.pop("policy_version", "p-test"),
        signal_ids=(f"sig-{name}",),
        correlation_id=f"sig-{name}",
        **fields,
    )


# Credentials of the in-process sandbox platform in unit tests: test values, not secrets.
CONTROL_TOKEN = "control-token-for-tests"
SIGNING_KEY = "signing-key-for-tests"
LLM_KEY = "llm-key-for-tests"


def ledger_entry(kind: LedgerKind, payload: dict[str, Any], **envelope: Any) -> AnyLedgerEntry:
    """An entry of `kind` from plain fields, read as the model of its kind (as readers do):
    of ws-1, its own correlation and cause, recorded at T0 unless `envelope` says otherwise."""
    fields = {
        "entry_id": "e-1",
        "workspace_id": "ws-1",
        "correlation_id": "c-1",
        "causation_id": "c-1",
        "recorded_at": T0,
        **envelope,
        "kind": kind,
        "payload": payload,
    }
    return LEDGER_ENTRY.validate_python(fields)


def decision_payload(decision_id: str = "dec-1", **overrides: Any) -> dict[str, Any]:
    """A decision.made payload: rule webhook-retry issued cmd-1 on no recorded inputs."""
    return {
        "decision_id": decision_id,
        "rule_id": "webhook-retry",
        "action": "retry_webhook",
        "priority": "medium",
        "rank": 6,
        "command_id": "cmd-1",
        "not_before": None,
        "reason": None,
        "dry_run": False,
        "input": {},
        **overrides,
    }


def command_payload(command_id: str = "cmd-1", **details: Any) -> dict[str, Any]:
    """The payload of an action.* entry about attempt 1 of cmd-1, then its own details."""
    return {
        "command_id": command_id,
        "action": "retry_webhook",
        "priority": "medium",
        "rule_id": "webhook-retry",
        "attempt": 1,
        **details,
    }
