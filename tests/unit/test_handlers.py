"""Running a command through its action's handler, and the terminal ledger entry it ends in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.handlers import HANDLERS, ActionError, Outcome, outcome_entry, run_command
from app.errors import AutopilotError
from topics.commands import Action, Command, Priority
from topics.ledger import LedgerKind

RECORDED_AT = datetime(2024, 1, 1, 0, 6, tzinfo=UTC)


def command(action: Action = Action.RETRY_WEBHOOK, **overrides: object) -> Command:
    fields: dict[str, object] = {
        "command_id": "cmd-1",
        "decision_id": "dec-1",
        "workspace_id": "ws-1",
        "action": action,
        "priority": Priority.MEDIUM,
        "rule_id": "seed.webhook_failed",
        "policy_version": "p-abc",
        "signal_ids": ("sig-1",),
        "correlation_id": "sig-1",
    }
    fields.update(overrides)
    return Command.model_validate(fields)


class QuotaExceededError(ActionError):
    """A provider-specific terminal failure, to check the class name is recorded."""


@pytest.mark.parametrize("action", list(Action))
async def test_every_action_has_a_default_handler(action: Action) -> None:
    """Given a command for any action, when run with the default handlers, then it succeeds
    with the note that no provider is configured yet."""
    outcome = await run_command(command(action))

    assert outcome == Outcome({"effect": "none (no provider configured)"})
    assert set(HANDLERS) == set(Action)


async def test_the_handler_of_the_commands_action_is_called_with_the_command() -> None:
    """Given handlers for two actions, when a retry_webhook command runs, then only the
    retry_webhook handler is called, with that command, and its outcome is returned."""
    seen: list[tuple[str, str]] = []

    async def retry(cmd: Command) -> Outcome:
        seen.append(("retry", cmd.command_id))
        return Outcome({"status": 200})

    async def restart(cmd: Command) -> Outcome:
        seen.append(("restart", cmd.command_id))
        return Outcome()

    handlers = {Action.RETRY_WEBHOOK: retry, Action.RESTART_INTEGRATION: restart}

    outcome = await run_command(command(Action.RETRY_WEBHOOK, command_id="cmd-9"), handlers)

    assert outcome == Outcome({"status": 200})
    assert seen == [("retry", "cmd-9")]


async def test_an_action_without_a_handler_is_a_terminal_action_error() -> None:
    """Given no handler for the command's action, then ActionError names the action."""
    with pytest.raises(ActionError) as raised:
        await run_command(command(Action.SEND_FOLLOWUP), {})

    assert str(raised.value) == "no handler registered for action send_followup"
    assert isinstance(raised.value, AutopilotError)


async def test_a_handlers_action_error_reaches_the_caller() -> None:
    """Given a handler that fails terminally, then its ActionError subclass propagates."""

    async def failing(cmd: Command) -> Outcome:
        raise QuotaExceededError("provider quota exhausted, retry after the reset")

    with pytest.raises(QuotaExceededError, match="provider quota exhausted"):
        await run_command(command(), {Action.RETRY_WEBHOOK: failing})


def test_a_success_becomes_an_action_succeeded_entry() -> None:
    """Given a command that succeeded, then its entry is action.succeeded with the outcome
    detail, caused by the decision and correlated with the triggering signal."""
    entry = outcome_entry(command(attempt=2), RECORDED_AT, Outcome({"status": 200}), None)

    assert entry.kind is LedgerKind.ACTION_SUCCEEDED
    assert entry.workspace_id == "ws-1"
    assert entry.correlation_id == "sig-1"
    assert entry.causation_id == "dec-1"
    assert entry.policy_version == "p-abc"
    assert entry.recorded_at == RECORDED_AT
    assert entry.payload == {
        "command_id": "cmd-1",
        "action": "retry_webhook",
        "priority": "medium",
        "rule_id": "seed.webhook_failed",
        "attempt": 2,
        "detail": {"status": 200},
    }


def test_a_failure_becomes_an_action_failed_entry_with_class_and_reason() -> None:
    """Given a command that failed terminally, then its entry is action.failed with the
    error class and reason and no detail."""
    error = QuotaExceededError("provider quota exhausted")

    entry = outcome_entry(command(), RECORDED_AT, None, error)

    assert entry.kind is LedgerKind.ACTION_FAILED
    assert entry.payload == {
        "command_id": "cmd-1",
        "action": "retry_webhook",
        "priority": "medium",
        "rule_id": "seed.webhook_failed",
        "attempt": 1,
        "error": {"class": "QuotaExceededError", "reason": "provider quota exhausted"},
    }


def test_a_failure_reason_is_truncated_to_400_chars() -> None:
    """Given an error with a very long message, then the recorded reason is 400 chars."""
    entry = outcome_entry(command(), RECORDED_AT, None, ActionError("x" * 1000))

    assert entry.payload["error"] == {"class": "ActionError", "reason": "x" * 400}


def test_outcome_entry_ids_are_deterministic_and_differ_by_outcome() -> None:
    """Given the same command, then the same outcome gives the same entry id on a retry of
    the recording, and success and failure give different ids."""
    ok = outcome_entry(command(), RECORDED_AT, Outcome(), None)
    ok_again = outcome_entry(command(), datetime(2025, 1, 1, tzinfo=UTC), Outcome(), None)
    failed = outcome_entry(command(), RECORDED_AT, None, ActionError("boom"))
    other = outcome_entry(command(command_id="cmd-2"), RECORDED_AT, Outcome(), None)

    assert ok.entry_id == ok_again.entry_id
    assert ok.entry_id.startswith("out-")
    assert len({ok.entry_id, failed.entry_id, other.entry_id}) == 3
