"""A real loopback HTTP server standing in for Autopilot's outside world.

It speaks the three protocols the executors call: the platform's control API, a customer's
webhook endpoint and an OpenAI-compatible chat-completions endpoint. Tests, the demo and the
benchmark point real HTTP clients at it (no mocks) and then read what it saw: `effects` (what
was applied, once per idempotency key), `requests` (everything, replays and refusals included)
and `llm_requests`. Failures are switched on with `down`, `hooks_down`, `llm_down`, `script()`
and `delay_seconds`.

`python -m tools.sandbox --port N` serves it until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import os
import re
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

# Any well-formed operation name is a control-API operation here, so a new action needs no
# change to the sandbox; the exact operation each action posts is pinned in
# tests/unit/actions/test_actions.py.
_CONTROL_OPERATION = re.compile(r"[a-z][a-z0-9-]{0,63}")
HOOK_OPERATION = "hook"
FAILED_DELIVERIES_OPERATION = "webhooks-failed"
HEALTH_OPERATION = "health"
INTEGRATIONS_OPERATION = "integrations"
DEFAULT_HEALTH: dict[str, Any] = {"status": "healthy", "score": 90}
DEFAULT_INTEGRATIONS: list[dict[str, Any]] = [
    {"id": "crm", "status": "offline"},
    {"id": "calendar", "status": "online"},
]
LLM_MODEL = "sandbox-chat"

REPLAYED_HEADER = "Idempotent-Replayed"
SIGNATURE_HEADER = "X-Autopilot-Signature"
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_MAX_KEY_CHARS = 200
# In-flight handlers get this long to finish on stop(); a delayed answer is then cut short,
# which is fine because its effect was recorded before the delay.
_SHUTDOWN_SECONDS = 1.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Scripted = int | tuple[int, float]


@dataclass(frozen=True)
class Effect:
    """One applied (first-time) effect of the control API or the webhook receiver."""

    key: str
    workspace_id: str
    operation: str
    body: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Seen:
    """One request the sandbox answered, whatever the answer was."""

    method: str
    path: str
    key: str | None
    status: int
    replayed: bool


@dataclass
class _Stored:
    """The answer remembered for an idempotency key; `done` is False while still processing."""

    fingerprint: str
    status: int
    body: dict[str, Any]
    done: bool = False


class Sandbox:
    """The platform, a customer's webhook endpoint and an LLM, on one loopback port."""

    def __init__(
        self,
        *,
        control_token: str | None = None,
        signing_key: str | None = None,
        llm_key: str | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        if delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        self._control_token = control_token
        self._signing_key = signing_key
        self._llm_key = llm_key
        self.delay_seconds = delay_seconds
        # Per workspace, instead of delay_seconds: one slow workspace among fast ones.
        self.delays: dict[str, float] = {}
        self.down = False
        self.hooks_down = False
        self.llm_down = False
        self.effects: list[Effect] = []
        self.requests: list[Seen] = []
        self.llm_requests: list[dict[str, Any]] = []
        # Deques: script() may be called from another thread (SandboxThread) while the loop pops.
        self._scripts: dict[tuple[str, str], collections.deque[Scripted]] = {}
        self._failed_deliveries: dict[str, list[dict[str, Any]]] = {}
        self._health: dict[str, dict[str, Any]] = {}
        self._integrations: dict[str, list[dict[str, Any]]] = {}
        # The control API is one platform; each webhook endpoint is its own customer server,
        # so their keys live in separate scopes ("control", "hook:<workspace>").
        self._stored: dict[tuple[str, str], _Stored] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:43121 (only after start)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def llm_base_url(self) -> str:
        """What an `openai` client's base_url is set to."""
        return f"{self.url}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (port 0 picks any free port)."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        # handler_cancellation=False (also aiohttp's default, made explicit): a client that hangs
        # up mid-request must not cancel the handler, or a delayed effect could go half-applied.
        runner = web.AppRunner(
            self._build_app(), handler_cancellation=False, shutdown_timeout=_SHUTDOWN_SECONDS
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        self._url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"

    async def stop(self) -> None:
        """Stop listening; in-flight requests get a moment to finish."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def script(self, workspace_id: str, operation: str, statuses: list[Scripted]) -> None:
        """Make the next requests for (workspace, operation) answer these statuses in order.

        A tuple (status, seconds) adds a Retry-After header. A non-2xx entry applies no effect;
        a 2xx entry processes the request normally. Operation "hook" is the webhook receiver,
        "webhooks-failed" the failed-deliveries listing, "health" and "integrations" the
        workspace's reads. Replaces any earlier script.
        """
        self._scripts[(workspace_id, operation)] = collections.deque(statuses)

    def set_failed_deliveries(self, workspace_id: str, deliveries: list[dict[str, Any]]) -> None:
        """Override the failed webhook deliveries listed for a workspace (may be empty)."""
        self._failed_deliveries[workspace_id] = list(deliveries)

    def set_health(self, workspace_id: str, status: str, score: int) -> None:
        """Override what `GET /workspaces/{id}/health` answers for a workspace."""
        self._health[workspace_id] = {"status": status, "score": score}

    def set_integrations(self, workspace_id: str, integrations: list[dict[str, Any]]) -> None:
        """Override the integrations (`{"id", "status"}` each) listed for a workspace."""
        self._integrations[workspace_id] = list(integrations)

    def effect_counts(self) -> collections.Counter[str]:
        """Applied effects per idempotency key (anything above 1 is a duplicate)."""
        return collections.Counter(effect.key for effect in self.effects)

    def _build_app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            # Recorded before the answer is written, so a client that has its answer can
            # already see its request here.
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # the router's own 404/405: answer JSON like us
                response = web.json_response({"error": exc.reason.lower()}, status=exc.status)
            self.requests.append(
                Seen(
                    method=request.method,
                    path=request.path,
                    key=request.headers.get("Idempotency-Key"),
                    status=response.status,
                    replayed=response.headers.get(REPLAYED_HEADER) == "true",
                )
            )
            return response

        app = web.Application(middlewares=[record])
        # The reads before the operations: a GET never applies an effect.
        app.router.add_get("/workspaces/{workspace_id}/webhooks/failed", self._failed_listing)
        app.router.add_get("/workspaces/{workspace_id}/health", self._health_read)
        app.router.add_get("/workspaces/{workspace_id}/integrations", self._integrations_read)
        app.router.add_post("/workspaces/{workspace_id}/{operation}", self._control)
        app.router.add_post("/hooks/{workspace_id}", self._hook)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._models)
        return app

    # -- control API -----------------------------------------------------------------------

    async def _control(self, request: web.Request) -> web.Response:
        workspace_id = request.match_info["workspace_id"]
        operation = request.match_info["operation"]
        if self.down:
            return _error(503, "unavailable")
        if not (_WORKSPACE_ID.fullmatch(workspace_id) and _CONTROL_OPERATION.fullmatch(operation)):
            return _error(404, "not found")
        if not _bearer_ok(request, self._control_token):
            return _error(401, "unauthorized")
        scripted = self._next_scripted(workspace_id, operation)
        if scripted is not None and not 200 <= scripted[0] < 300:
            return _scripted_failure(*scripted)
        return await self._apply_once(
            request, "control", workspace_id, operation, ok_status=scripted[0] if scripted else 200
        )

    async def _failed_listing(self, request: web.Request) -> web.Response:
        workspace_id = request.match_info["workspace_id"]
        status = self._read_status(request, workspace_id, FAILED_DELIVERIES_OPERATION)
        if isinstance(status, web.Response):
            return status
        deliveries = self._failed_deliveries.get(workspace_id)
        if deliveries is None:
            deliveries = [
                {
                    "id": f"d-{workspace_id}",
                    "body": {"event": "invoice.paid", "workspace_id": workspace_id},
                }
            ]
        return web.json_response(
            {"url": f"{self.url}/hooks/{workspace_id}", "deliveries": deliveries}, status=status
        )

    async def _health_read(self, request: web.Request) -> web.Response:
        workspace_id = request.match_info["workspace_id"]
        status = self._read_status(request, workspace_id, HEALTH_OPERATION)
        if isinstance(status, web.Response):
            return status
        return web.json_response(self._health.get(workspace_id, DEFAULT_HEALTH), status=status)

    async def _integrations_read(self, request: web.Request) -> web.Response:
        workspace_id = request.match_info["workspace_id"]
        status = self._read_status(request, workspace_id, INTEGRATIONS_OPERATION)
        if isinstance(status, web.Response):
            return status
        integrations = self._integrations.get(workspace_id, DEFAULT_INTEGRATIONS)
        return web.json_response({"integrations": integrations}, status=status)

    def _read_status(
        self, request: web.Request, workspace_id: str, operation: str
    ) -> int | web.Response:
        """The status a read of the control API answers with, or the refusal it gets."""
        if self.down:
            return _error(503, "unavailable")
        if not _WORKSPACE_ID.fullmatch(workspace_id):
            return _error(404, "not found")
        if not _bearer_ok(request, self._control_token):
            return _error(401, "unauthorized")
        scripted = self._next_scripted(workspace_id, operation)
        if scripted is None:
            return 200
        if not 200 <= scripted[0] < 300:
            return _scripted_failure(*scripted)
        return scripted[0]

    # -- webhook receiver ------------------------------------------------------------------

    async def _hook(self, request: web.Request) -> web.Response:
        workspace_id = request.match_info["workspace_id"]
        if self.hooks_down:
            return _error(503, "unavailable")
        if not _WORKSPACE_ID.fullmatch(workspace_id):
            return _error(404, "not found")
        raw = await request.read()
        if not self._signature_ok(workspace_id, raw, request.headers.get(SIGNATURE_HEADER)):
            return _error(401, "invalid signature")
        scripted = self._next_scripted(workspace_id, HOOK_OPERATION)
        if scripted is not None and not 200 <= scripted[0] < 300:
            return _scripted_failure(*scripted)
        return await self._apply_once(
            request,
            f"hook:{workspace_id}",
            workspace_id,
            HOOK_OPERATION,
            ok_status=scripted[0] if scripted else 200,
        )

    def _signature_ok(self, workspace_id: str, raw: bytes, header: str | None) -> bool:
        # Written here from the protocol, not imported from agents/, so it checks the sender
        # independently: secret = HMAC(signing_key, workspace_id), sig = HMAC(secret, body).
        if self._signing_key is None or header is None or not header.startswith("sha256="):
            return False
        secret = hmac.new(
            self._signing_key.encode(), workspace_id.encode(), hashlib.sha256
        ).digest()
        expected = hmac.new(secret, raw, hashlib.sha256).hexdigest()
        return hmac.compare_digest(header.removeprefix("sha256=").encode(), expected.encode())

    # -- idempotency (shared by the control API and the webhook receiver) -----------------

    async def _apply_once(
        self,
        request: web.Request,
        scope: str,
        workspace_id: str,
        operation: str,
        *,
        ok_status: int,
    ) -> web.Response:
        """Apply the request's effect once per idempotency key, Stripe-style."""
        key = request.headers.get("Idempotency-Key")
        if key is None or not 1 <= len(key) <= _MAX_KEY_CHARS or not key.isprintable():
            return _error(400, "Idempotency-Key header required (1-200 printable characters)")
        body = _json_object(await request.read())
        if body is None:
            return _error(400, "body must be a JSON object")
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        fingerprint = hashlib.sha256(f"{request.path}\n{canonical}".encode()).hexdigest()

        stored = self._stored.get((scope, key))
        if stored is not None:
            if not stored.done:
                return _error(409, "in progress")
            if stored.fingerprint != fingerprint:
                return _error(422, "idempotency key reused with a different request")
            return web.json_response(
                stored.body, status=stored.status, headers={REPLAYED_HEADER: "true"}
            )

        effect_id = "eff_" + hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:12]
        answer = {"status": "done", "effect_id": effect_id, "operation": operation}
        stored = _Stored(fingerprint=fingerprint, status=ok_status, body=answer)
        self._stored[(scope, key)] = stored
        # The effect is applied before the (optional) delay: a client that gives up waiting
        # leaves an applied effect whose answer it never saw, the case idempotency is for.
        self.effects.append(Effect(key, workspace_id, operation, body, time.time()))
        delay = self.delays.get(workspace_id, self.delay_seconds)
        try:
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            # Even if stop() cuts the delay short, the key must not stay "in progress" forever.
            stored.done = True
        return web.json_response(answer, status=ok_status)

    def _next_scripted(self, workspace_id: str, operation: str) -> tuple[int, float | None] | None:
        queue = self._scripts.get((workspace_id, operation))
        if not queue:
            return None
        try:
            entry = queue.popleft()
        except IndexError:  # emptied by a concurrent request since the check above
            return None
        return (entry[0], entry[1]) if isinstance(entry, tuple) else (entry, None)

    # -- OpenAI-compatible chat completions ------------------------------------------------

    async def _chat_completions(self, request: web.Request) -> web.Response:
        if self.llm_down:
            return _llm_error(503, "unavailable", "server_error")
        if not _bearer_ok(request, self._llm_key):
            return _llm_error(401, "Incorrect API key provided.", code="invalid_api_key")
        body = _json_object(await request.read())
        if body is None:
            return _llm_error(400, "The request body must be a JSON object.")
        self.llm_requests.append(body)
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not isinstance(messages, list) or not messages:
            return _llm_error(400, "'model' and a non-empty 'messages' list are required.")
        if body.get("stream"):
            return _llm_error(400, "Streaming is not supported by the sandbox.")

        last_user = next(
            (
                _message_text(m)
                for m in reversed(messages)
                if isinstance(m, dict) and m.get("role") == "user"
            ),
            "",
        )
        content = f"Hi! Following up on your workspace: {' '.join(last_user.split())[:60]}"
        prompt_tokens = sum(len(_message_text(m).split()) for m in messages)
        completion_tokens = len(content.split())
        # The id is derived from the request so a repeated request gets a repeated answer.
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
        return web.json_response(
            {
                "id": f"chatcmpl-{digest}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        if self.llm_down:
            return _llm_error(503, "unavailable", "server_error")
        if not _bearer_ok(request, self._llm_key):
            return _llm_error(401, "Incorrect API key provided.", code="invalid_api_key")
        model = {"id": LLM_MODEL, "object": "model", "created": 0, "owned_by": "sandbox"}
        return web.json_response({"object": "list", "data": [model]})


def _bearer_ok(request: web.Request, token: str | None) -> bool:
    """True if no token is configured or the request carries it (compared in constant time)."""
    if token is None:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The body parsed as a JSON object, or None if it is not one."""
    try:
        parsed = json.loads(raw)
    except ValueError:  # also covers UnicodeDecodeError
        return None
    return parsed if isinstance(parsed, dict) else None


def _message_text(message: Any) -> str:
    """The plain text of a chat message (string content or a list of text parts)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _scripted_failure(status: int, retry_after: float | None) -> web.Response:
    response = _error(status, HTTPStatus(status).phrase.lower())
    if retry_after is not None:
        # HTTP wants whole seconds, but tests script fractions to stay fast: "2", "0.25".
        response.headers["Retry-After"] = f"{retry_after:f}".rstrip("0").rstrip(".")
    return response


def _llm_error(
    status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": kind}
    if code is not None:
        error["code"] = code
    return web.json_response({"error": error}, status=status)


class SandboxThread:
    """Runs a Sandbox on its own event loop in a daemon thread, for synchronous code."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **sandbox_kwargs: Any) -> None:
        self.sandbox = Sandbox(**sandbox_kwargs)
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Sandbox:
        """Start the loop and the sandbox; returns the started sandbox."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="sandbox", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            started = asyncio.run_coroutine_threadsafe(
                self.sandbox.start(self._host, self._port), loop
            )
            started.result(timeout=10)
        except BaseException:
            self._shut_loop()
            raise
        return self.sandbox

    def __exit__(self, *exc_info: object) -> None:
        """Stop the sandbox, then the loop, and join the thread."""
        if self._loop is None:
            return
        try:
            stopped = asyncio.run_coroutine_threadsafe(self.sandbox.stop(), self._loop)
            stopped.result(timeout=10)
        finally:
            self._shut_loop()

    def _shut_loop(self) -> None:
        assert self._loop is not None and self._thread is not None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = self._thread = None


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sandbox", description="Serve the Autopilot sandbox until SIGINT."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks any free port")
    # Secrets also come from the environment so they stay out of `ps` output.
    env = os.environ
    parser.add_argument("--control-token", default=env.get("SANDBOX_CONTROL_TOKEN") or None)
    parser.add_argument("--signing-key", default=env.get("SANDBOX_SIGNING_KEY") or None)
    parser.add_argument("--llm-key", default=env.get("SANDBOX_LLM_KEY") or None)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    sandbox = Sandbox(
        control_token=args.control_token,
        signing_key=args.signing_key,
        llm_key=args.llm_key,
        delay_seconds=args.delay,
    )
    await sandbox.start(args.host, args.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    try:
        # Whoever started us waits for this one line to know the port is open.
        print(f"sandbox listening on {sandbox.url}", flush=True)
        await stopping.wait()
    finally:
        await sandbox.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve the sandbox until SIGINT/SIGTERM."""
    asyncio.run(_serve(_parse_args(argv)))


if __name__ == "__main__":
    main()
