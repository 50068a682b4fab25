"""Follow-up content: the LLM writes the words through its own breaker, the template stands in
when it cannot, and send_followup delivers either while recording only the content's note."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest

from actions.breakers import Breakers
from actions.content import Content, ContentWriter, template
from actions.followup import send_followup
from actions.reconciler import (
    ActionContext,
    Done,
    ExecutorConfig,
    NotConfiguredError,
    WorkspaceSnapshot,
)
from core.breaker import BreakerConfig, BreakerState
from tests.support.clock import Clock
from tests.support.factories import CONTROL_TOKEN, LLM_KEY
from tools.sandbox import LLM_MODEL, Sandbox
from topics.commands import Action, Command, Priority

WS = "ws-7"
RULE = "seed.followup_due"
DEGRADED = WorkspaceSnapshot(health_score=72.0, health_status="degraded")
NOW = datetime(2024, 1, 1, 0, 6, tzinfo=UTC)


def command(command_id: str = "cmd-f1", **overrides: object) -> Command:
    fields: dict[str, object] = {
        "command_id": command_id,
        "decision_id": "dec-1",
        "workspace_id": WS,
        "action": Action.SEND_FOLLOWUP,
        "priority": Priority.LOW,
        "rule_id": RULE,
        "policy_version": "p-abc",
        "signal_ids": ("sig-1",),
        "correlation_id": "sig-1",
    }
    fields.update(overrides)
    return Command.model_validate(fields)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def config(sandbox: Sandbox) -> ExecutorConfig:
    return ExecutorConfig(
        control_api_url=sandbox.url,
        control_api_token=CONTROL_TOKEN,
        http_timeout_seconds=2.0,
        llm_base_url=sandbox.llm_base_url,
        llm_api_key=LLM_KEY,
        llm_model=LLM_MODEL,
        llm_timeout_seconds=2.0,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def changes() -> list[tuple[str, BreakerState, int]]:
    return []


@pytest.fixture
def breakers(changes: list[tuple[str, BreakerState, int]], clock: Clock) -> Breakers:
    async def changed(provider: str, state: BreakerState, failures: int) -> None:
        changes.append((provider, state, failures))

    return Breakers(BreakerConfig(failure_threshold=2, cooldown_seconds=30.0), changed, clock)


@pytest.fixture
async def writer(config: ExecutorConfig, breakers: Breakers) -> AsyncIterator[ContentWriter]:
    content = ContentWriter(config, breakers)
    try:
        yield content
    finally:
        await content.close()


def context(
    cmd: Command, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
) -> ActionContext:
    return ActionContext(cmd, DEGRADED, config, http, writer, NOW)


async def test_the_llm_writes_the_followup_and_the_ledger_gets_only_its_note(
    sandbox: Sandbox, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
) -> None:
    """Given the LLM is up, when send_followup runs, then the control API received the LLM's
    text under the command's key, and Done has its source, model, length and hash only."""
    cmd = command()

    done = await send_followup(context(cmd, config, http, writer))

    [effect] = sandbox.effects
    text = effect.body["text"]
    assert text.startswith("Hi! Following up on your workspace: ")  # the sandbox LLM's words
    assert (effect.key, effect.operation, effect.body) == (
        cmd.command_id,
        "messages",
        {"command_id": cmd.command_id, "channel": "followup", "text": text},
    )
    assert done == Done(
        {
            "operation": "messages",
            "status": 200,
            "replayed": False,
            "content": {
                "source": "llm",
                "model": LLM_MODEL,
                "length": len(text),
                "sha256": sha256(text),
            },
        }
    )
    [request] = sandbox.llm_requests
    system, user = request["messages"]
    assert (request["model"], request["max_tokens"]) == (LLM_MODEL, 200)
    assert system["role"] == "system" and "no links" in system["content"]
    assert user["role"] == "user"
    assert all(fact in user["content"] for fact in (WS, RULE, "degraded"))
    recorded = orjson.dumps(done.detail).decode()
    assert text not in recorded
    assert user["content"] not in recorded and system["content"] not in recorded


async def test_a_retried_followup_sends_the_same_text_and_is_replayed(
    sandbox: Sandbox, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
) -> None:
    """Given a follow-up already sent, when its command is retried (the health changed since),
    then the same text goes under the same key: a replay, one message, no second LLM call."""
    cmd = command()
    first = await send_followup(context(cmd, config, http, writer))

    retry = replace(
        context(cmd.model_copy(update={"attempt": 2}), config, http, writer),
        workspace=WorkspaceSnapshot(health_score=95.0, health_status="healthy"),
    )
    second = await send_followup(retry)

    assert second.detail == {**first.detail, "replayed": True}
    assert sandbox.effect_counts() == {cmd.command_id: 1}
    assert len(sandbox.llm_requests) == 1


