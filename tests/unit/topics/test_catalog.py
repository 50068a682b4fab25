"""The topic catalog: one shard count for every topic, and a ledger that never expires."""

from __future__ import annotations

import pytest

from topics.catalog import catalog

DAY_MS = 24 * 3600 * 1000


@pytest.mark.parametrize("partitions", [1, 8, 24])
def test_every_topic_shares_the_partition_count(partitions: int) -> None:
    """Given a shard count, then every topic has exactly that many partitions, so a
    workspace's signals, commands and ledger entries live on the same shard."""
    specs = catalog("", partitions)

    assert {spec.partitions for spec in specs} == {partitions}


def test_the_catalog_names_every_topic_with_the_deployment_prefix() -> None:
    """Given a prefix, then the eleven topics are named with it, in pipeline order: signals,
    their dead letters, the operator's control topic, one command topic per lane (critical
    first), the retries, the commands' dead letters, the approvals and the ledger."""
    names = [spec.name for spec in catalog("staging.", 8)]

    assert names == [
        "staging.signals",
        "staging.signals.dlq",
        "staging.control",
        "staging.commands.critical",
        "staging.commands.high",
        "staging.commands.medium",
        "staging.commands.low",
        "staging.commands.retry",
        "staging.commands.dlq",
        "staging.approvals",
        "staging.ledger",
    ]


def test_the_ledger_is_kept_forever_and_other_topics_expire() -> None:
    """Given the catalog, then the ledger has retention.ms=-1 and every other topic a
    finite retention, dead letters kept longer than their source topics."""
    retention = {spec.name: spec.config["retention.ms"] for spec in catalog("", 8)}

    assert retention == {
        "signals": str(7 * DAY_MS),
        "signals.dlq": str(30 * DAY_MS),
        "control": str(30 * DAY_MS),
        "commands.critical": str(7 * DAY_MS),
        "commands.high": str(7 * DAY_MS),
        "commands.medium": str(7 * DAY_MS),
        "commands.low": str(7 * DAY_MS),
        "commands.retry": str(7 * DAY_MS),
        "commands.dlq": str(30 * DAY_MS),
        "approvals": str(30 * DAY_MS),
        "ledger": "-1",
    }


def test_no_topic_is_compacted() -> None:
    """Given the catalog, then every topic uses delete cleanup (the ledger is append-only:
    compaction would drop all but the last entry per workspace)."""
    assert {spec.config["cleanup.policy"] for spec in catalog("", 8)} == {"delete"}


def test_catalog_configs_are_not_shared_between_topics() -> None:
    """Given a catalog, when one topic's config is edited, then no other topic changes."""
    specs = catalog("", 8)

    specs[0].config["retention.ms"] = "1"

    assert [spec.config["retention.ms"] for spec in specs[1:]] == [
        str(30 * DAY_MS),
        str(30 * DAY_MS),
        str(7 * DAY_MS),
        str(7 * DAY_MS),
        str(7 * DAY_MS),
        str(7 * DAY_MS),
        str(7 * DAY_MS),
        str(30 * DAY_MS),
        str(30 * DAY_MS),
        "-1",
    ]
