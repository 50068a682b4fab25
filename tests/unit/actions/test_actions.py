"""The real action handlers against the sandbox over loopback HTTP: what the platform applied,
the exact Done.detail, and which failures retry, which are terminal."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import pytest

from actions import REGISTRY, register, spec_of
from actions.breakers import Breakers
from actions.content import ContentWriter
from actions.reconciler import (
    ActionContext,
    ActionSpec,
    Done,
    ExecutorConfig,
    NotConfiguredError,
    RetryableError,
    TerminalError,
    WorkspaceSnapshot,
)
from actions.webhook import MAX_DELIVERIES, sign, workspace_secret
from core.breaker import BreakerConfig, BreakerState
from tests.support.factories import CONTROL_TOKEN, LLM_KEY, SIGNING_KEY
from tools.sandbox import Sandbox, Seen
from topics.commands import Action, Command, Priority

WS = "ws-1"
NOW = datetime(2024, 1, 1, 0, 6, tzinfo=UTC)

CONTROL_OPERATIONS = {
    Action.RUN_PROVISIONING: "provision",
    Action.RESTART_INTEGRATION: "restart-integration",
    Action.REBALANCE_QUEUE: "rebalance-queue",
    Action.FORCE_PUBLISH: "force-publish",
    Action.RETRY_FAILED: "retry-failed",
    Action.TRIGGER_RECONCILIATION: "reconcile",
    Action.ISSUE_CREDIT: "credits",
}


def command(action: Action, **overrides: object) -> Command:
    fields: dict[str, object] = {
        "command_id": f"cmd-{action.value}",
        "decision_id": "dec-1",
        "workspace_id": WS,
        "action": action,
        "priority": Priority.MEDIUM,
        "rule_id": "seed.rule",
        "policy_version": "p-abc",
        "signal_ids": ("sig-1",),
        "correlation_id": "sig-1",
    }
    fields.update(overrides)
    return Command.model_validate(fields)


def effect_id(key: str) -> str:
    """The effect id the sandbox's control API gives the first request under `key`."""
    return "eff_" + hashlib.sha256(f"control\0{key}".encode()).hexdigest()[:12]


