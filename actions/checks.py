"""Read-only checks of a workspace through the platform's control API, for playbook steps.

- `verify_health`: Done once the platform says the workspace is healthy. "Not yet" is a
  NotReadyError, so the executor's backoff is the wait between two checks and running out of
  attempts dead-letters the step.
- `check_integrations`: which integrations are offline now. Their ids go in Done's `found`,
  which the executor hands to the playbook's next step (StepOutcome.items) to fan out over.

Like every control-API call, a GET carries the command id as its Idempotency-Key. Replies are
checked field by field; an error names the field and never echoes the platform's value, except
a health status that is plainly a status word.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from actions.http import control, shown_base
from actions.reconciler import ActionContext, Done, ExecutorConfig, NotReadyError, TerminalError
from topics.commands import Command, Target
from topics.control import MAX_STEP_ITEMS

HEALTHY = "healthy"
INTEGRATION_STATUSES = frozenset({"online", "offline"})
# A status short and plain enough to quote in a reason an operator reads ("degraded").
_STATUS_WORD = re.compile(r"[a-z][a-z_-]{0,31}")
# The rule a step's outcome holds its items to, so every id in `found` can become a target.
_TARGET: TypeAdapter[str] = TypeAdapter(Target)


async def verify_health(ctx: ActionContext) -> Done:
    """Done with the status and score when the workspace is healthy; NotReadyError until then."""
    command = ctx.command
    reply = await control(
        ctx,
        "GET",
        f"/workspaces/{command.workspace_id}/health",
        idempotency_key=command.command_id,
    )
    status, score = _health(reply.json)
    if status != HEALTHY:
        raise NotReadyError(
            f"workspace {command.workspace_id} not healthy yet: status {status}, score {score}"
        )
    return Done({"status": status, "score": score})


async def check_integrations(ctx: ActionContext) -> Done:
    """Done with the counts and, in `found`, the ids of the integrations offline now."""
    command = ctx.command
    reply = await control(
        ctx,
        "GET",
        f"/workspaces/{command.workspace_id}/integrations",
        idempotency_key=command.command_id,
    )
    integrations = _integrations(reply.json)
    offline = [id_ for id_, status in integrations if status == "offline"]
    # Once each, in the platform's order: a fan-out acts once per integration.
    targets = list(dict.fromkeys(id_ for id_ in offline if _is_target(id_)))
    detail: dict[str, Any] = {
        "integrations": len(integrations),
        "offline": len(offline),
        "found": targets[:MAX_STEP_ITEMS],
    }
    refused = sum(not _is_target(id_) for id_ in offline)
    if refused:
        detail["refused"] = refused
    if len(targets) > MAX_STEP_ITEMS:
        detail["remaining"] = len(targets) - MAX_STEP_ITEMS
    return Done(detail)


def describe_health(command: Command, config: ExecutorConfig) -> str:
    """What verify_health would do, for a dry run."""
    return f"GET {shown_base(config)}/workspaces/{command.workspace_id}/health"


def describe_integrations(command: Command, config: ExecutorConfig) -> str:
    """What check_integrations would do, for a dry run."""
    return f"GET {shown_base(config)}/workspaces/{command.workspace_id}/integrations"


def _health(reply: dict[str, Any]) -> tuple[str, int]:
    where = "the control API's health reply"
    status = reply.get("status")
    if not isinstance(status, str) or not _STATUS_WORD.fullmatch(status):
        raise TerminalError(f"{where}: 'status' is not a status word")
    score = reply.get("score")
    # bool is an int in Python, not in JSON.
    if not isinstance(score, int) or isinstance(score, bool) or not 0 <= score <= 100:
        raise TerminalError(f"{where}: 'score' is not a whole number from 0 to 100")
    return status, score


def _integrations(reply: dict[str, Any]) -> list[tuple[str, str]]:
    where = "the control API's integrations reply"
    listed = reply.get("integrations")
    if not isinstance(listed, list):
        raise TerminalError(f"{where} has no 'integrations' list")
    integrations: list[tuple[str, str]] = []
    for index, integration in enumerate(listed):
        if not isinstance(integration, dict):
            raise TerminalError(f"{where}: 'integrations[{index}]' is not an object")
        id_, status = integration.get("id"), integration.get("status")
        if not isinstance(id_, str):
            raise TerminalError(f"{where}: 'integrations[{index}].id' is not a string")
        if not isinstance(status, str) or status not in INTEGRATION_STATUSES:
            raise TerminalError(
                f"{where}: 'integrations[{index}].status' is neither online nor offline"
            )
        integrations.append((id_, status))
    return integrations


def _is_target(value: str) -> bool:
    try:
        _TARGET.validate_python(value)
    except ValidationError:
        return False
    return True
