"""Actions carried out by the platform's control API: one POST per operation, keyed by command.

`POST {control_api_url}/workspaces/{workspace_id}/{operation}` with the command id as the
Idempotency-Key: a repeat of the command (a retry, a redelivery after a crash) is answered
from the platform's record and applies no second effect. An operation on one item of the
workspace (restart-integration) names the command's target in the body, under its own field.
"""

from __future__ import annotations

import re

from actions.http import control, shown_base
from actions.reconciler import (
    ActionContext,
    Describe,
    Done,
    ExecutorConfig,
    Handler,
    TerminalError,
)
from topics.commands import Command

# An id the platform gave the effect; recorded only when it is short and plainly an id.
_EFFECT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


async def post_operation(
    ctx: ActionContext, operation: str, target_field: str | None = None
) -> Done:
    """Ask the control API to carry out `operation` on the command's workspace (or target)."""
    command = ctx.command
    body: dict[str, object] = {
        "command_id": command.command_id,
        "action": command.action.value,
        "rule_id": command.rule_id,
    }
    if command.target is not None:
        if target_field is None:
            # Carried out once per item of a fan-out, it would apply the same effect N times.
            raise TerminalError(
                f"{command.action.value} acts on the whole workspace and takes no target: "
                "check the playbook step that fans out over it"
            )
        # Only when targeted, so an untargeted command's body stays what it always was.
        body[target_field] = command.target
    reply = await control(
        ctx,
        "POST",
        f"/workspaces/{command.workspace_id}/{operation}",
        idempotency_key=command.command_id,
        json_body=body,
        # In a header, not the body: every attempt must send the same body under the same key,
        # or an idempotent receiver refuses the retry of a request it already applied (422).
        headers={"X-Autopilot-Attempt": str(command.attempt)},
    )
    detail: dict[str, object] = {
        "operation": operation,
        "status": reply.status,
        "replayed": reply.replayed,
    }
    effect_id = reply.json.get("effect_id")
    if isinstance(effect_id, str) and _EFFECT_ID.fullmatch(effect_id):
        detail["effect_id"] = effect_id
    return Done(detail)


def describe_operation(
    operation: str, command: Command, config: ExecutorConfig, target_field: str | None = None
) -> str:
    """What `post_operation` would do, for a dry run."""
    call = f"POST {shown_base(config)}/workspaces/{command.workspace_id}/{operation}"
    if command.target is None:
        return call
    if target_field is None:
        return f"nothing: {command.action.value} takes no target"
    return f"{call} for {target_field} {command.target}"


def operation(name: str, *, target_field: str | None = None) -> tuple[Handler, Describe]:
    """The handler and the dry-run description of one control-API operation; `target_field`
    is the body's field naming a command's target, for an operation that takes one."""

    async def handle(ctx: ActionContext) -> Done:
        return await post_operation(ctx, name, target_field)

    def describe(command: Command, config: ExecutorConfig) -> str:
        return describe_operation(name, command, config, target_field)

    handle.__qualname__ = handle.__name__ = f"post_{name.replace('-', '_')}"
    return handle, describe
