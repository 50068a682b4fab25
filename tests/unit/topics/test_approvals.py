"""The approvals topic's records: verdicts as they were always written, parking releases and
parking requests (a playbook's failed run), told apart by `kind`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from topics.approvals import (
    ApprovalGiven,
    ParkingRelease,
    ParkingRequest,
    Verdict,
    parse_approvals_record,
)

# A verdict as written before parking existed: no `kind`.
VERDICT = (
    b'{"schema_version":1,"request_id":"req-1","workspace_id":"ws-fin-1","command_id":"cmd-a1",'
    b'"verdict":"approved","by":"oncall.alice","reason":"agreed",'
    b'"given_at":"2026-12-07T09:30:00Z"}'
)
RELEASE = (
    b'{"schema_version":1,"kind":"parking_release","request_id":"req-2","workspace_id":"ws-a",'
    b'"drop":true,"by":"alice","reason":null,"requested_at":"2026-12-07T09:30:00Z"}'
)


def test_a_verdict_without_a_kind_reads_as_a_verdict() -> None:
    """Given a verdict record as it was always written, when read, then it is the verdict."""
    answer = parse_approvals_record(VERDICT)

    assert isinstance(answer, ApprovalGiven)
    assert (answer.command_id, answer.verdict) == ("cmd-a1", Verdict.APPROVED)


def test_a_parking_release_reads_as_one_and_writes_its_kind() -> None:
    """Given a release record, when read, then it is the release (a drop, by alice), and
    written again it carries its kind."""
    answer = parse_approvals_record(RELEASE)

    assert isinstance(answer, ParkingRelease)
    assert (answer.workspace_id, answer.drop, answer.by) == ("ws-a", True, "alice")
    assert answer.model_dump_json().encode() == RELEASE


REQUEST = (
    b'{"schema_version":1,"kind":"parking_request","workspace_id":"ws-b","run_id":"dec-1",'
    b'"playbook":"integration-sweep","step":"restart","outcome":"timed_out",'
    b'"action":"restart_integration","command_id":"dec-1",'
    b'"requested_at":"2026-12-08T09:10:00Z"}'
)


def test_a_parking_request_reads_as_one_and_writes_its_kind() -> None:
    """Given a failed run's parking request, when read, then it is the request, and written
    again it is the same bytes."""
    answer = parse_approvals_record(REQUEST)

    assert isinstance(answer, ParkingRequest)
    assert (answer.workspace_id, answer.playbook, answer.step) == (
        "ws-b",
        "integration-sweep",
        "restart",
    )
    assert answer.model_dump_json().encode() == REQUEST


@pytest.mark.parametrize(
    "raw",
    [
        b'{"kind":"something_else","workspace_id":"ws-a"}',
        RELEASE.replace(b'"ws-a"', b'"../etc"'),
        RELEASE.replace(b'"alice"', b'"not a name"'),
        VERDICT.replace(b'"schema_version":1', b'"kind":"verdict","schema_version":1'),
        b"[1]",
        REQUEST.replace(b'"dec-1",', b'"dec 1",', 1),
    ],
    ids=[
        "unknown-kind",
        "bad-workspace",
        "bad-operator",
        "verdict-with-kind",
        "not-an-object",
        "request-bad-run-id",
    ],
)
def test_anything_else_is_refused(raw: bytes) -> None:
    """Given a record of an unknown kind, or a release or verdict that does not validate, when
    read, then it is refused (the agent dead-letters it with the reason)."""
    with pytest.raises(ValidationError):
        parse_approvals_record(raw)
