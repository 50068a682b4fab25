"""Talking to a worker's HTTP endpoints the way an operator's tooling would: real HTTP, loopback."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from tools.worker_process import WorkerProcess

INGEST_TOKEN = "test-ingest-token"
CONTROL_TOKEN = "test-control-token"
TOKENS = {"AUTOPILOT_INGEST_TOKEN": INGEST_TOKEN, "AUTOPILOT_CONTROL_TOKEN": CONTROL_TOKEN}
# The sandbox platform's credentials (tests/integration/conftest.py): test values, not secrets.
SANDBOX_KEYS = {
    "control_token": "sandbox-control-token",
    "signing_key": "sandbox-webhook-signing-key",
    "llm_key": "sandbox-llm-key",
}


async def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    token: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any]:
    """One request; returns the status and the decoded JSON body (or the text if not JSON)."""
    status, answer, _ = await request_with_headers(
        method, url, body=body, token=token, content_type=content_type
    )
    return status, answer


async def request_with_headers(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    token: str | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    """One request; the status, the decoded JSON body (or text) and the response headers."""
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.request(method, url, data=body, headers=headers) as response,
    ):
        raw = await response.read()
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            answer = raw.decode(errors="replace")
        return response.status, answer, dict(response.headers)


async def post_signals(worker: WorkerProcess, payload: Any, token: str = INGEST_TOKEN) -> Any:
    """POST signals (any JSON value) with the ingest token; returns (status, body)."""
    return await request(
        "POST", f"{worker.web_url}/signals", body=orjson.dumps(payload), token=token
    )


async def get_workspace(
    worker: WorkerProcess, workspace_id: str, token: str = CONTROL_TOKEN
) -> tuple[int, Any]:
    """GET a workspace's windows and health."""
    return await request("GET", f"{worker.web_url}/workspaces/{workspace_id}", token=token)


async def wait_until_answers(worker: WorkerProcess, timeout: float = 60.0) -> None:
    """Wait until the worker answers for workspaces (its shards are assigned), or fail."""
    deadline = time.monotonic() + timeout
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        if not worker.alive:
            raise AssertionError(f"worker exited\n{worker.log_tail()}")
        try:
            last = await get_workspace(worker, "probe")
        except aiohttp.ClientError as exc:
            last = (0, repr(exc))
        # 503 while shards are assigned; a worker without a control token is 503 for good.
        if last[0] not in (0, 503) or "disabled" in str(last[1]):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"worker not ready after {timeout} s: {last}\n{worker.log_tail()}")


async def wait_for_workspace(
    worker: WorkerProcess,
    workspace_id: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll GET /workspaces/{id} until `until(body)` holds; fail with the last answer."""
    deadline = time.monotonic() + timeout
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        try:
            last = await get_workspace(worker, workspace_id)
        except aiohttp.ClientError as exc:
            last = (0, repr(exc))
        status, body = last
        if status == 200 and isinstance(body, dict) and until(body):
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(
        f"workspace {workspace_id}: last answer {last} after {timeout} s\n{worker.log_tail()}"
    )


async def ready_answers(worker: WorkerProcess, timeout: float = 90.0) -> list[tuple[int, Any]]:
    """Every answer of GET /ready from the first the server gives until the first 200."""
    answers: list[tuple[int, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not worker.alive:
            raise AssertionError(f"worker exited\n{worker.log_tail()}")
        with contextlib.suppress(aiohttp.ClientError):  # not listening yet
            answers.append(await request("GET", f"{worker.web_url}/ready"))
        if answers and answers[-1][0] == 200:
            return answers
        await asyncio.sleep(0.05)
    raise AssertionError(f"not ready after {timeout} s: {answers[-3:]}\n{worker.log_tail()}")
