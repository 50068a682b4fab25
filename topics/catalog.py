"""Autopilot's topics: names, partition counts and configs, in one place.

Every workspace-keyed topic shares one partition count, so a partition is a workspace shard
(shared/DESIGN.md): a workspace's signals, state, commands and ledger entries live on one shard.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SIGNALS = "signals"
SIGNALS_DLQ = "signals.dlq"
CONTROL = "control"
COMMANDS_RETRY = "commands.retry"
COMMANDS_DLQ = "commands.dlq"
APPROVALS = "approvals"
LEDGER = "ledger"
# One command topic per priority lane; executors serve them in this order.
LANES = ("critical", "high", "medium", "low")


def lane_topic(lane: str) -> str:
    """The command topic of a priority lane (without the deployment prefix)."""
    return f"commands.{lane}"


_DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic as Autopilot creates it."""

    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


# The engine stage that folds signals into state and decides (engine/signal_stage.py).
SIGNAL_STAGE = "signals"
# Faust's table (agents/faust_app.py); Faust names a changelog "{app id}-{table}-changelog".
# The executor's memory per workspace: lease, finished commands, approvals (agents/executor.py).
EXECUTIONS_TABLE = "executions"


def stage_changelog(app_id: str, stage: str) -> str:
    """The changelog topic of an engine stage's state (engine/partition_store.py)."""
    return f"{app_id}.{stage}-changelog"


def changelogs(app_id: str, partitions: int) -> list[TopicSpec]:
    """The state's changelog topics, compacted, one partition per shard: the signal stage's
    and the executions table's. Created with the others rather than by Faust at start: a worker
    whose first table write came before the topic Faust had just created was in the cluster's
    metadata crashed ("has 0 partitions")."""
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(stage_changelog(app_id, SIGNAL_STAGE), partitions, compacted),
        TopicSpec(f"{app_id}-{EXECUTIONS_TABLE}-changelog", partitions, compacted),
    ]


def catalog(prefix: str, partitions: int) -> list[TopicSpec]:
    """All of Autopilot's topics for one deployment (prefix) and shard count."""
    retention = {
        SIGNALS: str(7 * _DAY_MS),
        SIGNALS_DLQ: str(30 * _DAY_MS),
        # Operator switches (pause, dry-run), one record per shard per change.
        CONTROL: str(30 * _DAY_MS),
        **{lane_topic(lane): str(7 * _DAY_MS) for lane in LANES},
        # Commands waiting for their next attempt (backoff) or for a circuit breaker to close.
        COMMANDS_RETRY: str(7 * _DAY_MS),
        COMMANDS_DLQ: str(30 * _DAY_MS),
        # Operators' approvals of compliance-tagged commands, keyed by workspace.
        APPROVALS: str(30 * _DAY_MS),
        # The ledger is the source of truth: append-only and never expired by default.
        LEDGER: "-1",
    }
    return [
        TopicSpec(
            f"{prefix}{name}",
            partitions,
            {"cleanup.policy": "delete", "retention.ms": ms},
        )
        for name, ms in retention.items()
    ]
