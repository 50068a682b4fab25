"""`GET /openapi.json`: an OpenAPI 3.1 description of every route the worker serves.

Kept here, beside the views, rather than generated: Faust's views carry no schema. A test
compares it with the routes the running worker serves, both ways
(tests/integration/test_probes.py), so neither can drift from the other.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response, View

from agents.faust_app import Autopilot
from app.http_access import ROUTE_ACCESS, SESSION_COOKIE, Access
from app.probe_views import package_version

_ERROR = {
    "description": "",
    "content": {
        "application/json": {
            "schema": {"type": "object", "properties": {"error": {"type": "string"}}}
        }
    },
}
_SECURITY: dict[Access, list[dict[str, list[str]]]] = {
    Access.OPEN: [],
    Access.METRICS: [{}, {"metricsToken": []}],
    Access.INGEST: [{"ingestToken": []}],
    Access.CONTROL: [{"controlToken": []}, {"consoleSession": []}],
}
_ANY_JSON: dict[str, Any] = {"application/json": {"schema": {}}}


def _optional_body(*fields: str) -> dict[str, Any]:
    """An optional JSON object body of text fields, nothing else."""
    properties = {name: {"type": "string"} for name in fields}
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"required": False, "content": {"application/json": {"schema": schema}}}


_OPERATOR_BODY = _optional_body("by", "reason")
_RUN_ONCE_BODY = _optional_body("schedule", "by", "reason")


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _operation(
    method: str,
    path: str,
    summary: str,
    answers: dict[int, str],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> tuple[str, str, dict[str, Any]]:
    access = ROUTE_ACCESS.get((method.upper(), path), Access.CONTROL)
    responses: dict[str, Any] = {
        str(status): {**_ERROR, "description": text} if status >= 400 else {"description": text}
        for status, text in answers.items()
    }
    if access in (Access.INGEST, Access.CONTROL):
        responses.setdefault("401", {**_ERROR, "description": "missing or wrong bearer token"})
        responses.setdefault(
            "503", {**_ERROR, "description": "the route's token is not set on the worker"}
        )
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _SECURITY[access],
        "responses": responses,
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return path, method, operation


_WORKSPACE = _path_parameter("workspace_id", "a workspace id (`ws-…`)")
OPERATIONS = [
    _operation("get", "/health", "The process is alive.", {200: "alive"}),
    _operation(
        "get",
        "/ready",
        "Joined its groups, every assigned partition restored, consuming.",
        {200: "ready", 503: "not ready; `reason` says why"},
    ),
    _operation(
        "get", "/version", "Package, policy and schema versions, git revision.", {200: "versions"}
    ),
    _operation(
        "get",
        "/metrics",
        "Prometheus text format.",
        {200: "the metrics", 401: "AUTOPILOT_METRICS_TOKEN is set and not sent"},
    ),
    _operation("get", "/openapi.json", "This description.", {200: "OpenAPI 3.1"}),
    _operation("get", "/", "Faust's index page.", {200: '`{"status": "OK"}`'}),
    _operation(
        "post",
        "/signals",
        "Publish one signal or a batch (docs/signals.md).",
        {
            202: "all published; their ids",
            400: "the body is not JSON",
            413: "the body is too large",
            415: "not sent as application/json",
            422: "invalid signals; a reason per item, nothing published",
        },
        body={"required": True, "content": _ANY_JSON},
    ),
    _operation(
        "get",
        "/workspaces/{workspace_id}",
        "A workspace's windows, gauges and health, from its shard's owner.",
        {200: "the state", 400: "not a workspace id", 404: "never seen", 503: "being reassigned"},
        parameters=[_WORKSPACE],
    ),
    _operation(
        "get", "/operator", "The mode of this worker's shards, and its breakers.", {200: "modes"}
    ),
    _operation(
        "post", "/enable", "Resume decisions on every shard.", {202: "sent"}, body=_OPERATOR_BODY
    ),
    _operation(
        "post", "/disable", "Pause decisions on every shard.", {202: "sent"}, body=_OPERATOR_BODY
    ),
    _operation(
        "post",
        "/run-once",
        "Run the policy's sweeps (or `schedule`'s) now on this worker's shards; each shard "
        "records a `sweep.completed`.",
        {
            202: "the broker has a tick per shard",
            404: "no such sweep schedule",
            503: "the worker is not ready",
        },
        body=_RUN_ONCE_BODY,
    ),
    _operation(
        "get",
        "/console",
        "The live operator console (HTML); without a session, the sign-in form (401).",
        {200: "the page"},
    ),
    _operation(
        "post",
        "/console/session",
        "Sign in to the console with the control token (form field `token`).",
        {303: "signed in: a session cookie, and on to /console", 401: "wrong token"},
        body={
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"token": {"type": "string"}}}
                }
            },
        },
    ),
    _operation(
        "get",
        "/console/data",
        "What the console shows: the platform (projections) and this worker, live.",
        {200: "the data", 503: "no read models in the projections database"},
    ),
    _operation(
        "get",
        "/approvals",
        "Commands waiting for an operator's verdict, oldest first.",
        {200: "the list", 503: "no read models in the projections database"},
    ),
    _operation(
        "get",
        "/snapshot",
        "The platform: health per status, worst workspaces, per-interval counts, dead letters.",
        {200: "the snapshot", 503: "no read models in the projections database"},
    ),
    _operation(
        "get", "/status", "This worker: ready or why not, shards, modes, breakers.", {200: "status"}
    ),
    _operation(
        "post",
        "/operator/{name}",
        'An operator switch: pause, resume or dry-run (`{"enabled": bool}`).',
        {202: "the broker has the switch", 404: "unknown switch", 422: "invalid body"},
        parameters=[_path_parameter("name", "pause, resume or dry-run")],
        body=_OPERATOR_BODY,
    ),
    _operation(
        "post",
        "/approvals/{workspace_id}/{command_id}/{verdict}",
        "Approve or reject a command waiting for an operator.",
        {202: "the broker has the verdict", 404: "unknown verdict", 422: "invalid body"},
        parameters=[
            _WORKSPACE,
            _path_parameter("command_id", "the command's id"),
            _path_parameter("verdict", "approve or reject"),
        ],
        body=_OPERATOR_BODY,
    ),
    _operation(
        "get",
        "/parked",
        "Workspaces parked by a dead letter, parked longest first: since, why, commands held.",
        {200: "the list", 503: "no read models in the projections database"},
    ),
    _operation(
        "post",
        "/parked/{workspace_id}/release",
        "Release a parked workspace: its held commands run in the order they came.",
        {202: "the broker has the release", 400: "not a workspace id", 422: "invalid body"},
        parameters=[_WORKSPACE],
        body=_OPERATOR_BODY,
    ),
    _operation(
        "post",
        "/parked/{workspace_id}/drop",
        "Drop what waits behind a parked workspace: each held command ends as skipped.",
        {202: "the broker has the drop", 400: "not a workspace id", 422: "invalid body"},
        parameters=[_WORKSPACE],
        body=_OPERATOR_BODY,
    ),
]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method, operation in OPERATIONS:
        paths.setdefault(path, {})[method] = operation
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Autopilot worker", "version": package_version() or "unknown"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ingestToken": {**bearer, "description": "AUTOPILOT_INGEST_TOKEN"},
                "controlToken": {**bearer, "description": "AUTOPILOT_CONTROL_TOKEN"},
                "metricsToken": {**bearer, "description": "AUTOPILOT_METRICS_TOKEN, when set"},
                "consoleSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "set by POST /console/session",
                },
            }
        },
    }


def attach(autopilot: Autopilot) -> None:
    """Register `GET /openapi.json`."""
    served = document()

    @autopilot.app.page("/openapi.json")
    class OpenApiView(View):
        async def get(self, request: Request) -> Response:
            return self.json(served)

    del OpenApiView  # registered by the decorator
