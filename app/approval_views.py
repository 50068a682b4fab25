"""Operators' approvals over HTTP (control token): compliance-tagged commands wait for them.

`POST /approvals/{workspace_id}/{command_id}/approve` or `/reject`, with an optional JSON body
`{"by": "name", "reason": "text"}`. The verdict goes on the `approvals` topic to the workspace's
shard and is answered 202 once the broker has it. The shard's executor records
`action.approved` and runs the command, or `action.rejected`; a verdict for a command that is
not waiting (unknown, finished, decided already) changes nothing and is logged.
The command ids that wait are on the ledger as `action.approval_requested`.
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
from core.codec import describe
from topics.approvals import ApprovalGiven, Verdict

logger = logging.getLogger(__name__)

VERDICTS = {"approve": Verdict.APPROVED, "reject": Verdict.REJECTED}


def attach(autopilot: Autopilot) -> None:
    """Register the approval endpoint on the app's web server."""
    app = autopilot.app
    topic = autopilot.approvals.get_topic_name()

    @app.page("/approvals/{workspace_id}/{command_id}/{verdict}")
    class ApprovalView(View):
        async def post(
            self, request: Request, workspace_id: str, command_id: str, verdict: str
        ) -> Response:
            if verdict not in VERDICTS:
                return self.json({"error": "unknown verdict; use approve or reject"}, status=404)
            body = await operator_body(self, request)
            if not isinstance(body, dict):
                return body
            unknown = unknown_fields(self, body)
            if unknown is not None:
                return unknown
            try:
                approval = ApprovalGiven.model_validate(
                    {
                        **body,
                        "request_id": f"req-{uuid.uuid4().hex}",
                        "workspace_id": workspace_id,
                        "command_id": command_id,
                        "verdict": VERDICTS[verdict],
                        "given_at": datetime.now(UTC),
                    }
                )
            except ValidationError as exc:
                return self.json({"error": describe(exc)}, status=422)
            try:
                delivery = await app.producer.send(
                    topic,
                    workspace_id.encode(),
                    approval.model_dump_json().encode(),
                    partition=None,
                    timestamp=None,
                    headers=None,
                )
                await delivery
            except KafkaError:
                logger.exception("approval could not be published")
                return broker_refused(self, "verdict")
            logger.warning(
                "approval verdict given",
                extra={
                    "workspace_id": workspace_id,
                    "command_id": command_id,
                    "verdict": approval.verdict.value,
                    "by": approval.by,
                },
            )
            return self.json(
                {
                    "request_id": approval.request_id,
                    "workspace_id": workspace_id,
                    "command_id": command_id,
                    "verdict": approval.verdict.value,
                },
                status=202,
            )

    del ApprovalView  # registered on the app by the decorator