async def test_without_an_llm_key_the_template_is_used_without_any_llm_call(
    sandbox: Sandbox, config: ExecutorConfig, http: aiohttp.ClientSession, breakers: Breakers
) -> None:
    """Given no LLM key, then the message carries the template's text and the LLM is not
    called at all."""
    unkeyed = replace(config, llm_api_key=None)
    writer = ContentWriter(unkeyed, breakers)

    done = await send_followup(context(command(), unkeyed, http, writer))

    expected = template(WS, RULE, "degraded")
    assert [e.body["text"] for e in sandbox.effects] == [expected.text]
    assert done.detail["content"] == {
        "source": "template",
        "model": None,
        "length": len(expected.text),
        "sha256": sha256(expected.text),
    }
    assert sandbox.llm_requests == []


async def test_the_llm_down_gives_the_template_and_the_message_still_goes_out(
    sandbox: Sandbox,
    config: ExecutorConfig,
    http: aiohttp.ClientSession,
    writer: ContentWriter,
    changes: list[tuple[str, BreakerState, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Given the LLM answers 503, then the template is delivered, one failure is counted (the
    breaker still closed) and the warning carries the error type, never the prompt."""
    sandbox.llm_down = True

    with caplog.at_level(logging.WARNING, logger="actions.content"):
        done = await send_followup(context(command(), config, http, writer))

    expected = template(WS, RULE, "degraded")
    assert [e.body["text"] for e in sandbox.effects] == [expected.text]
    assert done.detail["content"]["source"] == "template"
    assert changes == []
    [record] = [r for r in caplog.records if r.name == "actions.content"]
    assert (record.getMessage(), record.workspace_id, record.error) == (  # type: ignore[attr-defined]
        "llm content failed, using the template",
        WS,
        "InternalServerError",
    )


async def test_a_refused_llm_key_also_falls_back_to_the_template(
    sandbox: Sandbox, config: ExecutorConfig, breakers: Breakers
) -> None:
    """Given an LLM key the endpoint refuses (401), then the template is used."""
    writer = ContentWriter(replace(config, llm_api_key="wrong-key"), breakers)
    try:
        content = await writer.followup(WS, RULE, None)
    finally:
        await writer.close()

    assert content == template(WS, RULE, "unknown")
    assert len(sandbox.llm_requests) == 0  # refused before the sandbox records the body


async def test_the_llm_breaker_opens_after_the_threshold_and_then_the_llm_is_not_called(
    sandbox: Sandbox,
    writer: ContentWriter,
    changes: list[tuple[str, BreakerState, int]],
    clock: Clock,
) -> None:
    """Given two LLM failures (the threshold), then the llm breaker opened; the next follow-up
    makes no LLM request; after the cool-down one trial call closes it again."""
    sandbox.llm_down = True
    await writer.followup(WS, RULE, DEGRADED)
    await writer.followup(WS, RULE, DEGRADED)
    assert changes == [("llm", BreakerState.OPEN, 2)]
    sandbox.llm_down = False
    calls = len(sandbox.llm_requests)

    while_open = await writer.followup(WS, RULE, DEGRADED)

    assert while_open == template(WS, RULE, "degraded")
    assert len(sandbox.llm_requests) == calls
    clock.now += 30.0
    after = await writer.followup(WS, RULE, DEGRADED)
    assert (after.source, len(sandbox.llm_requests)) == ("llm", calls + 1)
    assert [(provider, state) for provider, state, _ in changes[1:]] == [
        ("llm", BreakerState.HALF_OPEN),
        ("llm", BreakerState.CLOSED),
    ]


async def test_a_followup_without_the_control_api_is_not_configured_before_the_llm_call(
    sandbox: Sandbox, config: ExecutorConfig, http: aiohttp.ClientSession, writer: ContentWriter
) -> None:
    """Given no control API URL, then nothing is asked of the LLM either."""
    unset = replace(config, control_api_url=None)

    with pytest.raises(NotConfiguredError, match="AUTOPILOT_CONTROL_API_URL"):
        await send_followup(context(command(), unset, http, writer))

    assert sandbox.llm_requests == []


def test_the_template_is_deterministic_and_its_note_is_redacted() -> None:
    """The same workspace, reason and status give the same text; the note holds no text."""
    content = template(WS, RULE, "critical")

    assert content == template(WS, RULE, "critical")
    assert content != template(WS, RULE, "healthy")
    assert WS in content.text and RULE in content.text and "critical" in content.text
    assert content.note() == {
        "source": "template",
        "model": None,
        "length": len(content.text),
        "sha256": sha256(content.text),
    }


def test_content_of_measures_the_text() -> None:
    """Content.of records the length in characters and the sha256 of the UTF-8 text."""
    content = Content.of("Grüße", "llm", "m-1")

    assert (content.length, content.sha256) == (5, sha256("Grüße"))
