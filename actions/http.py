"""The one HTTP call every action handler makes, and how its failures map to the reconciler's.

Retryability is a property of the failure (shared/STYLE.md): a connection error, a timeout,
408/409/425/429 and 5xx may succeed later; any other 4xx, a redirect or a rejected credential
will not. Error messages are redacted: method, path (never the query), status; never a header
value, a token or the response body, which may echo what we sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from yarl import URL

from actions.reconciler import (
    ActionContext,
    ExecutorConfig,
    NotConfiguredError,
    RetryableError,
    TerminalError,
)

CONTROL_API = "control_api"
USER_AGENT = "autopilot"
# 409: the receiver still works on an earlier request with the same Idempotency-Key.
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})


@dataclass(frozen=True, slots=True)
class Reply:
    """A 2xx response: its status, its JSON object ({} if none) and whether it was a replay."""

    status: int
    json: dict[str, Any] = field(default_factory=dict)
    # The receiver had already seen this Idempotency-Key and answered from its record.
    replayed: bool = False


async def call(
    ctx: ActionContext,
    provider: str,
    method: str,
    url: str,
    *,
    idempotency_key: str,
    credential: str,
    json_body: dict[str, Any] | None = None,
    body_bytes: bytes | None = None,
    headers: dict[str, str] | None = None,
    shown: str | None = None,
) -> Reply:
    """Make one request; a 2xx is a Reply, anything else a RetryableError or TerminalError.

    `credential` names the setting an operator checks on 401/403; `shown` is what error
    messages show of the URL (default: its path).
    """
    target = URL(url)
    where = f"{method} {shown if shown is not None else target.path}"
    sent = {
        **(headers or {}),
        "Idempotency-Key": idempotency_key,
        "User-Agent": USER_AGENT,
    }
    if json_body is not None:
        body_bytes = orjson.dumps(json_body)
        sent["Content-Type"] = "application/json"
    timeout = aiohttp.ClientTimeout(total=ctx.config.http_timeout_seconds)
    try:
        # No redirects: a redirect would carry the credential and the key somewhere unplanned.
        async with ctx.http.request(
            method, target, data=body_bytes, headers=sent, timeout=timeout, allow_redirects=False
        ) as response:
            status = response.status
            if 200 <= status < 300:
                return Reply(
                    status,
                    _json_object(await response.read()),
                    response.headers.get("Idempotent-Replayed", "").strip().lower() == "true",
                )
            retry_after = _seconds(response.headers.get("Retry-After"))
    except aiohttp.InvalidURL as exc:
        raise TerminalError(f"{where}: invalid URL", provider=provider) from exc
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The type says enough (connection refused, timeout); its text would name the host.
        raise RetryableError(f"{where}: {type(exc).__name__}", provider=provider) from exc
    raise _failure(where, status, retry_after, provider, credential)


def control_base(config: ExecutorConfig) -> str:
    """The control API's base URL, or NotConfiguredError naming the setting."""
    if not config.control_api_url:
        raise NotConfiguredError(
            "set AUTOPILOT_CONTROL_API_URL to the platform's control API "
            "(e.g. http://127.0.0.1:8080) to carry out this action"
        )
    return config.control_api_url.rstrip("/")


def shown_base(config: ExecutorConfig) -> str:
    """The control API's base URL as a dry-run description shows it."""
    return (config.control_api_url or "<AUTOPILOT_CONTROL_API_URL unset>").rstrip("/")


async def control(
    ctx: ActionContext,
    method: str,
    path: str,
    *,
    idempotency_key: str,
    json_body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Call the platform's control API at `path` (from /workspaces/...), with its token."""
    headers = dict(headers or {})
    if ctx.config.control_api_token:
        headers["Authorization"] = f"Bearer {ctx.config.control_api_token}"
    return await call(
        ctx,
        CONTROL_API,
        method,
        control_base(ctx.config) + path,
        idempotency_key=idempotency_key,
        credential="AUTOPILOT_CONTROL_API_TOKEN",
        json_body=json_body,
        headers=headers,
    )


def _failure(
    where: str, status: int, retry_after: float | None, provider: str, credential: str
) -> RetryableError | TerminalError:
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableError(
            f"{where} returned {status}", provider=provider, retry_after=retry_after
        )
    if status in (401, 403):
        return TerminalError(
            f"{where} returned {status}: the credential was refused, check {credential}",
            provider=provider,
        )
    if 300 <= status < 400:
        return TerminalError(
            f"{where} returned {status}: redirects are not followed", provider=provider
        )
    return TerminalError(f"{where} returned {status}", provider=provider)


def _seconds(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP-date is left to our own backoff.
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
