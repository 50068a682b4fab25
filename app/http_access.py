"""Who may call which route: one aiohttp middleware in front of everything the worker serves.

- The probes (`/health`, `/ready`, `/version`) and `/openapi.json` are open: they tell nothing
  about a workspace, and a load balancer or an orchestrator calls them without credentials.
- `/metrics` is open unless `AUTOPILOT_METRICS_TOKEN` is set.
- `POST /signals` takes the ingest token. Every other route, known or not, takes the control
  token: a caller without it learns nothing (an unknown path is 401 to them, 404 only with
  the token), and a route added later, Faust's own included, is never left open by mistake.
- A browser cannot send a bearer token when it opens a page, so the console's sign-in
  (`POST /console/session`, open) checks the control token once and sets a session cookie
  (HttpOnly, SameSite=Strict: never sent by another site's page) that stands for it on the
  control routes. The cookie is an HMAC of the token: rotating the token ends every session.

A route whose token is not set answers 503 naming the setting. Tokens are compared in constant
time. Every answer, refusals included, is counted by route and status.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from aiohttp.typedefs import Middleware
from pydantic import SecretStr

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Called once per request: route (its pattern, never the path), method, status.
CountRequest = Callable[[str, str, int], None]

# The route label of a request that matched no route: its path is unbounded, so not a label.
UNMATCHED = "unmatched"


class Access(StrEnum):
    """Which credential a route asks for."""

    OPEN = "open"
    METRICS = "metrics"
    INGEST = "ingest"
    CONTROL = "control"


# (method, route pattern) → access; anything not listed takes the control token.
ROUTE_ACCESS: dict[tuple[str, str], Access] = {
    ("GET", "/health"): Access.OPEN,
    ("GET", "/ready"): Access.OPEN,
    ("GET", "/version"): Access.OPEN,
    ("GET", "/openapi.json"): Access.OPEN,
    ("GET", "/metrics"): Access.METRICS,
    ("POST", "/signals"): Access.INGEST,
    ("POST", "/console/session"): Access.OPEN,
}
SESSION_COOKIE = "autopilot_console"
CONSOLE = "/console"


@dataclass(frozen=True)
class Tokens:
    """The worker's HTTP credentials (None: the routes asking for that one are disabled)."""

    ingest: SecretStr | None
    control: SecretStr | None
    # Unlike the others, no token here means open: scrapers often run without one.
    metrics: SecretStr | None = None


def route_of(request: web.Request) -> str:
    """The pattern of the route a request matched (`/workspaces/{workspace_id}`), or UNMATCHED."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def access_of(method: str, route: str) -> Access:
    """What a request to this route must carry (HEAD as GET: a probe may use either)."""
    return ROUTE_ACCESS.get(("GET" if method == "HEAD" else method, route), Access.CONTROL)


def refusal(access: Access, tokens: Tokens, request: web.Request) -> web.Response | None:
    """The answer refusing the request (401, or 503 for a disabled route), or None to serve it."""
    if access is Access.OPEN:
        return None
    if access is Access.METRICS:
        if tokens.metrics is None:
            return None
        return _check(request, tokens.metrics)
    token = tokens.ingest if access is Access.INGEST else tokens.control
    if token is None:
        setting = f"AUTOPILOT_{access.value.upper()}_TOKEN"
        return web.json_response(
            {"error": f"this endpoint is disabled: set {setting} on the worker"}, status=503
        )
    if access is Access.CONTROL and hmac.compare_digest(
        request.cookies.get(SESSION_COOKIE, "").encode(), session_value(token).encode()
    ):
        return None
    return _check(request, token)


def session_value(control: SecretStr) -> str:
    """The console session cookie's value for this control token."""
    key = control.get_secret_value().encode()
    return hmac.new(key, b"autopilot console session", hashlib.sha256).hexdigest()


def token_matches(given: str, token: SecretStr) -> bool:
    """Whether `given` is the token (in constant time)."""
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def _check(request: web.Request, token: SecretStr) -> web.Response | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(given, token):
        return None
    return web.json_response(
        {"error": "missing or wrong bearer token"},
        status=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


def access_middleware(
    tokens: Tokens, count: CountRequest, sign_in: bytes | None = None
) -> Middleware:
    """The middleware: refuse what lacks its credential, count every answer. A browser refused
    the console page gets the `sign_in` page (HTML) instead of JSON."""

    @web.middleware
    async def check_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_of(request)
        refused = refusal(access_of(request.method, route), tokens, request)
        if (
            refused is not None
            and sign_in is not None
            and route == CONSOLE
            and refused.status == 401
        ):
            refused = web.Response(body=sign_in, status=401, content_type="text/html")
        if refused is not None:
            count(route, request.method, refused.status)
            return refused
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            count(route, request.method, exc.status)
            raise
        except BaseException:
            count(route, request.method, 500)
            raise
        count(route, request.method, response.status)
        return response

    return check_access
