"""retry_webhook: re-read the workspace's failed deliveries, then redeliver them, signed.

A reconciler: it acts on what the platform reports as failed now, not on what the signal said.
Each delivery goes out with its own Idempotency-Key (`{command_id}:{delivery_id}`), so when one
fails retryably the next attempt resends them all and the receiver drops the ones it already
has. The signature is HMAC-SHA256 over the exact body bytes with the workspace's secret, itself
HMAC-SHA256(master key, workspace_id): a receiver verifies without Autopilot sharing the master.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson
from yarl import URL

from actions.http import call, control, shown_base
from actions.reconciler import (
    ActionContext,
    Done,
    ExecutorConfig,
    NotConfiguredError,
    TerminalError,
)
from topics.commands import Command

WEBHOOKS = "webhooks"
# Per command; what is left is reported and picked up by the next failure's command.
MAX_DELIVERIES = 20
_DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


def workspace_secret(master: str, workspace_id: str) -> bytes:
    """The workspace's signing secret, derived from the master key."""
    return hmac.new(master.encode(), workspace_id.encode(), hashlib.sha256).digest()


def sign(secret: bytes, body: bytes) -> str:
    """The X-Autopilot-Signature value of `body`: "sha256=<hex>"."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def retry_webhook(ctx: ActionContext) -> Done:
    """Redeliver the workspace's failed webhook deliveries (at most MAX_DELIVERIES)."""
    master = ctx.config.webhook_signing_key
    if not master:
        raise NotConfiguredError(
            "set AUTOPILOT_WEBHOOK_SIGNING_KEY (the master key workspace webhook secrets "
            "derive from) to redeliver webhooks"
        )
    command = ctx.command
    failed = await control(
        ctx,
        "GET",
        f"/workspaces/{command.workspace_id}/webhooks/failed",
        idempotency_key=command.command_id,
    )
    url, deliveries = _failures(failed.json)
    if not deliveries:
        return Done({"redelivered": 0})
    secret = workspace_secret(master, command.workspace_id)
    statuses: list[int] = []
    replayed = 0
    for delivery_id, body in deliveries[:MAX_DELIVERIES]:
        reply = await call(
            ctx,
            WEBHOOKS,
            "POST",
            str(url),
            idempotency_key=f"{command.command_id}:{delivery_id}",
            credential="AUTOPILOT_WEBHOOK_SIGNING_KEY (the receiver refused the signature)",
            body_bytes=body,
            headers={
                "Content-Type": "application/json",
                "X-Autopilot-Delivery": delivery_id,
                "X-Autopilot-Signature": sign(secret, body),
            },
            # A receiver's path may hold its own secret (e.g. chat webhooks): show the origin.
            shown=str(url.origin()),
        )
        statuses.append(reply.status)
        replayed += reply.replayed
    detail: dict[str, Any] = {
        "redelivered": len(statuses),
        "statuses": statuses,
        "replayed": replayed,
    }
    if len(deliveries) > MAX_DELIVERIES:
        detail["remaining"] = len(deliveries) - MAX_DELIVERIES
    return Done(detail)


def describe(command: Command, config: ExecutorConfig) -> str:
    """What retry_webhook would do, for a dry run."""
    return (
        f"GET {shown_base(config)}/workspaces/{command.workspace_id}/webhooks/failed, then POST "
        f"each failed delivery (at most {MAX_DELIVERIES}), signed, to the workspace's webhook URL"
    )


def _failures(reply: dict[str, Any]) -> tuple[URL, list[tuple[str, bytes]]]:
    # The shape is checked field by field; a message names the field, never echoes a value.
    where = "the control API's webhooks/failed reply"
    raw_url = reply.get("url")
    if not isinstance(raw_url, str):
        raise TerminalError(f"{where} has no 'url' string")
    try:
        url = URL(raw_url)
    except ValueError as exc:
        raise TerminalError(f"{where}: 'url' is not a URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise TerminalError(f"{where}: 'url' is not an absolute http(s) URL")
    raw_deliveries = reply.get("deliveries")
    if not isinstance(raw_deliveries, list):
        raise TerminalError(f"{where} has no 'deliveries' list")
    deliveries: list[tuple[str, bytes]] = []
    for index, delivery in enumerate(raw_deliveries):
        if not isinstance(delivery, dict) or "body" not in delivery:
            raise TerminalError(f"{where}: 'deliveries[{index}]' is not an object with a 'body'")
        delivery_id = delivery.get("id")
        if not isinstance(delivery_id, str) or not _DELIVERY_ID.fullmatch(delivery_id):
            raise TerminalError(f"{where}: 'deliveries[{index}].id' is not a delivery id")
        try:
            body = orjson.dumps(delivery["body"])
        except orjson.JSONEncodeError as exc:
            raise TerminalError(f"{where}: 'deliveries[{index}].body' is not JSON") from exc
        deliveries.append((delivery_id, body))
    return url, deliveries
