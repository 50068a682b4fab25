"""The policy's `[parking]` table: which dead letters park a workspace and for how long; a
policy without one keeps the version it had before the table existed."""

from __future__ import annotations

import pytest

from core.rules import Parking, PolicyError, parse_policy
from topics.commands import Action

RULE = """
[[rules]]
id = "seed.webhook_failed"
on = ["webhook_failed"]
action = "retry_webhook"
priority = 6
cooldown_seconds = 300
"""


def test_without_a_parking_table_every_action_parks_for_a_day() -> None:
    """Given a policy without [parking], then every action's dead letter parks its workspace,
    and the parking expires after 86400 s."""
    parking = parse_policy(RULE, "test").spec.parking

    assert parking == Parking()
    assert set(parking.actions) == set(Action)
    assert parking.ttl_seconds == 86_400


def test_a_parking_table_names_the_actions_and_the_ttl() -> None:
    """Given [parking] with two actions and a TTL of 0, then only those park, never expiring,
    and the policy is another version; a table spelling out the defaults is the same one."""
    text = RULE + '\n[parking]\nactions = ["run_provisioning", "issue_credit"]\nttl_seconds = 0\n'
    defaults = RULE + "\n[parking]\nttl_seconds = 86400\n"

    policy = parse_policy(text, "test")

    assert policy.spec.parking.actions == (Action.RUN_PROVISIONING, Action.ISSUE_CREDIT)
    assert policy.spec.parking.ttl_seconds == 0
    assert policy.version != parse_policy(RULE, "test").version
    assert parse_policy(defaults, "test").version == parse_policy(RULE, "test").version


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('actions = ["launch_rockets"]', "parking.actions"),
        ("ttl_seconds = -1", "parking.ttl_seconds"),
        ("parks = true", "parking.parks"),
    ],
)
def test_a_wrong_parking_table_is_refused_naming_the_field(table: str, problem: str) -> None:
    """Given [parking] with an unknown action, a negative TTL or an unknown key, when loaded,
    then the policy is refused naming the field."""
    with pytest.raises(PolicyError, match=problem):
        parse_policy(RULE + f"\n[parking]\n{table}\n", "test")
