"""The worker's HTTP endpoints, on Faust's web server: signal ingest and workspace read-back.

- `POST /signals` (ingest token): one signal (a JSON object) or a batch (an array), validated
  exactly as on the signals topic. All valid: published in one record per shard, 202 with the
  ids once the broker has them. Any invalid: 422 with a reason per item and nothing published,
  so the producer fixes and resends the whole request.
- `GET /workspaces/{id}` (control token): the workspace's windows and health, answered by the
  worker that owns its shard (other workers forward the request there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from yarl import URL

from agents.faust_app import Autopilot
from agents.signal_engine import SignalEngine
from core.codec import decode_signals
from core.health import health_of
from core.windows import view
from topics.batches import encode_batches
from topics.limits import MAX_RECORD_BYTES
from topics.shards import Shards
from topics.signals import Signal, is_workspace_id

logger = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Autopilot-Forwarded"
# Which worker read the state: forwarding is otherwise invisible to the caller.
SERVED_BY_HEADER = "X-Autopilot-Served-By"
# A body that is not JSON is malformed (400); one too big is 413; JSON that is not valid
# signals is unprocessable (422).
_STATUS = {"undecodable": 400, "oversize": 413}
FORWARD_TIMEOUT_SECONDS = 10


def attach(autopilot: Autopilot, signals: SignalEngine) -> None:
    """Register the HTTP views on the app's web server."""
    app = autopilot.app
    settings = autopilot.settings
    shards = Shards(settings.partitions)
    signals_topic = autopilot.signals.get_topic_name()

    @app.page("/signals")
    class SignalsView(View):
        async def post(self, request: Request) -> Response:
            http = as_aiohttp(request)
            if http.content_type != "application/json":
                return self.json({"error": "send Content-Type: application/json"}, status=415)
            if (http.content_length or 0) > MAX_RECORD_BYTES:
                return _too_large(self)
            try:
                # aiohttp stops reading past its client_max_size, 1 MiB, our record limit.
                body = await http.read()
            except web.HTTPRequestEntityTooLarge:
                return _too_large(self)
            if len(body) > MAX_RECORD_BYTES:
                return _too_large(self)
            decoded = decode_signals(
                body, time.time(), settings.signal_max_future_seconds, signals.stage.held
            )
            if decoded.rejections:
                logger.warning("ingest refused", extra={"rejected": len(decoded.rejections)})
                return self.json(
                    _refusal(decoded.rejections, len(decoded.signals)),
                    status=_STATUS.get(decoded.rejections[0].kind, 422),
                )
            try:
                await _publish(decoded.signals)
            except KafkaError:
                logger.exception("ingest could not publish")
                return self.json(
                    {"error": "the broker did not take the signals; retry the request"},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            return self.json(
                {"accepted": len(decoded.signals), "ids": [s.id for s in decoded.signals]},
                status=202,
            )

    async def _publish(signals: list[Signal]) -> None:
        by_shard: dict[int, list[Signal]] = {}
        for signal in signals:
            by_shard.setdefault(shards.owner(signal.workspace_id), []).append(signal)
        sent: list[Awaitable[Any]] = []
        for shard, batch in by_shard.items():
            for value in encode_batches(batch):
                sent.append(
                    await app.producer.send(
                        signals_topic, None, value, partition=shard, timestamp=None, headers=None
                    )
                )
        # 202 means the broker has them: wait for every delivery.
        for delivery in sent:
            await delivery

    def _owner_of(workspace_id: str) -> URL | None:
        owner = signals.owner(workspace_id)
        return None if owner is None else _origin(URL(owner))

    self_url = _origin(URL(str(app.conf.canonical_url)))

    @app.page("/workspaces/{workspace_id}")
    class WorkspaceView(View):
        async def get(self, request: Request, workspace_id: str) -> Response:
            if not is_workspace_id(workspace_id):
                return self.json({"error": "not a valid workspace id"}, status=400)
            owner = _owner_of(workspace_id)
            if owner is None:
                return self.json(
                    {"error": "the workspace's shard is being reassigned; retry"},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            if owner != self_url:
                if request.headers.get(FORWARDED_HEADER):
                    # The owner we were told of says it is not the owner: assignments moved.
                    return self.json(
                        {"error": "the workspace's shard is being reassigned; retry"},
                        status=503,
                        headers={"Retry-After": "1"},
                    )
                return await _forward(self, as_aiohttp(request), owner)
            if signals.engine.store(shards.owner(workspace_id)) is None:
                # Named the owner by the last rebalance, but not running the shard (yet).
                return self.json(
                    {"error": "the workspace's shard is being reassigned; retry"},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            state = signals.state(workspace_id)
            if state is None:
                return self.json(
                    {"error": "no signals seen for this workspace"},
                    status=404,
                    headers={SERVED_BY_HEADER: str(self_url)},
                )
            return self.json(
                {
                    "workspace_id": workspace_id,
                    **view(state),
                    "health": health_of(state).as_json(),
                    "policy": state["policy"],
                },
                headers={SERVED_BY_HEADER: str(self_url)},
            )

    del SignalsView, WorkspaceView  # registered on the app by the decorators


def as_aiohttp(request: Request) -> web.Request:
    """The aiohttp request under Faust's Request."""
    # Faust's Request type declares little; with its aiohttp driver the request is aiohttp's.
    return cast(web.Request, request)


async def _forward(view: View, request: web.Request, owner: URL) -> Response:
    """Ask the worker that owns the workspace, passing the caller's credentials on."""
    headers = {
        FORWARDED_HEADER: "1",
        "Authorization": request.headers.get("Authorization", ""),
    }
    try:
        async with view.app.http_client.get(
            owner.with_path(request.path),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS),
        ) as answer:
            served_by = answer.headers.get(SERVED_BY_HEADER)
            return view.bytes(
                await answer.read(),
                content_type=answer.content_type,
                status=answer.status,
                headers={SERVED_BY_HEADER: served_by} if served_by else None,
            )
    except (aiohttp.ClientError, TimeoutError):
        logger.warning("owner of the workspace unreachable", extra={"owner": str(owner)})
        return view.json(
            {"error": "the worker owning this workspace did not answer; retry"},
            status=503,
            headers={"Retry-After": "1"},
        )


def _origin(url: URL) -> URL:
    return URL.build(scheme=url.scheme or "http", host=url.host or "", port=url.port)


def _too_large(view: View) -> Response:
    return view.json({"error": f"request body over {MAX_RECORD_BYTES} bytes"}, status=413)


def _refusal(rejections: list[Any], valid: int) -> dict[str, Any]:
    return {
        "accepted": 0,
        "valid": valid,
        "errors": [
            {"index": rejection.index, "reason": rejection.reason} for rejection in rejections
        ],
    }
