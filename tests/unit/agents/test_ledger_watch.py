"""How another worker's leased attempt ended, as its ledger entries say (the pure part of the
ledger watch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actions.reconciler import RetryableError
from agents.ledger_watch import _ending
from core.execution_state import Lease
from core.ledger_entries import dead_lettered_entry, failed_entry, succeeded_entry
from tests.support import factories
from topics.ledger import LedgerKind

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LEASE = Lease("cmd-1", 2, "worker-a", T.timestamp(), T.timestamp() + 300)


def test_a_failure_ends_the_attempt_only_when_a_next_attempt_is_scheduled() -> None:
    """Given the leased attempt's failure with a retry scheduled, then it ended as failed; the
    same failure without one is followed by the dead letter, so it has not ended yet; the dead
    letter (and a success) end it; another attempt's failure says nothing of this one."""
    command = factories.command("1", attempt=2)
    error = RetryableError("503")

    assert _ending(failed_entry(command, T, error, T + timedelta(seconds=5)), LEASE) is (
        LedgerKind.ACTION_FAILED
    )
    assert _ending(failed_entry(command, T, error, None), LEASE) is None
    assert _ending(dead_lettered_entry(command, T, error), LEASE) is LedgerKind.ACTION_DEAD_LETTERED
    assert _ending(succeeded_entry(command, T, {}), LEASE) is LedgerKind.ACTION_SUCCEEDED
    earlier = factories.command("1", attempt=1)
    assert _ending(failed_entry(earlier, T, error, T), LEASE) is None
