"""send_followup: a follow-up message to the workspace's admin, its text written by the LLM.

The text comes from ContentWriter (the LLM, or the template when it is offline); the message
goes through the control API, keyed by the command id. A retry may find the LLM writing other
words under the same key: ContentWriter hands back the text it already wrote for this command,
so the repeat is byte-identical and answered as a replay. Only if the shard moved to another
worker in between do new words go under the old key; the platform keeps the first message (a
Stripe-style receiver answers 422, so the ledger may then say failed for a message that was
delivered, never the reverse). The ledger records the content's note, never the text.
"""

from __future__ import annotations

from actions.http import control, control_base, shown_base
from actions.reconciler import ActionContext, Done, ExecutorConfig
from topics.commands import Command

OPERATION = "messages"


async def send_followup(ctx: ActionContext) -> Done:
    """Write the follow-up's text, then POST {base}/workspaces/{id}/messages."""
    command = ctx.command
    control_base(ctx.config)  # unconfigured: fail before spending an LLM call
    content = await ctx.content.followup(
        command.workspace_id, command.rule_id, ctx.workspace, key=command.command_id
    )
    reply = await control(
        ctx,
        "POST",
        f"/workspaces/{command.workspace_id}/{OPERATION}",
        idempotency_key=command.command_id,
        json_body={"command_id": command.command_id, "channel": "followup", "text": content.text},
    )
    return Done(
        {
            "operation": OPERATION,
            "status": reply.status,
            "replayed": reply.replayed,
            "content": content.note(),
        }
    )


def describe(command: Command, config: ExecutorConfig) -> str:
    """What send_followup would do, for a dry run."""
    return (
        f"POST {shown_base(config)}/workspaces/{command.workspace_id}/{OPERATION} "
        "(a follow-up message, its text by the LLM or the template)"
    )