@pytest.fixture
def config(sandbox: Sandbox) -> ExecutorConfig:
    return ExecutorConfig(
        control_api_url=sandbox.url,
        control_api_token=CONTROL_TOKEN,
        webhook_signing_key=SIGNING_KEY,
        http_timeout_seconds=2.0,
        llm_base_url=sandbox.llm_base_url,
        llm_api_key=LLM_KEY,
        llm_model="sandbox-chat",
        llm_timeout_seconds=2.0,
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
def context(
    config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
) -> ContextFactory:
    return ContextFactory(config, http, writer)


class ContextFactory:
    """Builds the ActionContext a handler gets, with a command and config overrides."""

    def __init__(
        self, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
    ) -> None:
        self.config, self.http, self.writer = config, http, writer

    def __call__(self, cmd: Command, **config: object) -> ActionContext:
        return ActionContext(
            command=cmd,
            workspace=WorkspaceSnapshot(health_score=72.0, health_status="degraded"),
            config=replace(self.config, **config),  # type: ignore[arg-type]
            http=self.http,
            content=self.writer,
            now=NOW,
        )


async def run(ctx: ActionContext) -> Done:
    return await spec_of(ctx.command.action).handler(ctx)


# -- control-API actions -------------------------------------------------------------------


@pytest.mark.parametrize(("action", "operation"), list(CONTROL_OPERATIONS.items()))
async def test_a_control_action_applies_its_operation_once_keyed_by_the_command(
    sandbox: Sandbox, context: ContextFactory, action: Action, operation: str
) -> None:
    """Given a control-API action's command, when its handler runs, then the platform applied
    that operation once, keyed by the command id, and Done records status and effect id."""
    cmd = command(action)

    done = await run(context(cmd))

    assert done == Done(
        {
            "operation": operation,
            "status": 200,
            "replayed": False,
            "effect_id": effect_id(cmd.command_id),
        }
    )
    assert [(e.key, e.workspace_id, e.operation, e.body) for e in sandbox.effects] == [
        (
            cmd.command_id,
            WS,
            operation,
            {"command_id": cmd.command_id, "action": action.value, "rule_id": "seed.rule"},
        )
    ]
    assert sandbox.requests == [
        Seen("POST", f"/workspaces/{WS}/{operation}", cmd.command_id, 200, False)
    ]


async def test_a_repeated_command_is_replayed_and_applies_no_second_effect(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given a command already carried out, when its next attempt runs, then the platform
    answers from its record (replayed) and there is still one effect."""
    cmd = command(Action.RESTART_INTEGRATION)
    await run(context(cmd))

    done = await run(context(cmd.model_copy(update={"attempt": 2})))

    assert done == Done(
        {
            "operation": "restart-integration",
            "status": 200,
            "replayed": True,
            "effect_id": effect_id(cmd.command_id),
        }
    )
    assert sandbox.effect_counts() == {cmd.command_id: 1}


async def test_a_timed_out_call_retries_and_its_retry_is_a_replay_of_the_applied_effect(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given a platform that applies the effect but answers after our timeout, then the attempt
    is retryable, and the next attempt (same key) is a replay: one effect in all."""
    sandbox.delay_seconds = 0.5
    cmd = command(Action.RUN_PROVISIONING)

    with pytest.raises(RetryableError) as raised:
        await run(context(cmd, http_timeout_seconds=0.1))
    async with asyncio.timeout(5):
        while not sandbox.requests:  # recorded once the platform has answered (to nobody)
            await asyncio.sleep(0.02)
    sandbox.delay_seconds = 0.0
    done = await run(context(cmd.model_copy(update={"attempt": 2})))

    assert str(raised.value).startswith(f"POST /workspaces/{WS}/provision: ")
    assert raised.value.provider == "control_api"
    assert raised.value.retry_after is None
    assert done.detail["replayed"] is True
    assert sandbox.effect_counts() == {cmd.command_id: 1}


async def test_a_request_still_in_progress_under_the_key_is_retryable(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given the platform still working on the first request, a second one with the same key
    gets 409, which is retryable."""
    sandbox.delay_seconds = 0.5
    cmd = command(Action.FORCE_PUBLISH)
    first = asyncio.create_task(run(context(cmd)))
    async with asyncio.timeout(5):
        while not sandbox.effects:
            await asyncio.sleep(0.01)

    with pytest.raises(RetryableError) as raised:
        await run(context(cmd))

    assert str(raised.value) == f"POST /workspaces/{WS}/force-publish returned 409"
    assert (await first).detail["replayed"] is False
    assert sandbox.effect_counts() == {cmd.command_id: 1}


@pytest.mark.parametrize(
    ("scripted", "retry_after"), [(503, None), ((429, 2.0), 2.0), ((503, 0.25), 0.25), (408, None)]
)
async def test_transient_statuses_are_retryable_with_the_providers_retry_after(
    sandbox: Sandbox,
    context: ContextFactory,
    scripted: int | tuple[int, float],
    retry_after: float | None,
) -> None:
    """Given the platform answers a transient status, then RetryableError carries Retry-After
    and the control_api provider, and nothing was applied."""
    sandbox.script(WS, "provision", [scripted])
    status = scripted[0] if isinstance(scripted, tuple) else scripted

    with pytest.raises(RetryableError) as raised:
        await run(context(command(Action.RUN_PROVISIONING)))

    assert str(raised.value) == f"POST /workspaces/{WS}/provision returned {status}"
    assert raised.value.retry_after == retry_after
    assert raised.value.provider == "control_api"
    assert sandbox.effects == []


async def test_an_unreachable_platform_is_retryable(context: ContextFactory) -> None:
    """Given nothing listening at the control API's address, then the attempt is retryable."""
    with pytest.raises(RetryableError) as raised:
        await run(context(command(Action.RETRY_FAILED), control_api_url="http://127.0.0.1:9"))

    assert str(raised.value).startswith(f"POST /workspaces/{WS}/retry-failed: Client")
    assert raised.value.provider == "control_api"


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_client_errors_are_terminal(
    sandbox: Sandbox, context: ContextFactory, status: int
) -> None:
    """Given a 4xx another attempt cannot fix, then TerminalError with method, path, status."""
    sandbox.script(WS, "reconcile", [status])

    with pytest.raises(TerminalError) as raised:
        await run(context(command(Action.TRIGGER_RECONCILIATION)))

    assert not isinstance(raised.value, RetryableError)
    assert str(raised.value) == f"POST /workspaces/{WS}/reconcile returned {status}"


async def test_a_refused_token_is_terminal_and_names_the_setting_not_the_token(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given a wrong control-API token, then TerminalError tells which setting to check."""
    with pytest.raises(TerminalError) as raised:
        await run(context(command(Action.RUN_PROVISIONING), control_api_token="wrong-token"))

    assert str(raised.value) == (
        f"POST /workspaces/{WS}/provision returned 401: the credential was refused, "
        "check AUTOPILOT_CONTROL_API_TOKEN"
    )
    assert sandbox.effects == []


@pytest.mark.parametrize("action", list(Action))
async def test_without_a_control_api_url_every_action_is_not_configured(
    sandbox: Sandbox, context: ContextFactory, action: Action
) -> None:
    """Given no control API URL, then NotConfiguredError names the variable; nothing is sent,
    not even to the LLM."""
    with pytest.raises(NotConfiguredError) as raised:
        await run(context(command(action), control_api_url=None))

    assert "set AUTOPILOT_CONTROL_API_URL" in str(raised.value)
    assert (sandbox.requests, sandbox.llm_requests) == ([], [])


def test_dry_run_descriptions_show_the_request(config: ExecutorConfig) -> None:
    """describe() says what the handler would do, with the base URL or that it is unset."""
    unset = replace(config, control_api_url=None)
    provision = REGISTRY[Action.RUN_PROVISIONING].describe

    assert provision(command(Action.RUN_PROVISIONING), config) == (
        f"POST {config.control_api_url}/workspaces/{WS}/provision"
    )
    assert provision(command(Action.RUN_PROVISIONING), unset) == (
        f"POST <AUTOPILOT_CONTROL_API_URL unset>/workspaces/{WS}/provision"
    )
    assert REGISTRY[Action.ISSUE_CREDIT].describe(command(Action.ISSUE_CREDIT), config) == (
        f"POST {config.control_api_url}/workspaces/{WS}/credits"
    )
    assert REGISTRY[Action.RETRY_WEBHOOK].describe(command(Action.RETRY_WEBHOOK), unset) == (
        f"GET <AUTOPILOT_CONTROL_API_URL unset>/workspaces/{WS}/webhooks/failed, then POST each "
        f"failed delivery (at most {MAX_DELIVERIES}), signed, to the workspace's webhook URL"
    )


# -- retry_webhook -------------------------------------------------------------------------

DELIVERIES = [
    {"id": "d-1", "body": {"event": "invoice.paid", "amount": 12}},
    {"id": "d-2", "body": {"event": "user.created", "name": "Zoë"}},
]


async def test_failed_deliveries_are_redelivered_signed_one_key_each(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given two failed deliveries, when retry_webhook runs, then the receiver (verifying the
    signature itself) accepted both, each under its own key, with the original bodies."""
    sandbox.set_failed_deliveries(WS, DELIVERIES)
    cmd = command(Action.RETRY_WEBHOOK)

    done = await run(context(cmd))

    assert done == Done({"redelivered": 2, "statuses": [200, 200], "replayed": 0})
    assert [(e.key, e.operation, e.body) for e in sandbox.effects] == [
        (f"{cmd.command_id}:d-1", "hook", DELIVERIES[0]["body"]),
        (f"{cmd.command_id}:d-2", "hook", DELIVERIES[1]["body"]),
    ]
    assert [(s.method, s.path, s.status) for s in sandbox.requests] == [
        ("GET", f"/workspaces/{WS}/webhooks/failed", 200),
        ("POST", f"/hooks/{WS}", 200),
        ("POST", f"/hooks/{WS}", 200),
    ]


async def test_a_redelivery_repeated_is_replayed_by_the_receiver(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given a retry_webhook command already carried out, its repeat applies nothing new."""
    sandbox.set_failed_deliveries(WS, DELIVERIES)
    cmd = command(Action.RETRY_WEBHOOK)
    await run(context(cmd))

    done = await run(context(cmd.model_copy(update={"attempt": 2})))

    assert done == Done({"redelivered": 2, "statuses": [200, 200], "replayed": 2})
    assert sandbox.effect_counts() == {f"{cmd.command_id}:d-1": 1, f"{cmd.command_id}:d-2": 1}


async def test_one_delivery_failing_retries_all_and_the_receiver_drops_the_delivered(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given the receiver fails the second delivery with 503, then the attempt is retryable
    (provider webhooks, no URL in the reason); the next resends both, the first as a replay."""
    sandbox.set_failed_deliveries(WS, DELIVERIES)
    sandbox.script(WS, "hook", [200, (503, 1.0)])
    cmd = command(Action.RETRY_WEBHOOK)

    with pytest.raises(RetryableError) as raised:
        await run(context(cmd))
    done = await run(context(cmd.model_copy(update={"attempt": 2})))

    assert str(raised.value) == f"POST {sandbox.url} returned 503"
    assert (raised.value.provider, raised.value.retry_after) == ("webhooks", 1.0)
    assert done == Done({"redelivered": 2, "statuses": [200, 200], "replayed": 1})
    assert sandbox.effect_counts() == {f"{cmd.command_id}:d-1": 1, f"{cmd.command_id}:d-2": 1}


async def test_no_failed_deliveries_is_done_with_nothing_redelivered(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given the platform lists no failed deliveries now, then Done({"redelivered": 0})."""
    sandbox.set_failed_deliveries(WS, [])

    done = await run(context(command(Action.RETRY_WEBHOOK)))

    assert done == Done({"redelivered": 0})
    assert [s.path for s in sandbox.requests] == [f"/workspaces/{WS}/webhooks/failed"]


async def test_at_most_twenty_deliveries_per_command_and_the_rest_is_reported(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given 25 failed deliveries, then 20 go out and 5 are reported remaining."""
    sandbox.set_failed_deliveries(WS, [{"id": f"d-{i}", "body": {"n": i}} for i in range(25)])

    done = await run(context(command(Action.RETRY_WEBHOOK)))

    assert done == Done({"redelivered": 20, "statuses": [200] * 20, "replayed": 0, "remaining": 5})
    assert [e.body for e in sandbox.effects] == [{"n": i} for i in range(20)]


async def test_without_a_signing_key_retry_webhook_is_not_configured(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given no webhook signing key, then NotConfiguredError names it and nothing is sent."""
    with pytest.raises(NotConfiguredError) as raised:
        await run(context(command(Action.RETRY_WEBHOOK), webhook_signing_key=None))

    assert "AUTOPILOT_WEBHOOK_SIGNING_KEY" in str(raised.value)
    assert sandbox.requests == []


async def test_a_signature_the_receiver_refuses_is_terminal_and_names_the_key_setting(
    sandbox: Sandbox, context: ContextFactory
) -> None:
    """Given a signing key the receiver does not share, then its 401 is terminal."""
    sandbox.set_failed_deliveries(WS, DELIVERIES)

    with pytest.raises(TerminalError) as raised:
        await run(context(command(Action.RETRY_WEBHOOK), webhook_signing_key="another-key"))

    assert str(raised.value) == (
        f"POST {sandbox.url} returned 401: the credential was refused, check "
        "AUTOPILOT_WEBHOOK_SIGNING_KEY (the receiver refused the signature)"
    )
    assert sandbox.effects == []


@pytest.mark.parametrize(
    ("deliveries", "field"),
    [
        ([{"id": "d 1\nX-Evil: yes", "body": {}}], "'deliveries[0].id'"),
        ([{"id": "d-1", "body": {}}, {"id": "d-2"}], "'deliveries[1]'"),
        (["d-1"], "'deliveries[0]'"),
    ],
)
async def test_a_malformed_failure_listing_is_terminal_naming_the_field(
    sandbox: Sandbox, context: ContextFactory, deliveries: list[object], field: str
) -> None:
    """Given a listing of the wrong shape, then TerminalError names the field, not its value."""
    sandbox.set_failed_deliveries(WS, deliveries)  # type: ignore[arg-type]

    with pytest.raises(TerminalError) as raised:
        await run(context(command(Action.RETRY_WEBHOOK)))

    assert field in str(raised.value)
    assert "Evil" not in str(raised.value)
    assert [s.method for s in sandbox.requests] == ["GET"]


def test_the_signature_follows_the_protocol() -> None:
    """secret = HMAC-SHA256(master, workspace_id); signature = HMAC-SHA256(secret, body)."""
    body = b'{"event":"invoice.paid"}'
    secret = hmac.new(b"master", b"ws-9", hashlib.sha256).digest()

    assert workspace_secret("master", "ws-9") == secret
    assert sign(secret, body) == "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


# -- the registry ----------------------------------------------------------------------------


def test_every_action_is_registered_with_its_provider_and_tags() -> None:
    """Every Action has a spec; only issue_credit waits for approval (finance)."""
    assert set(REGISTRY) == set(Action)
    assert {action: spec.tags for action, spec in REGISTRY.items() if spec.tags} == {
        Action.ISSUE_CREDIT: frozenset({"finance"})
    }
    assert {spec.provider for spec in REGISTRY.values()} == {"control_api"}


def test_a_second_registration_or_an_unknown_tag_is_refused() -> None:
    """register() refuses an action registered already, and tags outside ActionSpec.TAGS."""
    spec = REGISTRY[Action.RUN_PROVISIONING]
    scratch: dict[Action, ActionSpec] = {}
    register(Action.RUN_PROVISIONING, "control_api", spec.handler, spec.describe, registry=scratch)

    with pytest.raises(ValueError, match="already registered"):
        register(Action.RUN_PROVISIONING, "x", spec.handler, spec.describe, registry=scratch)
    with pytest.raises(ValueError, match="already registered"):
        register(Action.RUN_PROVISIONING, "control_api", spec.handler, spec.describe)
    with pytest.raises(ValueError, match="unknown tags"):
        register(Action.FORCE_PUBLISH, "x", spec.handler, spec.describe, tags={"vip"}, registry={})
    assert REGISTRY[Action.RUN_PROVISIONING] is spec


def test_an_action_without_a_spec_is_terminal() -> None:
    """spec_of an action nobody registered is a TerminalError naming the action."""
    with pytest.raises(TerminalError) as raised:
        spec_of(Action.SEND_FOLLOWUP, {})

    assert str(raised.value) == "no handler registered for action send_followup"
