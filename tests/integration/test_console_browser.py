"""The operator console in headless Chromium, on a real worker: sign in with the control token,
watch live numbers move as signals arrive, approve a parked command from the page and see its
outcome appear; nothing is fetched from anywhere but the worker."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import Settings
from tests.integration.commands import command, send
from tests.integration.conftest import StartWorker
from tests.integration.http import CONTROL_TOKEN, ready_answers, request
from tests.integration.streams import publish, signal
from tools.worker_process import WorkerProcess
from topics.commands import Action, Priority
from topics.signals import SignalType

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = pytest.mark.integration

# Waits for what the page shows: its poll is every 2 s, the projector folds within seconds.
PAGE_WAIT_MS = 60_000


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[object]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def commands_reach(
    worker: WorkerProcess, until: Callable[[dict[str, float]], bool], timeout: float = 60.0
) -> None:
    """Scrape /metrics until its command counts per status satisfy `until`."""
    deadline = time.monotonic() + timeout
    while True:
        _, text = await request("GET", f"{worker.web_url}/metrics")
        counts = {
            sample.labels["status"]: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "autopilot_commands"
        }
        if until(counts):
            return
        assert time.monotonic() < deadline, f"autopilot_commands: {counts}"
        await asyncio.sleep(0.5)


async def test_an_operator_watches_the_platform_and_approves_a_command_from_the_console(
    settings: Settings, start_worker: StartWorker, browser: object, tmp_path: Path
) -> None:
    worker = start_worker({"AUTOPILOT_PROJECTOR_ENABLED": "true"})
    await ready_answers(worker)
    page = await browser.new_page()  # type: ignore[attr-defined]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    # Without a session, the console is the sign-in form.
    first = await page.goto(f"{worker.web_url}/console")
    assert first.status == 401
    await page.fill("#token", "not-the-control-token")
    await page.click("#sign-in")
    assert await page.locator("#token").count() == 1  # refused: the form again
    await page.fill("#token", CONTROL_TOKEN)
    await page.click("#sign-in")
    await expect(page.locator("#ready")).to_have_text("ready", timeout=PAGE_WAIT_MS)
    assert await page.text_content("#signals-folded") == "0"

    # Live numbers move as signals arrive.
    await publish(
        settings,
        [
            signal(f"con-{n}", f"ws-console-{n}", SignalType.INTEGRATION_OFFLINE, provider="crm")
            for n in range(3)
        ],
    )
    await expect(page.locator("#signals-folded")).to_have_text("3", timeout=PAGE_WAIT_MS)
    await expect(page.locator("#decisions")).to_have_text("3", timeout=PAGE_WAIT_MS)

    # A credit waits for approval; the operator approves it from the inbox.
    credit = command("console-credit", "ws-console-0", Action.ISSUE_CREDIT, Priority.HIGH)
    await send(settings, [credit])
    waiting = page.locator(f"#approvals tr[data-command='{credit.command_id}']")
    await waiting.wait_for(timeout=PAGE_WAIT_MS)
    # /metrics counts it too, from the same projections.
    await commands_reach(worker, lambda counts: counts.get("awaiting_approval") == 1)
    await waiting.locator("button.approve").click()
    outcome = page.locator(f"#outcomes tr[data-command='{credit.command_id}'] td.status")
    await expect(outcome).to_have_text("succeeded", timeout=PAGE_WAIT_MS)
    await expect(waiting).to_have_count(0, timeout=PAGE_WAIT_MS)
    await commands_reach(
        worker,
        lambda counts: counts == {"succeeded": 4},  # three restarts and the credit
    )
    assert "202" in (await page.text_content("#message") or "")
    # The platform's health, from the projections: three workspaces seen by the policy.
    await expect(page.locator("#health-healthy")).to_have_text("3", timeout=PAGE_WAIT_MS)
    # Every command served: nothing waits in this worker's lanes.
    await expect(page.locator("#lanes")).to_have_text("0", timeout=PAGE_WAIT_MS)

    # The operator runs the sweeps now: each shard's run shows, named by the console.
    await page.click("#run-once")
    await expect(page.locator("#message")).to_contain_text("/run-once → 202")
    swept = page.locator("#sweeps tr", has_text="console")
    await expect(swept.locator("td").nth(3)).to_have_text("3", timeout=PAGE_WAIT_MS)

    # The README's picture comes from here (AUTOPILOT_TEST_ARTEFACTS: where to keep it).
    shot = Path(os.environ.get("AUTOPILOT_TEST_ARTEFACTS", tmp_path)) / "console.png"
    await page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    # No CDN, no font service: the page asked only its worker for anything.
    assert requested and all(url.startswith(worker.web_url) for url in requested), requested
