"""Parked workspaces over HTTP (control token): a dead letter parked them, their later
commands wait.

- `GET /parked`: the parked workspaces, parked longest first, from the projections (since
  when, why, how many commands wait); 503 when the projections database has no read models.
- `POST /parked/{workspace_id}/release`: the held commands run, in the order they came.
- `POST /parked/{workspace_id}/drop`: each held command ends as `action.skipped`.
Both take an optional JSON body `{"by": "name", "reason": "text"}`; the release goes on the
`approvals` topic to the workspace's shard and is answered 202 once the broker has it. The
shard's executor records `workspace.released`; for a workspace that is not parked it changes
nothing (and logs it).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from pydantic import ValidationError

from agents.faust_app import Autopilot
from app.operator_views import broker_refused, operator_body, unknown_fields
from app.projection_reads import ProjectionReads
from core.codec import describe
from projections.database import DatabaseError
from projections.parked import parked_workspaces
from projections.report import ProjectionsMissingError
from topics.approvals import ParkingRelease
from topics.signals import is_workspace_id

logger = logging.getLogger(__name__)


def attach(autopilot: Autopilot, reads: ProjectionReads) -> None:
    """Register the parking endpoints on the app's web server."""
    app = autopilot.app
    topic = autopilot.approvals.get_topic_name()

    async def end_parking(view: View, request: Request, workspace_id: str, drop: bool) -> Response:
        if not is_workspace_id(workspace_id):
            return view.json({"error": "not a valid workspace id"}, status=400)
        body = await operator_body(view, request)
        if not isinstance(body, dict):
            return body
        unknown = unknown_fields(view, body)
        if unknown is not None:
            return unknown
        try:
            release = ParkingRelease.model_validate(
                {
                    **body,
                    "request_id": f"req-{uuid.uuid4().hex}",
                    "workspace_id": workspace_id,
                    "drop": drop,
                    "requested_at": datetime.now(UTC),
                }
            )
        except ValidationError as exc:
            return view.json({"error": describe(exc)}, status=422)
        try:
            delivery = await app.producer.send(
                topic,
                workspace_id.encode(),
                release.model_dump_json().encode(),
                partition=None,
                timestamp=None,
                headers=None,
            )
            await delivery
        except KafkaError:
            logger.exception("parking release could not be published")
            return broker_refused(view, "release")
        logger.warning(
            "parking release requested",
            extra={"workspace_id": workspace_id, "drop": drop, "by": release.by},
        )
        return view.json(
            {"request_id": release.request_id, "workspace_id": workspace_id, "drop": drop},
            status=202,
        )

    @app.page("/parked")
    class ParkedView(View):
        async def get(self, request: Request) -> Response:
            try:
                parked = await reads.read(parked_workspaces)
            except (ProjectionsMissingError, DatabaseError) as exc:
                return self.json(
                    {
                        "error": str(exc),
                        "hint": "AUTOPILOT_PROJECTOR_ENABLED fills the read models",
                    },
                    status=503,
                )
            return self.json({"parked": [p.as_json() for p in parked]})

    @app.page("/parked/{workspace_id}/release")
    class ReleaseView(View):
        async def post(self, request: Request, workspace_id: str) -> Response:
            return await end_parking(self, request, workspace_id, drop=False)

    @app.page("/parked/{workspace_id}/drop")
    class DropView(View):
        async def post(self, request: Request, workspace_id: str) -> Response:
            return await end_parking(self, request, workspace_id, drop=True)

    del ParkedView, ReleaseView, DropView  # registered on the app by the decorators
