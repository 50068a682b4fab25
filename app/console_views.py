"""The live operator console and the platform-wide reads behind it (control token).

- `GET /console`: the page (app/console.html: no script or style from elsewhere). A browser
  without a session gets the sign-in form; `POST /console/session` takes the control token
  once and sets the session cookie (app/http_access.py).
- `GET /console/data`: what the page polls every two seconds: the platform from the
  projections (health, worst workspaces, decisions and actions per interval by priority, dead
  letters, the approvals inbox, recent outcomes) and this worker live (readiness, shards and
  their modes, breakers, what its signal stage counted).
- `GET /approvals`: the commands waiting for an operator's verdict.
- `GET /snapshot`: the platform in one object, as the seed orchestrator's snapshot gave it.
- `GET /status`: this worker: ready or why not, its shards and their modes, its breakers.

The platform reads come from the projections database the worker's projector fills (every
projector folds the whole ledger); with no read models there they answer 503 saying so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from importlib.resources import files
from typing import Any, cast
from urllib.parse import parse_qs

from aiohttp import web
from faust.web import Request, Response, View

from agents.executor import Executor
from agents.faust_app import Autopilot
from agents.signal_engine import SignalEngine
from app.http_access import SESSION_COOKIE, session_value, token_matches
from app.projection_reads import ProjectionReads
from app.views import as_aiohttp
from projections.database import Database, DatabaseError
from projections.platform_view import awaiting_approval, platform_view, recent_outcomes
from projections.report import ProjectionsMissingError

PAGE = files("app").joinpath("console.html").read_bytes()
SIGN_IN = files("app").joinpath("console_sign_in.html").read_bytes()
MAX_SIGN_IN_BYTES = 4096
# How long a console session lasts in the browser (it also ends when the token changes).
SESSION_SECONDS = 12 * 3600


def attach(
    autopilot: Autopilot,
    signals: SignalEngine,
    executor: Executor,
    not_ready: Callable[[], str | None],
    reads: ProjectionReads,
    lanes: Callable[[], dict[str, int] | None],
) -> None:
    """Register the console and the platform reads on the app's web server; `lanes` gives
    the lane backlogs as last counted (None: not yet)."""
    app = autopilot.app
    settings = autopilot.settings
    status = partial(
        worker_status, signals, executor, not_ready, str(app.conf.canonical_url), lanes
    )

    async def platform(view: View, query: Callable[[Database], Any]) -> Any:
        try:
            return await reads.read(query)
        except (ProjectionsMissingError, DatabaseError) as exc:
            return view.json(
                {"error": str(exc), "hint": "AUTOPILOT_PROJECTOR_ENABLED fills the read models"},
                status=503,
            )

    @app.page("/console")
    class ConsoleView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                PAGE,
                content_type="text/html",
                headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
            )

    @app.page("/console/session")
    class SessionView(View):
        async def post(self, request: Request) -> Response:
            http = as_aiohttp(request)
            raw = await http.content.read(MAX_SIGN_IN_BYTES + 1)
            given = parse_qs(raw.decode(errors="replace")).get("token", [""])[0]
            token = settings.control_token
            if token is None or len(raw) > MAX_SIGN_IN_BYTES or not token_matches(given, token):
                return self.bytes(SIGN_IN, content_type="text/html", status=401)
            response = self.bytes(b"", status=303, headers={"Location": "/console"})
            # Faust's aiohttp driver answers with aiohttp's responses.
            cast(web.Response, response).set_cookie(
                SESSION_COOKIE,
                session_value(token),
                max_age=SESSION_SECONDS,
                httponly=True,
                samesite="Strict",
                path="/",
            )
            return response

    @app.page("/console/data")
    class ConsoleDataView(View):
        async def get(self, request: Request) -> Response:
            view = await platform(self, _platform_json)
            if isinstance(view, Response):
                return view
            return self.json({"platform": view, "worker": status()})

    @app.page("/approvals")
    class ApprovalsView(View):
        async def get(self, request: Request) -> Response:
            waiting = await platform(self, awaiting_approval)
            if isinstance(waiting, Response):
                return waiting
            return self.json({"awaiting_approval": [asdict(w) for w in waiting]})

    @app.page("/snapshot")
    class SnapshotView(View):
        async def get(self, request: Request) -> Response:
            view = await platform(self, lambda db: platform_view(db).as_json())
            if isinstance(view, Response):
                return view
            return self.json(view)

    @app.page("/status")
    class StatusView(View):
        async def get(self, request: Request) -> Response:
            return self.json(status())

    del ConsoleView, SessionView, ConsoleDataView, ApprovalsView, SnapshotView, StatusView


# The page's own script and style only: nothing from elsewhere runs in it.
_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline';"
    " img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)


def worker_status(
    signals: SignalEngine,
    executor: Executor,
    not_ready: Callable[[], str | None],
    address: str,
    lanes: Callable[[], dict[str, int] | None],
) -> dict[str, Any]:
    """This worker as `GET /status` and the console show it."""
    reason = not_ready()
    totals = signals.stage.totals
    return {
        "worker": address,
        "ready": reason is None,
        "reason": reason,
        "partitions": signals.engine.owned,
        "modes": {str(p): mode for p, mode in sorted(signals.modes().items())},
        "breakers": executor.breakers.states(),
        "counted": {
            "signals_folded": totals.get(("folded",), 0),
            "signals_rejected": sum(n for key, n in totals.items() if key[0] == "rejected"),
            "decisions": sum(n for key, n in totals.items() if key[0] == "decision"),
            "actions": dict(sorted(_outcomes(executor).items())),
        },
        "lag": sum(signals.engine.lag().values()),
        "lane_backlog": lanes(),
    }


def _platform_json(database: Database) -> dict[str, Any]:
    view = platform_view(database).as_json()
    view["recent_outcomes"] = [asdict(o) for o in recent_outcomes(database)]
    return view


def _outcomes(executor: Executor) -> dict[str, int]:
    by_outcome: dict[str, int] = {}
    for (_, outcome), count in executor.outcomes.items():
        by_outcome[outcome] = by_outcome.get(outcome, 0) + count
    return by_outcome
