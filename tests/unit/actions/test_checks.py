"""The playbooks' checks (verify_health, check_integrations) and a targeted restart_integration,
against the sandbox over loopback HTTP: the exact Done.detail, what the platform was asked and
applied, and which answers retry, which are terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from actions import REGISTRY, spec_of
from actions.breakers import Breakers
from actions.content import ContentWriter
from actions.reconciler import (
    ActionContext,
    Done,
    ExecutorConfig,
    NotReadyError,
    RetryableError,
    TerminalError,
    WorkspaceSnapshot,
)
from core.breaker import BreakerConfig, BreakerState
from tests.support.factories import CONTROL_TOKEN, command
from tools.sandbox import Sandbox, Seen
from topics.commands import Action, Command
from topics.control import MAX_STEP_ITEMS

WS = "ws-1"
NOW = datetime(2024, 1, 1, 0, 6, tzinfo=UTC)


@pytest.fixture
def config(sandbox: Sandbox) -> ExecutorConfig:
    return ExecutorConfig(
        control_api_url=sandbox.url, control_api_token=CONTROL_TOKEN, http_timeout_seconds=2.0
    )


@pytest.fixture
async def writer(config: ExecutorConfig) -> AsyncIterator[ContentWriter]:
    async def changed(provider: str, state: BreakerState, failures: int) -> None:
        pass

    content = ContentWriter(config, Breakers(BreakerConfig(2, 60.0), changed))
    try:
        yield content
    finally:
        await content.close()


@pytest.fixture
def run(config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter) -> Run:
    return Run(config, http, writer)


class Run:
    """Runs a command's registered handler as the executor would."""

    def __init__(
        self, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
    ) -> None:
        self.config, self.http, self.writer = config, http, writer

    async def __call__(self, cmd: Command) -> Done:
        snapshot = WorkspaceSnapshot(health_score=72.0, health_status="degraded")
        context = ActionContext(cmd, snapshot, self.config, self.http, self.writer, NOW)
        return await spec_of(cmd.action).handler(context)


def health_check() -> Command:
    return command("health", WS, Action.VERIFY_HEALTH)


def integrations_check() -> Command:
    return command("integrations", WS, Action.CHECK_INTEGRATIONS)


def restart(target: str | None = None) -> Command:
    return command("restart", WS, Action.RESTART_INTEGRATION, target=target)


# -- verify_health -------------------------------------------------------------------------


async def test_a_healthy_workspace_is_done_with_its_status_and_score(
    sandbox: Sandbox, run: Run
) -> None:
    """Given the platform says the workspace is healthy (the sandbox's default, score 90), when
    verify_health runs, then Done records status and score, from one keyed GET, no effect."""
    done = await run(health_check())

    assert done == Done({"status": "healthy", "score": 90})
    assert sandbox.requests == [Seen("GET", f"/workspaces/{WS}/health", "cmd-health", 200, False)]
    assert sandbox.effects == []


async def test_a_workspace_not_healthy_yet_is_retryable_with_a_reason_to_act_on(
    sandbox: Sandbox, run: Run
) -> None:
    """Given the platform says degraded, score 41, then the attempt is a NotReadyError (the
    executor retries with backoff; the provider's breaker counts the answer as a success) that
    says which workspace and how it stands."""
    sandbox.set_health(WS, "degraded", 41)

    with pytest.raises(NotReadyError) as raised:
        await run(health_check())

    assert raised.value.retryable
    assert str(raised.value) == f"workspace {WS} not healthy yet: status degraded, score 41"
    assert raised.value.retry_after is None


async def test_a_workspace_healthy_on_a_later_attempt_is_done(sandbox: Sandbox, run: Run) -> None:
    """Given a workspace degraded at the first attempt and healthy at the second, then the
    second attempt (same command, next attempt) is done."""
    sandbox.set_health(WS, "degraded", 41)
    with pytest.raises(RetryableError):
        await run(health_check())
    sandbox.set_health(WS, "healthy", 88)

    done = await run(health_check().model_copy(update={"attempt": 2}))

    assert done == Done({"status": "healthy", "score": 88})


