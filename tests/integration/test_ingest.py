"""Signals in over HTTP and from the Python client, read back with GET /workspaces/{id}."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from app.client import SignalPublisher
from app.settings import Settings
from tests.integration.conftest import StartWorker
from tests.integration.http import (
    CONTROL_TOKEN,
    INGEST_TOKEN,
    get_workspace,
    post_signals,
    request,
    request_with_headers,
    wait_for_workspace,
    wait_until_answers,
)
from topics.limits import MAX_RECORD_BYTES
from topics.shards import shard_of
from topics.signals import signal_from

pytestmark = pytest.mark.integration

# Event time 2026-11-01 10:00:00 UTC, and its 1-minute, 5-minute and hour boundaries.
T0 = 1_793_527_200
ISO = "2026-11-01T10:{:02d}:{:02d}Z"


def item(n: str, workspace: str, kind: str, minute: int = 0, second: int = 0, **attributes: Any):
    return {
        "id": n,
        "workspace_id": workspace,
        "type": kind,
        "occurred_at": ISO.format(minute, second),
        "source": "test",
        "attributes": attributes,
    }


async def test_http_batch_is_accepted_and_the_workspace_reads_back(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a running worker
    worker = start_worker()
    await wait_until_answers(worker)
    # When a batch for two workspaces is posted with the ingest token (one item without id)
    batch = [
        item("q1", "ws-h", "queue_depth", 0, 10, pending=80, queue="jobs"),
        item("e1", "ws-h", "error_reported", 0, 20, component="api"),
        item("e2", "ws-h", "error_reported", 6, 0),
        item("p1", "ws-h", "publish_failed", 7, 0, channel="email"),
        item("e2", "ws-h", "error_reported", 6, 0),  # a resent duplicate: counted once
        item("w1", "ws-i", "webhook_failed", 1, 0, status=503, webhook_id="wh-1"),
    ]
    no_id = {
        key: value for key, value in item("", "ws-i", "heartbeat", 1, 5).items() if key != "id"
    }
    status, body = await post_signals(worker, [*batch, no_id])
    # Then it is accepted with every id, a derived one for the item that had none
    assert status == 202, body
    assert body["accepted"] == 7
    assert body["ids"][:6] == ["q1", "e1", "e2", "p1", "e2", "w1"]
    assert body["ids"][6].startswith("d-")

    # And the workspace shows its windows, gauges and the health they give
    state = await wait_for_workspace(worker, "ws-h", lambda b: b["as_of"] == T0 + 7 * 60)
    assert state["minute"] == {
        "start": T0 + 7 * 60,
        "end": T0 + 8 * 60,
        "counts": {"publish_failed": 1},
    }
    assert state["hour"]["start"] == T0 + 5 * 60 - 3300
    assert state["hour"]["counts"] == {"queue_depth": 1, "error_reported": 2, "publish_failed": 1}
    assert [s["counts"] for s in state["hour"]["steps"] if s["counts"]] == [
        {"queue_depth": 1, "error_reported": 1},
        {"error_reported": 1, "publish_failed": 1},
    ]
    assert state["gauges"] == {"queue_depth": {"at": T0 + 10, "value": 80}}
    assert state["last_seen"] == {
        "queue_depth": T0 + 10,
        "error_reported": T0 + 6 * 60,
        "publish_failed": T0 + 7 * 60,
    }
    assert (state["duplicates"], state["late"]) == (1, 0)
    # 100 - 20 (80 pending) - 10 (a publish failure) - 2 x 5 (two errors) = 60
    assert state["health"]["score"] == 60
    assert state["health"]["status"] == "degraded"
    assert [d["points"] for d in state["health"]["deductions"]] == [20, 10, 10]
    other = await wait_for_workspace(worker, "ws-i", lambda b: b["as_of"] == T0 + 65)
    assert other["hour"]["counts"] == {"webhook_failed": 1, "heartbeat": 1}
    assert other["health"] == {
        "score": 100,
        "status": "healthy",
        "deductions": [],
        "inputs": {
            "as_of": T0 + 65,
            "pending": None,
            "oldest_pending_age_seconds": None,
            "publish_failures_last_hour": 0,
            "errors_last_hour": 0,
        },
    }


async def test_http_refuses_bad_requests_with_a_reason_and_publishes_nothing(
    settings: Settings, start_worker: StartWorker
) -> None:
    worker = start_worker()
    await wait_until_answers(worker)
    url = f"{worker.web_url}/signals"
    good = item("g1", "ws-r", "followup_due", 0, 0)
    payload = orjson.dumps([good])

    # No token, a wrong token, and a control token where the ingest token is needed: 401
    for token in (None, "not-the-ingest-token", CONTROL_TOKEN):
        status, body = await request("POST", url, body=payload, token=token)
        assert (status, body) == (401, {"error": "missing or wrong bearer token"})
    # Not JSON by its content type: 415
    status, _ = await request(
        "POST", url, body=payload, token=INGEST_TOKEN, content_type="text/plain"
    )
    assert status == 415
    # Not JSON at all: 400, with the reason
    status, body = await request("POST", url, body=b"{nope", token=INGEST_TOKEN)
    assert status == 400
    reason = "undecodable: not JSON: unexpected character, expected a string key at byte 1"
    assert body["errors"] == [{"index": None, "reason": reason}]
    # Over the size limit: 413
    status, _ = await request("POST", url, body=b" " * (MAX_RECORD_BYTES + 1), token=INGEST_TOKEN)
    assert status == 413
    # A batch with invalid items: 422, a reason per invalid item, nothing accepted
    future = item("f1", "ws-r", "heartbeat", 0, 0) | {"occurred_at": "2999-01-01T00:00:00Z"}
    status, body = await post_signals(
        worker,
        [
            good,
            item("b1", "ws-r", "queue_depth", 0, 1, pending="12"),
            item("b2", "ws r", "heartbeat"),
            {"type": "disk_full"},
            future,
        ],
    )
    assert status == 422
    assert body["accepted"] == 0
    assert body["valid"] == 1
    assert [(e["index"], e["reason"]) for e in body["errors"]] == [
        (1, "invalid: attributes.pending: Input should be a valid integer"),
        (
            2,
            "invalid: workspace_id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$'",
        ),
        (
            3,
            "invalid: type: unknown or missing signal type, expected one of: health_degraded, "
            "provisioning_needed, provisioning_failed, followup_due, webhook_failed, "
            "integration_offline, queue_depth, oldest_pending_age, publish_failed, "
            "error_reported, heartbeat",
        ),
        (4, "invalid: occurred_at: more than 300 s after the record was written"),
    ]
    # A bad workspace id in the path: 400, and an unknown workspace: 404
    status, _ = await get_workspace(worker, "ws%0Ar")
    assert status == 400
    status, body = await get_workspace(worker, "ws-never")
    assert (status, body) == (404, {"error": "no signals seen for this workspace"})
    # Reading needs the control token
    status, _ = await get_workspace(worker, "ws-r", token=INGEST_TOKEN)
    assert status == 401

    # When the good signal is then posted on its own
    status, _ = await post_signals(worker, good)
    assert status == 202
    # Then the workspace holds it once: nothing of the refused batch was published
    state = await wait_for_workspace(worker, "ws-r", lambda b: b["as_of"] is not None)
    assert state["hour"]["counts"] == {"followup_due": 1}
    assert state["duplicates"] == 0


async def test_a_large_http_batch_arrives_whole(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a running worker
    worker = start_worker()
    await wait_until_answers(worker)
    # When a batch of 4,000 signals (most of the 1 MiB limit) for 50 workspaces is posted
    batch = [
        item(f"big-{n}", f"ws-big-{n % 50}", "error_reported", 0, n % 60, message="x" * 100)
        for n in range(4000)
    ]
    assert 0.5 * MAX_RECORD_BYTES < len(orjson.dumps(batch)) < MAX_RECORD_BYTES
    status, body = await post_signals(worker, batch)
    # Then all of it is accepted and counted, none lost to a partial read
    assert status == 202, body
    assert body["accepted"] == 4000
    for n in range(50):
        state = await wait_for_workspace(
            worker, f"ws-big-{n}", lambda b: b["hour"]["counts"].get("error_reported") == 80
        )
        assert state["health"]["score"] == 0  # 80 errors in the hour


async def test_endpoints_without_a_configured_token_are_disabled(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker started without tokens
    worker = start_worker({"AUTOPILOT_INGEST_TOKEN": "", "AUTOPILOT_CONTROL_TOKEN": ""})
    await wait_until_answers(worker)
    # Then both endpoints answer 503 and say what to set, whatever token is sent
    status, body = await post_signals(worker, item("x", "ws-x", "heartbeat"))
    assert (status, body) == (
        503,
        {"error": "this endpoint is disabled: set AUTOPILOT_INGEST_TOKEN on the worker"},
    )
    status, body = await get_workspace(worker, "ws-x")
    assert (status, body) == (
        503,
        {"error": "this endpoint is disabled: set AUTOPILOT_CONTROL_TOKEN on the worker"},
    )


async def test_any_worker_answers_for_any_workspace_and_the_client_path_counts(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given two workers sharing the shards, and workspaces on every shard
    first = start_worker()
    second = start_worker(data="data-second")
    await wait_until_answers(first)
    await wait_until_answers(second)
    workspaces = [f"ws-{n}" for n in range(40)]
    assert {shard_of(w, settings.partitions) for w in workspaces} == set(range(4))
    # When each sends two heartbeats and a queue depth through the Python client
    signals = [
        signal_from(item(f"{w}-{k}", w, kind, 0, k, **attrs))
        for w in workspaces
        for k, (kind, attrs) in enumerate(
            [("heartbeat", {}), ("heartbeat", {}), ("queue_depth", {"pending": 51})]
        )
    ]
    assert settings.kafka_bootstrap_servers
    async with SignalPublisher(settings.kafka_bootstrap_servers, settings.topic("signals")) as pub:
        await pub.publish_many(signals)
    # Then either worker answers for every workspace, with the same, complete state
    for workspace in workspaces:
        for worker in (first, second):
            state = await wait_for_workspace(
                worker, workspace, lambda b: b["hour"] and sum(b["hour"]["counts"].values()) == 3
            )
            assert state["hour"]["counts"] == {"heartbeat": 2, "queue_depth": 1}
            assert state["health"]["score"] == 80  # 51 pending: saturated
    # And the state was read where it lives: each worker owns some shards, and asking the
    # other worker gives the owner's answer
    served_by = {}
    for workspace in workspaces:
        answers = {
            (
                await request_with_headers(
                    "GET", f"{worker.web_url}/workspaces/{workspace}", token=CONTROL_TOKEN
                )
            )[2]["X-Autopilot-Served-By"]
            for worker in (first, second)
        }
        assert len(answers) == 1, answers
        served_by[workspace] = answers.pop()
    assert set(served_by.values()) == {first.web_url, second.web_url}
    assert first.alive and second.alive
