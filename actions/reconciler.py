"""The reconciler contract every action handler follows (shared/STYLE.md).

A handler gets the command and the workspace's current context and ends in exactly one of:
- `Done(detail)`: the action is carried out (or there was nothing left to do);
- `RetryableError`: try again later, with backoff (a hint from the provider, e.g. Retry-After,
  is honoured up to the cap);
- `TerminalError`: never retried; the command is dead-lettered with the reason.
Whether an error is retryable is a property of the error class (Temporal's `non_retryable`).

Handlers never decide whether to act (the policy did) and never write the ledger: the executor
records what they return. The `detail` of Done is redacted: ids, counts, statuses, hashes; never
a secret, a prompt or a third-party payload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from topics.commands import Command

# The errors a handler raises; whether one is retryable is a property of its class.
from topics.errors import ActionError as ActionError
from topics.errors import NotConfiguredError as NotConfiguredError
from topics.errors import NotReadyError as NotReadyError
from topics.errors import RetryableError as RetryableError
from topics.errors import TerminalError as TerminalError

if TYPE_CHECKING:
    import aiohttp

    from actions.content import ContentWriter


@dataclass(frozen=True, slots=True)
class Done:
    """The action's end: what was done, redacted (ids, counts, statuses, hashes)."""

    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    """What handlers need to reach the outside, built from Settings at the edge."""

    # The platform's control API, e.g. http://127.0.0.1:8080 (POST {base}/workspaces/{id}/...).
    control_api_url: str | None = None
    control_api_token: str | None = None
    # Master key; each workspace's webhook signing secret is HMAC-SHA256(master, workspace_id).
    webhook_signing_key: str | None = None
    http_timeout_seconds: float = 10.0
    # An OpenAI-compatible endpoint for message content; no key means the template is used.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class WorkspaceSnapshot:
    """The workspace as Autopilot last saw it (from its windowed state); None when never seen."""

    health_score: float
    health_status: str


@dataclass(frozen=True, slots=True)
class ActionContext:
    """Everything a handler may use: the command, the workspace now, and the outside clients."""

    command: Command
    workspace: WorkspaceSnapshot | None
    config: ExecutorConfig
    http: aiohttp.ClientSession
    content: ContentWriter
    now: datetime


Handler = Callable[[ActionContext], Awaitable[Done]]
# What the handler would do, for dry-run's action.skipped: "POST {base}/workspaces/w-1/provision".
Describe = Callable[[Command, ExecutorConfig], str]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """A registered action: its handler, the provider its breaker guards, compliance tags."""

    handler: Handler
    provider: str
    describe: Describe
    # finance / identity / policy: such an action waits for an operator's approval.
    tags: frozenset[str] = frozenset()

    TAGS: ClassVar[frozenset[str]] = frozenset({"finance", "identity", "policy"})