@pytest.mark.parametrize(
    ("status", "score", "field"),
    [
        ("Degraded <b>now</b>", 41, "'status' is not a status word"),
        (None, 41, "'status' is not a status word"),
        ("healthy", "90", "'score' is not a whole number from 0 to 100"),
        ("healthy", 101, "'score' is not a whole number from 0 to 100"),
        ("healthy", 90.5, "'score' is not a whole number from 0 to 100"),
        ("healthy", True, "'score' is not a whole number from 0 to 100"),
    ],
)
async def test_a_malformed_health_reply_is_terminal_naming_the_field_not_its_value(
    sandbox: Sandbox, run: Run, status: object, score: object, field: str
) -> None:
    """Given a health reply of the wrong shape, then TerminalError says what was wrong with
    which field, and never repeats the platform's value."""
    sandbox.set_health(WS, status, score)  # type: ignore[arg-type]

    with pytest.raises(TerminalError) as raised:
        await run(health_check())

    assert str(raised.value) == f"the control API's health reply: {field}"
    assert "<b>" not in str(raised.value)


async def test_a_health_read_answered_503_is_the_usual_retryable_error(
    sandbox: Sandbox, run: Run
) -> None:
    """Given the platform answers the health read 503 with Retry-After, then the attempt is
    retryable with the provider's hint, like any control-API call."""
    sandbox.script(WS, "health", [(503, 2.0)])

    with pytest.raises(RetryableError) as raised:
        await run(health_check())

    assert str(raised.value) == f"GET /workspaces/{WS}/health returned 503"
    assert (raised.value.provider, raised.value.retry_after) == ("control_api", 2.0)


# -- check_integrations --------------------------------------------------------------------


async def test_the_offline_integrations_are_found(sandbox: Sandbox, run: Run) -> None:
    """Given the sandbox's default (crm offline, calendar online), when check_integrations runs,
    then Done counts both, the one offline, and finds crm, from one keyed GET, no effect."""
    done = await run(integrations_check())

    assert done == Done({"integrations": 2, "offline": 1, "found": ["crm"]})
    assert sandbox.requests == [
        Seen("GET", f"/workspaces/{WS}/integrations", "cmd-integrations", 200, False)
    ]
    assert sandbox.effects == []


async def test_an_offline_id_that_cannot_be_a_target_is_refused_and_counted(
    sandbox: Sandbox, run: Run
) -> None:
    """Given offline integrations whose ids include one with a space and a newline and one
    listed twice, then `found` holds the others once each in the platform's order, and the
    refused one is only counted."""
    sandbox.set_integrations(
        WS,
        [
            {"id": "erp", "status": "offline"},
            {"id": "crm x\nX-Evil: 1", "status": "offline"},
            {"id": "calendar", "status": "online"},
            {"id": "crm", "status": "offline"},
            {"id": "erp", "status": "offline"},
        ],
    )

    done = await run(integrations_check())

    assert done == Done({"integrations": 5, "offline": 4, "found": ["erp", "crm"], "refused": 1})


async def test_no_integration_offline_finds_nothing(sandbox: Sandbox, run: Run) -> None:
    """Given every integration online, then Done finds nothing (a fan-out over it does nothing)."""
    sandbox.set_integrations(WS, [{"id": "crm", "status": "online"}])

    done = await run(integrations_check())

    assert done == Done({"integrations": 1, "offline": 0, "found": []})


async def test_at_most_max_step_items_are_found_and_the_rest_is_reported(
    sandbox: Sandbox, run: Run
) -> None:
    """Given 105 offline integrations, then the first 100 are found and 5 reported remaining."""
    sandbox.set_integrations(WS, [{"id": f"i-{n}", "status": "offline"} for n in range(105)])

    done = await run(integrations_check())

    assert done == Done(
        {
            "integrations": 105,
            "offline": 105,
            "found": [f"i-{n}" for n in range(MAX_STEP_ITEMS)],
            "remaining": 105 - MAX_STEP_ITEMS,
        }
    )


