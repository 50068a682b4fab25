"""The operator's switches over HTTP (control token): pause/resume decisions, dry-run on/off.

`POST /operator/pause`, `/operator/resume`, `/operator/dry-run` (`{"enabled": true|false}`), each
with an optional JSON body `{"by": "name", "reason": "text"}`. The switch is sent to every shard
on the `control` topic and answered 202 once the broker has it; each shard applies it in order
and records an `operator.*` ledger entry. `GET /operator` shows the mode of this worker's shards.
`POST /enable` and `/disable` are resume and pause under the seed orchestrator's names.
`POST /run-once` (optional `{"schedule": "id", "by": "name"}`) runs the policy's sweeps now on
this worker's shards, besides their schedule: one `sweep.completed` entry per shard follows.
"""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from pydantic import ValidationError

from agents.executor import Executor
from agents.faust_app import Autopilot
from agents.signal_engine import SignalEngine
from agents.ticker import NoSweepError, Ticker
from app.views import as_aiohttp
from core.codec import describe
from topics.control import OperatorSwitch, Switch

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def attach(autopilot: Autopilot, signals: SignalEngine, executor: Executor, ticker: Ticker) -> None:
    """Register the operator endpoints on the app's web server."""
    app = autopilot.app
    settings = autopilot.settings
    control_topic = autopilot.control.get_topic_name()

    async def switch(view: View, request: Request, name: str) -> Response:
        body = await operator_body(view, request)
        if not isinstance(body, dict):
            return body
        if name == "dry-run":
            enabled = body.pop("enabled", None)
            if not isinstance(enabled, bool):
                return view.json(
                    {"error": 'send {"enabled": true} or {"enabled": false}'}, status=422
                )
            chosen = Switch.DRY_RUN_ON if enabled else Switch.DRY_RUN_OFF
        else:
            chosen = Switch.PAUSE if name == "pause" else Switch.RESUME
        unknown = unknown_fields(view, body)
        if unknown is not None:
            return unknown
        try:
            request_ = OperatorSwitch.model_validate(
                {
                    **body,
                    "request_id": f"req-{uuid.uuid4().hex}",
                    "switch": chosen,
                    "requested_at": datetime.now(UTC),
                }
            )
        except ValidationError as exc:
            return view.json({"error": describe(exc)}, status=422)
        value = request_.model_dump_json().encode()
        try:
            sent = [
                await app.producer.send(
                    control_topic, None, value, partition=shard, timestamp=None, headers=None
                )
                for shard in range(settings.partitions)
            ]
            for delivery in sent:
                await delivery
        except KafkaError:
            logger.exception("operator switch could not be published")
            return broker_refused(view, "switch")
        logger.warning(
            "operator switch requested",
            extra={"switch": chosen.value, "by": request_.by, "request_id": request_.request_id},
        )
        return view.json(
            {
                "request_id": request_.request_id,
                "switch": chosen.value,
                "shards": settings.partitions,
            },
            status=202,
        )

    @app.page("/operator/{name}")
    class OperatorSwitchView(View):
        async def post(self, request: Request, name: str) -> Response:
            if name not in {"pause", "resume", "dry-run"}:
                return self.json(
                    {"error": "unknown switch; use pause, resume or dry-run"}, status=404
                )
            return await switch(self, request, name)

    @app.page("/operator")
    class OperatorView(View):
        async def get(self, request: Request) -> Response:
            return self.json(
                {
                    "shards": {str(p): mode for p, mode in sorted(signals.modes().items())},
                    # This worker's view of its providers (each worker judges those it calls).
                    "breakers": executor.breakers.states(),
                }
            )

    # The seed orchestrator's names for resume and pause.
    @app.page("/enable")
    class EnableView(View):
        async def post(self, request: Request) -> Response:
            return await switch(self, request, "resume")

    @app.page("/disable")
    class DisableView(View):
        async def post(self, request: Request) -> Response:
            return await switch(self, request, "pause")

    @app.page("/run-once")
    class RunOnceView(View):
        async def post(self, request: Request) -> Response:
            return await run_once(self, request, signals, ticker)

    del OperatorSwitchView, OperatorView, EnableView, DisableView, RunOnceView


async def run_once(view: View, request: Request, signals: SignalEngine, ticker: Ticker) -> Response:
    """`POST /run-once`: a tick of the policy's sweeps (or one of them) on this worker's shards."""
    body = await operator_body(view, request)
    if not isinstance(body, dict):
        return body
    schedule = body.pop("schedule", None)
    if schedule is not None and not isinstance(schedule, str):
        return view.json({"error": "schedule must be a schedule's id"}, status=422)
    unknown = unknown_fields(view, body)
    if unknown is not None:
        return unknown
    by = body.get("by", "operator")
    if not isinstance(by, str) or not OPERATOR_NAME.fullmatch(by):
        return view.json({"error": "by must be a name (letters, digits, _.@-)"}, status=422)
    why_not = signals.engine.not_ready()
    if why_not is not None:
        return view.json(
            {"error": f"this worker is not ready: {why_not}"},
            status=503,
            headers={"Retry-After": "5"},
        )
    try:
        ticks = await ticker.run_once(schedule, by)
    except NoSweepError as exc:
        return view.json({"error": str(exc)}, status=404)
    except KafkaError:
        logger.exception("run-once tick could not be published")
        return broker_refused(view, "run")
    logger.warning(
        "sweep run requested",
        extra={"schedule": schedule, "by": by, "reason": body.get("reason"), "ticks": len(ticks)},
    )
    return view.json(
        {
            "ticks": [
                {"tick_id": t.tick_id, "schedule": t.schedule, "shard": t.shard} for t in ticks
            ],
            "due_at": ticks[0].due_at.isoformat() if ticks else None,
        },
        status=202,
    )


async def operator_body(view: View, request: Request) -> dict[str, Any] | Response:
    """An operator request's optional JSON object body, or the refusal to answer with."""
    http = as_aiohttp(request)
    raw = await http.read() if http.can_read_body else b""
    if len(raw) > MAX_BODY_BYTES:
        return view.json({"error": f"request body over {MAX_BODY_BYTES} bytes"}, status=413)
    if not raw.strip():
        return {}
    try:
        loaded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return view.json({"error": "the body is not JSON"}, status=400)
    if not isinstance(loaded, dict):
        return view.json({"error": "the body must be a JSON object"}, status=422)
    return loaded


def unknown_fields(view: View, body: dict[str, Any]) -> Response | None:
    """A 422 naming fields other than `by` and `reason`, or None."""
    unknown = sorted(set(body) - {"by", "reason"})
    if not unknown:
        return None
    return view.json(
        {"error": f"unknown fields: {', '.join(unknown)}; send only by and reason"}, status=422
    )


def broker_refused(view: View, what: str) -> Response:
    """503 with Retry-After: the broker did not take what the operator sent."""
    return view.json(
        {"error": f"the broker did not take the {what}; retry the request"},
        status=503,
        headers={"Retry-After": "1"},
    )
