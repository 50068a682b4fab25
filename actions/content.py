"""Message content written by an LLM, with a deterministic template when it cannot be.

The LLM writes content only (shared/DESIGN.md): the policy decided to follow up, the handler
decides where the text goes; the model is asked for the words and nothing else. It is an
optional provider with its own circuit breaker ("llm"): offline, failing or unconfigured, the
template is used and the message still goes out. Neither the prompt nor the text is logged or
recorded; the ledger gets `Content.note()` (source, model, length, sha256).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from actions.breakers import Breakers
from actions.reconciler import ExecutorConfig, WorkspaceSnapshot
from topics.errors import AutopilotError

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

LLM = "llm"
MAX_CHARS = 2_000
MAX_TOKENS = 200
# Commands whose content is remembered; a retry comes back within the backoff cap (minutes).
MEMO_SIZE = 4_096
# Passed explicitly so that the SDK does not read OPENAI_BASE_URL (only app/ reads the env).
OPENAI_BASE_URL = "https://api.openai.com/v1"

SYSTEM_PROMPT = (
    "You write short follow-up messages from a SaaS platform's operations team to the "
    "administrator of a workspace. Write plain text only: no links, no markdown, no "
    "placeholders, at most 80 words. Be friendly and factual; do not promise anything and do "
    "not ask for credentials. Reply with the message text only."
)


@dataclass(frozen=True, slots=True)
class Content:
    """A message's text and where it came from."""

    text: str
    source: Literal["llm", "template"]
    model: str | None
    length: int
    sha256: str

    @classmethod
    def of(cls, text: str, source: Literal["llm", "template"], model: str | None) -> Content:
        """Content for `text`, with its length and hash."""
        return cls(text, source, model, len(text), hashlib.sha256(text.encode()).hexdigest())

    def note(self) -> dict[str, Any]:
        """What the ledger may record about the content: never the text itself."""
        return {
            "source": self.source,
            "model": self.model,
            "length": self.length,
            "sha256": self.sha256,
        }


def template(workspace_id: str, rule_id: str, health_status: str) -> Content:
    """The follow-up message used without the LLM: the same inputs give the same text."""
    text = (
        f"Hello, this is the operations team following up on your workspace {workspace_id}. "
        f"Our monitoring flagged it ({rule_id}) and its health is currently {health_status}. "
        "We are keeping an eye on it; if something is not working as expected, reply to this "
        "message and we will help."
    )
    return Content.of(text, "template", None)


def prompt(workspace_id: str, rule_id: str, health_status: str) -> str:
    """The user message the LLM gets: the facts, no instructions it could be steered by."""
    return (
        f"Workspace id: {workspace_id}\n"
        f"Reason for the follow-up (monitoring rule): {rule_id}\n"
        f"Workspace health status: {health_status}\n"
        "Write the follow-up message to the workspace administrator."
    )


async def load_llm_sdk() -> None:
    """Import the OpenAI SDK in a thread, for a worker with an API key.

    The SDK takes about a second to import. With the module, every worker's start paid it, key
    or no key (a fifth of an empty worker's time to ready); at the first message written, it
    stopped the event loop, and every shard's decisions with it (p99 1.3-1.7 s at 200
    signals/s against 0.2-0.4 s).
    """
    await asyncio.to_thread(importlib.import_module, "openai")


class ContentWriter:
    """Writes message content with the LLM when it can, the template otherwise (one per worker)."""

    def __init__(self, config: ExecutorConfig, breakers: Breakers) -> None:
        self._config = config
        self._breakers = breakers
        self._client: openai.AsyncOpenAI | None = None
        # Content already written per command (most recent last), for its retries.
        self._written: OrderedDict[str, Content] = OrderedDict()

    async def followup(
        self,
        workspace_id: str,
        rule_id: str,
        workspace: WorkspaceSnapshot | None,
        *,
        key: str | None = None,
    ) -> Content:
        """A short follow-up message to the workspace's admin; the same `key`, the same text.

        Without the memo a retry could send new words under the same Idempotency-Key (the LLM
        is not deterministic, the health status may have moved), which an idempotent receiver
        refuses as a reused key (422) although the first message went out.
        """
        if key is not None and key in self._written:
            self._written.move_to_end(key)
            return self._written[key]
        content = await self._write(workspace_id, rule_id, workspace)
        if key is not None:
            self._written[key] = content
            if len(self._written) > MEMO_SIZE:
                self._written.popitem(last=False)
        return content

    async def close(self) -> None:
        """Release the LLM client's connections."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _write(
        self, workspace_id: str, rule_id: str, workspace: WorkspaceSnapshot | None
    ) -> Content:
        status = "unknown" if workspace is None else workspace.health_status
        fallback = template(workspace_id, rule_id, status)
        if not self._config.llm_api_key:
            return fallback
        if await self._breakers.admit(LLM) is not None:
            return fallback
        # Imported here, not with the module: see load_llm_sdk.
        import openai

        try:
            text = await self._complete(prompt(workspace_id, rule_id, status))
        except (openai.APIError, TimeoutError, _EmptyContentError) as exc:
            # The error's type only: its message may quote the request or the response.
            logger.warning(
                "llm content failed, using the template",
                extra={"workspace_id": workspace_id, "error": type(exc).__name__},
            )
            await self._breakers.record(LLM, ok=False)
            return fallback
        await self._breakers.record(LLM, ok=True)
        return Content.of(text, "llm", self._config.llm_model)

    async def _complete(self, user_prompt: str) -> str:
        completion = await self._llm().chat.completions.create(
            model=self._config.llm_model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt},
            ],
            max_tokens=MAX_TOKENS,
        )
        content = completion.choices[0].message.content if completion.choices else None
        text = (content or "").strip()[:MAX_CHARS].strip()
        if not text:
            raise _EmptyContentError
        return text

    def _llm(self) -> openai.AsyncOpenAI:
        import openai

        if self._client is None:
            # Our breaker and the executor's backoff do the retrying, not the SDK.
            self._client = openai.AsyncOpenAI(
                api_key=self._config.llm_api_key,
                base_url=self._config.llm_base_url or OPENAI_BASE_URL,
                timeout=self._config.llm_timeout_seconds,
                max_retries=0,
            )
        return self._client


class _EmptyContentError(AutopilotError):
    """The LLM answered without any text."""
