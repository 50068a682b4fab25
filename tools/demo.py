"""`make demo`: a broker, a worker, a realistic stream for ~1,000 workspaces, a ledger summary.

The worker acts on a sandbox platform on loopback (tools/sandbox.py: the control API, the
workspaces' webhook endpoints and an OpenAI-compatible LLM), which refuses a few first calls so
that retries show. Everything it starts it stops, on success or failure. The summary is read back
from the ledger topic, and checked against an offline replay of the same signals through the
pure core.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from app.client import SignalPublisher
from app.kafka_admin import ensure_topics
from app.settings import Settings, load_settings
from core.policy_replay import render, replay_policy
from core.replay import replay_decisions
from projections.ledger_reader import read_ledger
from projections.summary import LedgerSummary, summarize
from tools.broker import provide_bootstrap
from tools.sandbox import Sandbox, SandboxThread
from tools.worker_process import WorkerProcess
from tools.workload import realistic_stream, workspace_ids
from topics.ledger import (
    DECISION_KINDS,
    TERMINAL_KINDS,
    LedgerEntry,
    LedgerKind,
    PlaybookEntry,
)

WORKSPACES = 1_000
SIGNALS = 20_000
SPAN_SECONDS = 30 * 60
# What a third-party producer might get wrong; each must come back as signal.rejected.
MALFORMED = [
    b"{this is not json",
    b'{"workspace_id": "ws-000001", "type": "disk_full", "occurred_at": "2026-11-21T09:00:00Z"}',
    b'{"workspace_id": "../../etc/passwd", "type": "followup_due", '
    b'"occurred_at": "2026-11-21T09:00:00Z"}',
]
LEDGER_TIMEOUT_SECONDS = 180.0
NOISIEST = 3


def main() -> None:
    """Run the demo and print the ledger summary; exit 1 if the ledger disagrees with replay."""
    base = load_settings()
    run = f"demo{int(time.time())}"
    settings = base.model_copy(update={"topic_prefix": f"{run}.", "app_id": f"autopilot-{run}"})
    with tempfile.TemporaryDirectory(prefix="autopilot-demo-") as tmp:
        ok = asyncio.run(_run(settings, Path(tmp)))
    sys.exit(0 if ok else 1)


async def _run(settings: Settings, tmp: Path) -> bool:
    with provide_bootstrap(settings.kafka_bootstrap_servers, settings.cache_dir) as bootstrap:
        print(f"broker: {bootstrap}")
        await ensure_topics(settings, bootstrap)
        worker = WorkerProcess.for_deployment(settings, bootstrap, tmp)
        # The demo reads health back over HTTP, as an operator's tooling would.
        token = secrets.token_urlsafe(24)
        worker.env["AUTOPILOT_CONTROL_TOKEN"] = token
        keys = {name: secrets.token_urlsafe(24) for name in ("control", "signing", "llm")}
        with (
            SandboxThread(
                control_token=keys["control"], signing_key=keys["signing"], llm_key=keys["llm"]
            ) as platform,
            _acting_on(worker, platform, keys),
        ):
            # The first calls for the noisiest workspace fail twice: its actions are retried.
            for workspace_id in workspace_ids(NOISIEST):
                for operation in ("provision", "messages", "hook", "restart-integration"):
                    platform.script(workspace_id, operation, [503, (503, 1.0)])
            signals = realistic_stream(
                workspaces=WORKSPACES,
                signals=SIGNALS,
                start=datetime(2026, 11, 21, 9, 0, tzinfo=UTC),
                span_seconds=SPAN_SECONDS,
                monitoring=True,
            )
            started = time.monotonic()
            async with SignalPublisher(bootstrap, settings.topic("signals")) as publisher:
                await publisher.publish_many(signals)
            await _send_malformed(bootstrap, settings.topic("signals"))
            print(
                f"published {len(signals)} signals for {WORKSPACES} workspaces "
                f"({publisher.records_sent} records) and {len(MALFORMED)} malformed records"
            )

            policy = settings.policy()
            expected = Counter(
                d.kind.value
                for d in replay_decisions(
                    signals, settings.window_config(), policy, settings.partitions
                )
            )
            try:
                entries = await read_ledger(
                    bootstrap,
                    settings.topic("ledger"),
                    until=lambda got: _complete(got, expected),
                    timeout=LEDGER_TIMEOUT_SECONDS,
                )
            except TimeoutError as exc:
                print(f"demo failed: {exc}\n--- worker log ---\n{worker.log_tail()}")
                return False
            elapsed = time.monotonic() - started
            health = await _noisiest_health(worker.web_url, token)
            effects = platform.effect_counts()
            requests = len(platform.requests)
            replays = sum(seen.replayed for seen in platform.requests)
        summary = summarize(entries)
        print(f"\nread back from the ledger topic after {elapsed:.1f} s:\n")
        print(summary.render())
        retried = sum(entry.kind is LedgerKind.ACTION_FAILED for entry in entries)
        print(
            f"\nthe sandbox platform applied {sum(effects.values())} effects for "
            f"{len(effects)} idempotency keys ({requests} requests, {replays} replays); "
            f"{retried} attempts failed and were retried"
        )
        print("\nhealth of the noisiest workspaces (GET /workspaces/{id}):")
        for line in health:
            print(f"  {line}")
        replayed = replay_policy(entries, policy)
        print("\nautopilot policy replay (the recorded decisions derived again):")
        print("  " + render(replayed).replace("\n", "\n  "))
        return _check(summary, expected, _step_commands(entries)) and not replayed.diverging


def _complete(entries: list[LedgerEntry], expected: Counter[str]) -> bool:
    kinds = Counter(entry.kind.value for entry in entries)
    decisions = sum(kinds[kind.value] for kind in DECISION_KINDS)
    commands = kinds[LedgerKind.DECISION_MADE.value] + kinds[LedgerKind.DECISION_DEFERRED.value]
    outcomes = sum(kinds[kind.value] for kind in TERMINAL_KINDS)
    ended = kinds[LedgerKind.PLAYBOOK_COMPLETED.value] + kinds[LedgerKind.PLAYBOOK_FAILED.value]
    return (
        decisions >= expected.total()
        and outcomes >= commands + _step_commands(entries)
        and kinds[LedgerKind.PLAYBOOK_STARTED.value] == ended
        and kinds[LedgerKind.SIGNAL_REJECTED.value] >= len(MALFORMED)
    )


def _step_commands(entries: list[LedgerEntry]) -> int:
    """Commands playbook runs issued besides their first (which is their decision's)."""
    return sum(
        len(entry.payload.commands)
        for entry in entries
        if isinstance(entry, PlaybookEntry) and entry.kind is not LedgerKind.PLAYBOOK_STARTED
    )


async def _noisiest_health(web_url: str, token: str) -> list[str]:
    lines = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for workspace_id in workspace_ids(NOISIEST):
            url = f"{web_url}/workspaces/{workspace_id}"
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(url, headers=headers) as response:
                if response.status != 200:
                    lines.append(f"{workspace_id}: HTTP {response.status}")
                    continue
                health = (await response.json())["health"]
            reasons = "; ".join(d["reason"] for d in health["deductions"]) or "no deductions"
            lines.append(f"{workspace_id}: {health['score']} {health['status']} ({reasons})")
    return lines


def _check(summary: LedgerSummary, expected: Counter[str], step_commands: int) -> bool:
    """The decisions are the offline replay's; every command ended once: the decisions' and
    the later steps' of the playbooks they started (which follow the outcomes, not only the
    signals)."""
    commands = expected["decision.made"] + expected["decision.deferred"] + step_commands
    ok = summary.decisions_per_verdict == expected and summary.outcomes == commands
    verdict = "matches" if ok else "DOES NOT match"
    mix = ", ".join(f"{n} {kind}" for kind, n in sorted(expected.items()))
    print(
        f"\noffline replay of the same signals expects {mix}: the ledger {verdict} (and "
        f"{summary.outcomes} commands ended, {step_commands} of them playbook steps)"
    )
    return ok


def _acting_on(worker: WorkerProcess, platform: Sandbox, keys: dict[str, str]) -> WorkerProcess:
    """The worker, set to act on the sandbox platform with quick retries."""
    worker.env.update(
        {
            "AUTOPILOT_CONTROL_API_URL": platform.url,
            "AUTOPILOT_CONTROL_API_TOKEN": keys["control"],
            "AUTOPILOT_WEBHOOK_SIGNING_KEY": keys["signing"],
            "AUTOPILOT_LLM_BASE_URL": platform.llm_base_url,
            "AUTOPILOT_LLM_API_KEY": keys["llm"],
            "AUTOPILOT_LLM_MODEL": "sandbox-writer",
            "AUTOPILOT_RETRY_BASE_SECONDS": "0.5",
        }
    )
    return worker


async def _send_malformed(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in MALFORMED:
            await producer.send_and_wait(topic, value, key=b"ws-000001")
    finally:
        await producer.stop()


if __name__ == "__main__":
    main()
