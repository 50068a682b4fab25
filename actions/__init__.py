"""The registry of actions: one line per action, its handler, provider and compliance tags.

A new action joins with one small module beside this one and one `register` line below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from actions import checks, credit, followup, platform, webhook
from actions.http import CONTROL_API
from actions.reconciler import ActionSpec, Describe, Handler, TerminalError
from topics.commands import Action

_REGISTRY: dict[Action, ActionSpec] = {}
REGISTRY: Mapping[Action, ActionSpec] = _REGISTRY


def register(
    action: Action,
    provider: str,
    handler: Handler,
    describe: Describe,
    *,
    tags: Iterable[str] = (),
    registry: dict[Action, ActionSpec] = _REGISTRY,
) -> ActionSpec:
    """Register `action`'s handler; an unknown tag or a second registration is a ValueError."""
    tagged = frozenset(tags)
    if not tagged <= ActionSpec.TAGS:
        raise ValueError(f"unknown tags {sorted(tagged - ActionSpec.TAGS)} for {action.value}")
    if action in registry:
        raise ValueError(f"action {action.value} is already registered")
    spec = ActionSpec(handler=handler, provider=provider, describe=describe, tags=tagged)
    registry[action] = spec
    return spec


def spec_of(action: Action, registry: Mapping[Action, ActionSpec] = REGISTRY) -> ActionSpec:
    """The registered spec of `action`; TerminalError if none is."""
    spec = registry.get(action)
    if spec is None:
        raise TerminalError(f"no handler registered for action {action.value}")
    return spec


# action, the provider whose breaker guards it, its handler and dry-run description, tags.
register(Action.RUN_PROVISIONING, CONTROL_API, *platform.operation("provision"))
register(
    Action.RESTART_INTEGRATION,
    CONTROL_API,
    *platform.operation("restart-integration", target_field="integration"),
)
register(Action.REBALANCE_QUEUE, CONTROL_API, *platform.operation("rebalance-queue"))
register(Action.FORCE_PUBLISH, CONTROL_API, *platform.operation("force-publish"))
register(Action.RETRY_FAILED, CONTROL_API, *platform.operation("retry-failed"))
register(Action.TRIGGER_RECONCILIATION, CONTROL_API, *platform.operation("reconcile"))
register(Action.SEND_FOLLOWUP, CONTROL_API, followup.send_followup, followup.describe)
register(Action.RETRY_WEBHOOK, CONTROL_API, webhook.retry_webhook, webhook.describe)
register(Action.VERIFY_HEALTH, CONTROL_API, checks.verify_health, checks.describe_health)
register(
    Action.CHECK_INTEGRATIONS,
    CONTROL_API,
    checks.check_integrations,
    checks.describe_integrations,
)
register(Action.ISSUE_CREDIT, CONTROL_API, credit.issue_credit, credit.describe, tags={"finance"})
