"""The sandbox speaks its three protocols over real loopback HTTP (aiohttp and openai clients)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from tests.support.factories import CONTROL_TOKEN, LLM_KEY, SIGNING_KEY
from tools.sandbox import Effect, Sandbox, SandboxThread, Seen

REPO_ROOT = Path(__file__).resolve().parents[3]
WAIT_SECONDS = 5.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT_SECONDS)) as s:
        yield s


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    *,
    key: str | None = "key-1",
    token: str | None = CONTROL_TOKEN,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """POST JSON; returns the status, the decoded body and the response headers."""
    sent = dict(headers or {})
    if key is not None:
        sent["Idempotency-Key"] = key
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    sent.setdefault("Content-Type", "application/json")
    async with http.post(url, data=data, headers=sent) as response:
        return response.status, await response.json(), dict(response.headers)


def sign(workspace_id: str, raw: bytes, signing_key: str = SIGNING_KEY) -> str:
    """The webhook signature, computed from the protocol's definition."""
    secret = hmac.new(signing_key.encode(), workspace_id.encode(), hashlib.sha256).digest()
    return "sha256=" + hmac.new(secret, raw, hashlib.sha256).hexdigest()


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# -- control API ---------------------------------------------------------------------------


async def test_first_request_applies_and_repeat_is_replayed(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/workspaces/ws-1/restart-integration"

    first = await post(http, url, {"integration": "stripe"})
    again = await post(http, url, {"integration": "stripe"})

    assert first[0] == 200 and again[0] == 200
    assert first[1]["status"] == "done" and first[1]["operation"] == "restart-integration"
    assert re.fullmatch(r"eff_[0-9a-f]{12}", first[1]["effect_id"])
    assert again[1] == first[1]
    assert "Idempotent-Replayed" not in first[2]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert [(e.key, e.workspace_id, e.operation, e.body) for e in sandbox.effects] == [
        ("key-1", "ws-1", "restart-integration", {"integration": "stripe"})
    ]
    assert sandbox.effect_counts() == {"key-1": 1}
    path = "/workspaces/ws-1/restart-integration"
    assert sandbox.requests == [
        Seen("POST", path, "key-1", 200, False),
        Seen("POST", path, "key-1", 200, True),
    ]


async def test_same_key_different_body_is_422(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/workspaces/ws-1/credits"
    assert (await post(http, url, {"amount": 10}))[0] == 200

    status, body, _ = await post(http, url, {"amount": 20})

    assert (status, body) == (422, {"error": "idempotency key reused with a different request"})
    assert sandbox.effect_counts() == {"key-1": 1}


async def test_key_order_in_the_body_does_not_matter(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/workspaces/ws-1/messages"
    await post(http, url, None, raw=b'{"a": 1, "b": 2}')

    status, _, headers = await post(http, url, None, raw=b'{"b":2,"a":1}')

    assert (status, headers["Idempotent-Replayed"]) == (200, "true")
    assert len(sandbox.effects) == 1


async def test_missing_key_or_non_object_body_is_400(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/workspaces/ws-1/provision"

    no_key = await post(http, url, {}, key=None)
    long_key = await post(http, url, {}, key="k" * 201)
    a_list = await post(http, url, [1, 2])
    not_json = await post(http, url, None, raw=b"{nope")

    required = "Idempotency-Key header required (1-200 printable characters)"
    assert no_key[:2] == (400, {"error": required})
    assert long_key[:2] == (400, {"error": required})
    assert a_list[:2] == (400, {"error": "body must be a JSON object"})
    assert not_json[:2] == (400, {"error": "body must be a JSON object"})
    assert sandbox.effects == []


async def test_bad_or_missing_token_is_401(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sandbox.url}/workspaces/ws-1/reconcile"

    wrong = await post(http, url, {}, token="not-the-token")
    missing = await post(http, url, {}, token=None)

    assert wrong[:2] == (401, {"error": "unauthorized"})
    assert missing[:2] == (401, {"error": "unauthorized"})
    assert sandbox.effects == []
    assert [seen.status for seen in sandbox.requests] == [401, 401]


async def test_malformed_operation_or_bad_workspace_is_404(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    unknown_op = await post(http, f"{sandbox.url}/workspaces/ws-1/Delete_Everything", {})
    bad_workspace = await post(http, f"{sandbox.url}/workspaces/-ws/provision", {})
    no_route = await post(http, f"{sandbox.url}/nowhere", {})

    assert unknown_op[:2] == (404, {"error": "not found"})
    assert bad_workspace[:2] == (404, {"error": "not found"})
    assert no_route[:2] == (404, {"error": "not found"})
    assert sandbox.effects == []


async def test_script_answers_in_order_then_succeeds(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.script("ws-1", "force-publish", [503, (429, 2.0), (503, 0.25)])
    url = f"{sandbox.url}/workspaces/ws-1/force-publish"

    answers = [await post(http, url, {"post": 7}) for _ in range(4)]

    assert [a[0] for a in answers] == [503, 429, 503, 200]
    assert answers[0][1] == {"error": "service unavailable"}
    assert answers[1][1] == {"error": "too many requests"}
    assert "Retry-After" not in answers[0][2]
    assert answers[1][2]["Retry-After"] == "2"
    assert answers[2][2]["Retry-After"] == "0.25"
    assert sandbox.effect_counts() == {"key-1": 1}


async def test_script_is_per_workspace_and_operation(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.script("ws-1", "provision", [500])

    other_op = await post(http, f"{sandbox.url}/workspaces/ws-1/reconcile", {}, key="a")
    other_ws = await post(http, f"{sandbox.url}/workspaces/ws-2/provision", {}, key="b")
    scripted = await post(http, f"{sandbox.url}/workspaces/ws-1/provision", {}, key="c")

    assert [other_op[0], other_ws[0], scripted[0]] == [200, 200, 500]


async def test_down_answers_503_and_is_recorded(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.down = True
    url = f"{sandbox.url}/workspaces/ws-1/rebalance-queue"

    status, body, _ = await post(http, url, {"queue": "q"})
    async with http.get(f"{sandbox.url}/workspaces/ws-1/webhooks/failed") as listing:
        listing_status = listing.status
    sandbox.down = False
    recovered = await post(http, url, {"queue": "q"})

    assert (status, body) == (503, {"error": "unavailable"})
    assert listing_status == 503
    assert recovered[0] == 200
    assert [(s.method, s.status) for s in sandbox.requests] == [
        ("POST", 503),
        ("GET", 503),
        ("POST", 200),
    ]
    assert len(sandbox.effects) == 1


async def test_delayed_answer_applies_first_and_a_concurrent_repeat_is_409(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.delay_seconds = 0.5
    url = f"{sandbox.url}/workspaces/ws-1/retry-failed"

    # The client gives up before the answer: the effect is applied anyway.
    with pytest.raises(asyncio.TimeoutError):
        async with asyncio.timeout(0.2):
            await post(http, url, {"n": 1})
    assert sandbox.effect_counts() == {"key-1": 1}
    busy = await post(http, url, {"n": 1})
    # The hung-up request's handler was not cancelled: it finishes and is recorded as a 200.
    await wait_until(lambda: any(s.status == 200 for s in sandbox.requests))
    sandbox.delay_seconds = 0.0
    retried = await post(http, url, {"n": 1})

    assert busy[:2] == (409, {"error": "in progress"})
    assert retried[0] == 200 and retried[2]["Idempotent-Replayed"] == "true"
    assert sandbox.effect_counts() == {"key-1": 1}


async def test_failed_deliveries_default_and_override(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    auth = {"Authorization": f"Bearer {CONTROL_TOKEN}"}

    async def listing(workspace_id: str, headers: dict[str, str]) -> tuple[int, Any]:
        url = f"{sandbox.url}/workspaces/{workspace_id}/webhooks/failed"
        async with http.get(url, headers=headers) as response:
            return response.status, await response.json()

    default = await listing("ws-1", auth)
    sandbox.set_failed_deliveries("ws-2", [{"id": "x", "body": {"event": "a"}}])
    overridden = await listing("ws-2", auth)
    sandbox.set_failed_deliveries("ws-3", [])
    empty = await listing("ws-3", auth)
    sandbox.script("ws-1", "webhooks-failed", [(503, 1)])
    scripted = await listing("ws-1", auth)
    unauthorized = await listing("ws-1", {})

    assert default == (
        200,
        {
            "url": f"{sandbox.url}/hooks/ws-1",
            "deliveries": [
                {"id": "d-ws-1", "body": {"event": "invoice.paid", "workspace_id": "ws-1"}}
            ],
        },
    )
    assert overridden == (
        200,
        {"url": f"{sandbox.url}/hooks/ws-2", "deliveries": [{"id": "x", "body": {"event": "a"}}]},
    )
    assert empty == (200, {"url": f"{sandbox.url}/hooks/ws-3", "deliveries": []})
    assert scripted == (503, {"error": "service unavailable"})
    assert unauthorized == (401, {"error": "unauthorized"})


async def test_health_and_integrations_reads_default_override_and_refuse(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """The workspace reads answer the defaults, a test's override, a scripted failure, and
    refuse a missing token, a bad workspace id and a down platform; they apply no effect."""
    auth = {"Authorization": f"Bearer {CONTROL_TOKEN}"}

    async def read(workspace_id: str, what: str, headers: dict[str, str] = auth) -> Any:
        url = f"{sandbox.url}/workspaces/{workspace_id}/{what}"
        async with http.get(url, headers=headers) as response:
            return response.status, await response.json()

    defaults = [await read("ws-1", "health"), await read("ws-1", "integrations")]
    sandbox.set_health("ws-2", "degraded", 41)
    sandbox.set_integrations("ws-2", [{"id": "erp", "status": "offline"}])
    overridden = [await read("ws-2", "health"), await read("ws-2", "integrations")]
    sandbox.script("ws-1", "health", [(503, 1)])
    sandbox.script("ws-1", "integrations", [429])
    scripted = [await read("ws-1", "health"), await read("ws-1", "integrations")]
    refused = [await read("ws-1", "health", {}), await read("-ws", "integrations")]
    sandbox.down = True
    down = await read("ws-1", "health")

    assert defaults == [
        (200, {"status": "healthy", "score": 90}),
        (
            200,
            {
                "integrations": [
                    {"id": "crm", "status": "offline"},
                    {"id": "calendar", "status": "online"},
                ]
            },
        ),
    ]
    assert overridden == [
        (200, {"status": "degraded", "score": 41}),
        (200, {"integrations": [{"id": "erp", "status": "offline"}]}),
    ]
    assert scripted == [
        (503, {"error": "service unavailable"}),
        (429, {"error": "too many requests"}),
    ]
    assert refused == [(401, {"error": "unauthorized"}), (404, {"error": "not found"})]
    assert down == (503, {"error": "unavailable"})
    assert {s.method for s in sandbox.requests} == {"GET"}
    assert sandbox.effects == []


# -- webhook receiver ----------------------------------------------------------------------


async def test_webhook_with_valid_signature_applies_once(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    raw = json.dumps({"event": "invoice.paid", "workspace_id": "ws-1"}).encode()
    headers = {"X-Autopilot-Signature": sign("ws-1", raw)}
    url = f"{sandbox.url}/hooks/ws-1"

    first = await post(http, url, None, raw=raw, headers=headers, key="d-ws-1", token=None)
    again = await post(http, url, None, raw=raw, headers=headers, key="d-ws-1", token=None)

    assert first[0] == 200 and first[1]["operation"] == "hook"
    assert again[0] == 200 and again[2]["Idempotent-Replayed"] == "true"
    assert [(e.key, e.workspace_id, e.operation, e.body) for e in sandbox.effects] == [
        ("d-ws-1", "ws-1", "hook", {"event": "invoice.paid", "workspace_id": "ws-1"})
    ]


async def test_webhook_signature_is_checked(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    raw = json.dumps({"event": "invoice.paid"}).encode()
    url = f"{sandbox.url}/hooks/ws-1"

    tampered = await post(
        http,
        url,
        None,
        raw=raw.replace(b"paid", b"void"),
        headers={"X-Autopilot-Signature": sign("ws-1", raw)},
        token=None,
    )
    other_workspace = await post(
        http, url, None, raw=raw, headers={"X-Autopilot-Signature": sign("ws-2", raw)}, token=None
    )
    missing = await post(http, url, None, raw=raw, token=None)

    for status, body, _ in (tampered, other_workspace, missing):
        assert (status, body) == (401, {"error": "invalid signature"})
    assert sandbox.effects == []


async def test_webhook_without_signing_key_refuses(http: aiohttp.ClientSession) -> None:
    box = Sandbox()
    await box.start()
    try:
        raw = b'{"event": "x"}'
        headers = {"X-Autopilot-Signature": sign("ws-1", raw)}
        status, body, _ = await post(
            http, f"{box.url}/hooks/ws-1", None, raw=raw, headers=headers, token=None
        )
    finally:
        await box.stop()

    assert (status, body) == (401, {"error": "invalid signature"})


async def test_webhook_down_and_scripted(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    raw = b'{"event": "x"}'
    headers = {"X-Autopilot-Signature": sign("ws-1", raw)}
    url = f"{sandbox.url}/hooks/ws-1"

    sandbox.hooks_down = True
    down = await post(http, url, None, raw=raw, headers=headers, token=None)
    sandbox.hooks_down = False
    sandbox.script("ws-1", "hook", [(502, 3)])
    scripted = await post(http, url, None, raw=raw, headers=headers, token=None)
    delivered = await post(http, url, None, raw=raw, headers=headers, token=None)

    assert down[:2] == (503, {"error": "unavailable"})
    assert scripted[:2] == (502, {"error": "bad gateway"}) and scripted[2]["Retry-After"] == "3"
    assert delivered[0] == 200
    assert sandbox.effect_counts() == {"key-1": 1}


async def test_control_and_webhook_keys_are_separate_scopes(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    raw = b'{"event": "x"}'
    control = await post(http, f"{sandbox.url}/workspaces/ws-1/provision", {"plan": "pro"})
    hook = await post(
        http,
        f"{sandbox.url}/hooks/ws-1",
        None,
        raw=raw,
        headers={"X-Autopilot-Signature": sign("ws-1", raw)},
        token=None,
    )

    assert (control[0], hook[0]) == (200, 200)
    assert sandbox.effect_counts() == {"key-1": 2}


# -- chat completions ----------------------------------------------------------------------


async def test_openai_client_gets_a_deterministic_answer(sandbox: Sandbox) -> None:
    messages: list[Any] = [
        {"role": "system", "content": "You write short customer messages."},
        {
            "role": "user",
            "content": "Workspace ws-1 has 3 failed\nwebhooks since Monday; please tell them.",
        },
    ]
    async with openai.AsyncOpenAI(
        api_key=LLM_KEY, base_url=sandbox.llm_base_url, max_retries=0, timeout=WAIT_SECONDS
    ) as client:
        first = await client.chat.completions.create(model="gpt-test", messages=messages)
        again = await client.chat.completions.create(model="gpt-test", messages=messages)
        models = await client.models.list()

    # The last user message, whitespace collapsed, cut at 60 characters.
    expected = "Hi! Following up on your workspace: " + (
        "Workspace ws-1 has 3 failed webhooks since Monday; please te"
    )
    assert first.choices[0].message.content == expected
    assert again.choices[0].message.content == expected
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert first.model == "gpt-test" and first.object == "chat.completion"
    assert first.usage is not None and first.usage.total_tokens == (
        first.usage.prompt_tokens + first.usage.completion_tokens
    )
    assert [m.id for m in models.data] == ["sandbox-chat"]
    assert sandbox.llm_requests == [
        {"model": "gpt-test", "messages": messages},
        {"model": "gpt-test", "messages": messages},
    ]


async def test_openai_client_with_wrong_key_is_refused(sandbox: Sandbox) -> None:
    async with openai.AsyncOpenAI(
        api_key="wrong", base_url=sandbox.llm_base_url, max_retries=0, timeout=WAIT_SECONDS
    ) as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )

    assert refused.value.status_code == 401
    assert refused.value.code == "invalid_api_key"
    assert sandbox.llm_requests == []


async def test_llm_down_raises_internal_server_error(sandbox: Sandbox) -> None:
    sandbox.llm_down = True
    async with openai.AsyncOpenAI(
        api_key=LLM_KEY, base_url=sandbox.llm_base_url, max_retries=0, timeout=WAIT_SECONDS
    ) as client:
        with pytest.raises(openai.InternalServerError) as failed:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )

    assert failed.value.status_code == 503
    assert failed.value.body == {"message": "unavailable", "type": "server_error"}
    assert [(s.path, s.status) for s in sandbox.requests] == [("/v1/chat/completions", 503)]


# -- from synchronous code, and as a process -----------------------------------------------


def test_sandbox_thread_serves_sync_code() -> None:
    with SandboxThread(control_token=CONTROL_TOKEN) as box:
        request = urllib.request.Request(
            f"{box.url}/workspaces/ws-1/provision",
            data=b'{"plan": "pro"}',
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}", "Idempotency-Key": "k"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
            status, answer = response.status, json.load(response)
        box.down = True
        with pytest.raises(urllib.error.HTTPError) as down:
            urllib.request.urlopen(request, timeout=WAIT_SECONDS)
        down.value.close()
        url = box.url

    assert (status, answer["status"]) == (200, "done")
    assert down.value.code == 503
    assert [(e.key, e.operation, e.body) for e in box.effects] == [
        ("k", "provision", {"plan": "pro"})
    ]
    assert all(isinstance(e, Effect) for e in box.effects)
    with pytest.raises(urllib.error.URLError):  # stopped: nothing listens there any more
        urllib.request.urlopen(f"{url}/v1/models", timeout=WAIT_SECONDS)


async def test_module_prints_its_address_and_serves(http: aiohttp.ClientSession) -> None:
    env = {**os.environ, "SANDBOX_CONTROL_TOKEN": CONTROL_TOKEN, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=15)).decode()
        matched = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert matched, line
        url = matched.group(1)

        refused = await post(http, f"{url}/workspaces/ws-1/provision", {}, token=None)
        applied = await post(http, f"{url}/workspaces/ws-1/provision", {})

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), timeout=10)
        rest = await asyncio.wait_for(process.stdout.read(), timeout=5)
        errors = await asyncio.wait_for(process.stderr.read(), timeout=5)
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), timeout=10)

    assert refused[:2] == (401, {"error": "unauthorized"})
    assert applied[0] == 200
    assert returncode == 0
    assert rest == b""
    assert CONTROL_TOKEN.encode() not in line.encode() + rest + errors
