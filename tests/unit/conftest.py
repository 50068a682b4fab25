"""Fixtures shared by the unit tests: a real HTTP client session and the sandbox platform on
loopback, each closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.factories import CONTROL_TOKEN, LLM_KEY, SIGNING_KEY
from tools.sandbox import Sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The platform's control API, a webhook receiver and an LLM, served on loopback."""
    box = Sandbox(control_token=CONTROL_TOKEN, signing_key=SIGNING_KEY, llm_key=LLM_KEY)
    await box.start()
    try:
        yield box
    finally:
        await box.stop()
