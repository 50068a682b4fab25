"""`GET /openapi.json` against the routes a worker really registers: every served route is
described and every described route served (tests/integration/test_probes.py checks, over
HTTP, that each asks for the credential it is described with)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from faust.web.drivers.aiohttp import Web as AiohttpWeb

from app.openapi_views import document
from app.settings import Settings
from app.worker import build_worker


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, route pattern) of every route the worker's web server registers; HEAD aside
    (Faust's views answer it beside each method, and OpenAPI implies it for GET)."""
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        data_dir=tmp_path,
        ingest_token="ingest-token-for-tests",
        control_token="control-token-for-tests",
    )
    autopilot = build_worker(settings, "127.0.0.1:9")
    web = cast(AiohttpWeb, autopilot.app.web)
    web.init_server()  # what the server does at start: Faust's blueprints join the views
    return {
        (route.method, route.resource.canonical)
        for route in web.web_app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_served_route_is_described_and_every_described_route_served(
    tmp_path: Path,
) -> None:
    described = {
        (method.upper(), path)
        for path, operations in document()["paths"].items()
        for method in operations
    }

    assert described == served_routes(tmp_path)


def test_faust_table_and_router_routes_are_not_served(tmp_path: Path) -> None:
    prefixes = {path.split("/")[1] for _, path in served_routes(tmp_path)}

    assert "table" not in prefixes
    assert "router" not in prefixes
