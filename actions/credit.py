"""issue_credit: the platform credits a workspace (a control-API operation, tagged finance).

Tagged "finance", it runs only once an operator approved the command (the executor holds it
until then); by the time it gets here it is an ordinary idempotent control-API call, keyed by
the command id so an approval replayed or a retry never credits twice.
"""

from __future__ import annotations

from actions.platform import describe_operation, post_operation
from actions.reconciler import ActionContext, Done, ExecutorConfig
from topics.commands import Command

OPERATION = "credits"


async def issue_credit(ctx: ActionContext) -> Done:
    """POST {base}/workspaces/{id}/credits, keyed by the command id."""
    return await post_operation(ctx, OPERATION)


def describe(command: Command, config: ExecutorConfig) -> str:
    """What issue_credit would do, for a dry run."""
    return describe_operation(OPERATION, command, config)