@pytest.mark.parametrize(
    ("integrations", "field"),
    [
        (["crm"], "'integrations[0]' is not an object"),
        ([{"id": "crm", "status": "online"}, {"status": "offline"}], "'integrations[1].id'"),
        ([{"id": 7, "status": "offline"}], "'integrations[0].id' is not a string"),
        ([{"id": "crm", "status": "rebooting"}], "'integrations[0].status' is neither"),
        ([{"id": "crm", "status": ["offline"]}], "'integrations[0].status' is neither"),
    ],
)
async def test_a_malformed_integrations_reply_is_terminal_naming_the_field(
    sandbox: Sandbox, run: Run, integrations: list[Any], field: str
) -> None:
    """Given a listing of the wrong shape, then TerminalError names the field, not its value."""
    sandbox.set_integrations(WS, integrations)

    with pytest.raises(TerminalError) as raised:
        await run(integrations_check())

    assert not isinstance(raised.value, RetryableError)
    assert str(raised.value).startswith("the control API's integrations reply: ")
    assert field in str(raised.value)
    assert "rebooting" not in str(raised.value)


async def test_an_integrations_read_answered_503_is_the_usual_retryable_error(
    sandbox: Sandbox, run: Run
) -> None:
    """Given the platform answers the listing 503, then the attempt is retryable."""
    sandbox.script(WS, "integrations", [503])

    with pytest.raises(RetryableError) as raised:
        await run(integrations_check())

    assert str(raised.value) == f"GET /workspaces/{WS}/integrations returned 503"
    assert raised.value.provider == "control_api"


# -- restart_integration with a target -----------------------------------------------------


async def test_a_targeted_restart_names_the_integration_in_the_body(
    sandbox: Sandbox, run: Run
) -> None:
    """Given a fan-out's restart_integration command for crm, then the platform applied one
    restart whose body names the integration, besides the usual fields."""
    await run(restart("crm"))

    assert [(e.key, e.operation, e.body) for e in sandbox.effects] == [
        (
            "cmd-restart",
            "restart-integration",
            {
                "command_id": "cmd-restart",
                "action": "restart_integration",
                "rule_id": "test.rule",
                "integration": "crm",
            },
        )
    ]


async def test_an_untargeted_restart_sends_the_body_it_always_did(
    sandbox: Sandbox, run: Run
) -> None:
    """Given a restart_integration command without a target, then the body has no
    `integration` field: exactly the three fields every operation sends."""
    await run(restart())

    assert [e.body for e in sandbox.effects] == [
        {"command_id": "cmd-restart", "action": "restart_integration", "rule_id": "test.rule"}
    ]


async def test_a_targeted_command_for_a_whole_workspace_operation_is_terminal(
    sandbox: Sandbox, run: Run
) -> None:
    """Given a run_provisioning command with a target (a playbook fanning out over it), then
    it is terminal before anything is sent: run once per item it would provision N times."""
    with pytest.raises(TerminalError) as raised:
        await run(command("provision", WS, Action.RUN_PROVISIONING, target="crm"))

    assert not isinstance(raised.value, RetryableError)
    assert str(raised.value) == (
        "run_provisioning acts on the whole workspace and takes no target: "
        "check the playbook step that fans out over it"
    )
    assert sandbox.requests == []


# -- dry run -------------------------------------------------------------------------------


def test_dry_run_descriptions_show_the_request(config: ExecutorConfig) -> None:
    """describe() says which call each would make, with the integration when targeted."""
    base = f"{config.control_api_url}/workspaces/{WS}"

    def describe(cmd: Command) -> str:
        return REGISTRY[cmd.action].describe(cmd, config)

    assert describe(health_check()) == f"GET {base}/health"
    assert describe(integrations_check()) == f"GET {base}/integrations"
    assert describe(restart("crm")) == f"POST {base}/restart-integration for integration crm"
    assert describe(restart()) == f"POST {base}/restart-integration"
    assert describe(command("p", WS, Action.RUN_PROVISIONING, target="crm")) == (
        "nothing: run_provisioning takes no target"
    )
