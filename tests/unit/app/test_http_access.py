"""The access middleware in front of a real aiohttp server on loopback: which route asks for
which token, what a caller without it gets, and that every answer is counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from app.http_access import SESSION_COOKIE, Tokens, access_middleware, session_value

INGEST = "ingest-token-for-tests"
CONTROL = "control-token-for-tests"
METRICS = "metrics-token-for-tests"
JSON = "application/json"


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"served": request.path})


async def _fails(request: web.Request) -> web.Response:
    raise RuntimeError("a handler's own error")


async def serve(tokens: Tokens) -> tuple[TestServer, list[tuple[str, str, int]]]:
    counted: list[tuple[str, str, int]] = []
    app = web.Application(
        middlewares=[access_middleware(tokens, lambda *answer: counted.append(answer))]
    )
    for path in ("/health", "/ready", "/version", "/openapi.json", "/metrics", "/operator"):
        app.router.add_get(path, _ok)
    app.router.add_post("/signals", _ok)
    app.router.add_get("/workspaces/{workspace_id}", _ok)
    app.router.add_get("/broken", _fails)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, counted


@pytest.fixture
async def full() -> AsyncIterator[tuple[TestServer, list[tuple[str, str, int]]]]:
    served = await serve(Tokens(SecretStr(INGEST), SecretStr(CONTROL)))
    yield served
    await served[0].close()


async def call(
    server: TestServer, method: str, path: str, token: str | None = None
) -> tuple[int, Any]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, str(server.make_url(path)), headers=headers) as answer,
    ):
        text = await answer.text()
        return answer.status, orjson.loads(text) if answer.content_type == JSON else text


@pytest.mark.parametrize("path", ["/health", "/ready", "/version", "/openapi.json", "/metrics"])
async def test_probes_metrics_and_the_description_need_no_token(
    full: tuple[TestServer, list[Any]], path: str
) -> None:
    server, _ = full

    assert await call(server, "GET", path) == (200, {"served": path})


async def test_ingest_takes_the_ingest_token_and_only_it(
    full: tuple[TestServer, list[Any]],
) -> None:
    server, _ = full

    assert (await call(server, "POST", "/signals"))[0] == 401
    assert (await call(server, "POST", "/signals", CONTROL))[0] == 401
    assert await call(server, "POST", "/signals", INGEST) == (200, {"served": "/signals"})


async def test_every_other_route_takes_the_control_token(
    full: tuple[TestServer, list[Any]],
) -> None:
    server, _ = full

    assert await call(server, "GET", "/workspaces/ws-1") == (
        401,
        {"error": "missing or wrong bearer token"},
    )
    assert (await call(server, "GET", "/workspaces/ws-1", INGEST))[0] == 401
    assert await call(server, "GET", "/workspaces/ws-1", CONTROL) == (
        200,
        {"served": "/workspaces/ws-1"},
    )


async def test_an_unknown_route_is_401_without_the_token_and_404_with_it(
    full: tuple[TestServer, list[Any]],
) -> None:
    """Faust's /table and /router included: a caller without the token learns nothing."""
    server, _ = full

    assert (await call(server, "GET", "/table/workspace-state/ws-000001/"))[0] == 401
    assert (await call(server, "GET", "/router/"))[0] == 401
    assert (await call(server, "GET", "/table/workspace-state/ws-000001/", CONTROL))[0] == 404


async def test_a_route_whose_token_is_unset_says_which_setting_enables_it() -> None:
    server, _ = await serve(Tokens(ingest=None, control=SecretStr(CONTROL)))
    try:
        assert await call(server, "POST", "/signals", INGEST) == (
            503,
            {"error": "this endpoint is disabled: set AUTOPILOT_INGEST_TOKEN on the worker"},
        )
    finally:
        await server.close()


async def test_metrics_take_their_own_token_when_one_is_set() -> None:
    server, _ = await serve(Tokens(SecretStr(INGEST), SecretStr(CONTROL), SecretStr(METRICS)))
    try:
        assert (await call(server, "GET", "/metrics"))[0] == 401
        assert (await call(server, "GET", "/metrics", CONTROL))[0] == 401
        assert (await call(server, "GET", "/metrics", METRICS))[0] == 200
        assert (await call(server, "GET", "/health"))[0] == 200
    finally:
        await server.close()


async def test_every_answer_is_counted_by_route_pattern_never_by_path(
    full: tuple[TestServer, list[Any]],
) -> None:
    server, counted = full

    await call(server, "GET", "/workspaces/ws-1")
    await call(server, "GET", "/workspaces/ws-2", CONTROL)
    await call(server, "GET", "/nowhere/ws-3", CONTROL)
    await call(server, "GET", "/broken", CONTROL)

    assert counted == [
        ("/workspaces/{workspace_id}", "GET", 401),
        ("/workspaces/{workspace_id}", "GET", 200),
        ("unmatched", "GET", 404),
        ("/broken", "GET", 500),
    ]


async def test_the_console_session_cookie_stands_for_the_control_token_and_only_it(
    full: tuple[TestServer, list[Any]],
) -> None:
    server, _ = full
    good = session_value(SecretStr(CONTROL))
    stale = session_value(SecretStr("an-older-control-token"))

    async def with_cookie(value: str, method: str, path: str) -> int:
        async with (
            aiohttp.ClientSession(cookies={SESSION_COOKIE: value}) as session,
            session.request(method, str(server.make_url(path))) as answer,
        ):
            return answer.status

    assert await with_cookie(good, "GET", "/workspaces/ws-1") == 200
    assert await with_cookie(stale, "GET", "/workspaces/ws-1") == 401
    assert await with_cookie(good, "POST", "/signals") == 401  # ingest is not the console's


async def test_a_browser_refused_the_console_gets_the_sign_in_page() -> None:
    app = web.Application(
        middlewares=[
            access_middleware(
                Tokens(SecretStr(INGEST), SecretStr(CONTROL)), lambda *_: None, b"<form>sign in"
            )
        ]
    )
    app.router.add_get("/console", _ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        assert await call(server, "GET", "/console") == (401, "<form>sign in")
        assert await call(server, "GET", "/console", CONTROL) == (200, {"served": "/console"})
    finally:
        await server.close()
