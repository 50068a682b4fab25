"""The README's commands, run as a user runs them, so that they cannot drift."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from app.settings import Settings
from tests.integration.commands import command, ended, ledger_until, send
from tests.integration.conftest import StartWorker
from tools.local_kafka import broker_answers
from tools.sandbox import Sandbox
from topics.commands import Action, Priority
from topics.ledger import TERMINAL_KINDS, LedgerEntry, LedgerKind

TOPICS = (
    "signals",
    "signals.dlq",
    "control",
    "commands.critical",
    "commands.high",
    "commands.medium",
    "commands.low",
    "commands.dlq",
    "ledger",
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def processes_marked(marker: str) -> set[int]:
    """Processes whose environment carries the marker: a command's children inherit it."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"AUTOPILOT_TEST_MARKER={marker}".encode() in environ.split(b"\0"):
            found.add(int(proc.name))
    return found


def test_demo_prints_a_summary_read_from_the_ledger_and_leaves_nothing_running() -> None:
    # Given no configured broker, as on a fresh machine (the demo starts its own)
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["AUTOPILOT_TEST_MARKER"] = marker
    # When the demo runs
    result = subprocess.run(
        [sys.executable, "-m", "tools.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    # Then it succeeds and its summary, read from the ledger, agrees with the offline replay
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "published 20000 signals for 1000 workspaces" in out
    assert re.search(
        r"expects \d+ decision\.deferred, \d+ decision\.made, \d+ decision\.suppressed: "
        r"the ledger matches",
        out,
    ), out
    for rule in ("followup_due", "health_degraded", "integration_offline", "webhook_failed"):
        assert re.search(rf"seed\.{rule}\s+\d+", out), out
    assert re.search(r"emergency\.reported_critical\s+\d+", out), out
    assert re.search(r"monitor\.queue_saturated\s+\d+", out), out
    # And the playbooks it started ran to their end, each step's command ended once
    assert re.search(r"playbook\.provisioning_failed\s+\d+", out), out
    assert re.search(r"verify_health\s+action\.succeeded \d+", out), out
    assert re.search(r"\d+ commands ended, [1-9]\d* of them playbook steps", out), out
    assert re.search(r"\d+ playbook transitions derived again", out), out
    # And the policy replay over the demo's own ledger finds every decision identical
    assert re.search(r"evaluations in \d+ workspaces: \d+ identical, 0 diverging", out), out
    assert re.search(r"send_followup\s+action\.succeeded \d+", out), out
    assert re.search(r"undecodable\s+1\n\s+invalid\s+2|invalid\s+2\n\s+undecodable\s+1", out), out
    assert re.search(r"workspaces affected: \d{3}", out), out
    # And every process it started (worker, broker) is gone
    assert processes_marked(marker) == set()


def test_bench_prints_both_rates_and_their_ratio(kafka_bootstrap: str) -> None:
    # Given a broker, when a small benchmark runs
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.bench",
            "--signals",
            "3000",
            "--workspaces",
            "100",
            "--rounds",
            "1",
            "--latency-seconds",
            "3",
            "--memory-workspaces",
            "2000",
        ],
        cwd=ROOT,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap},
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    # Then it prints the raw rate, the batch end-to-end rate and their ratio
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout

    def figure(pattern: str) -> float:
        match = re.search(pattern, out)
        assert match, f"no {pattern!r} in:\n{out}"
        value = float(match.group(1).replace(",", ""))
        assert value > 0, out
        return value

    raw = figure(r"raw aiokafka \(getmany \+ orjson decode\):\s+([\d,]+) signals/s")
    batch = figure(r"\nbatch end-to-end: ([\d,]+) signals/s\n")
    assert figure(r"ratio batch / raw: ([\d.]+)") == pytest.approx(batch / raw, abs=0.002)
    # And the core alone, in-process, against which the batch rate is set
    core = figure(r"core in-process \(decode, fold, decide\):\s+([\d,]+) signals/s")
    assert figure(r"ratio batch / core: ([\d.]+)") == pytest.approx(batch / core, abs=0.002)
    # And how fast the executors carried the commands out on the sandbox platform
    figure(r"actions on the sandbox platform \(HTTP\):\s+([\d,]+) actions/s")
    # And the ledger replayed into SQLite against raw consumption of that ledger, with the ratio
    raw_ledger = figure(r"raw aiokafka on the ledger:\s+([\d,]+) entries/s")
    replayed = figure(r"replay into SQLite, 1 process:\s+([\d,]+) entries/s")
    assert figure(r"ratio replay / raw:\s+([\d.]+)") == pytest.approx(
        replayed / raw_ledger, abs=0.002
    )
    # And the worker process fed one signal per record, against raw on that topic
    raw_one = figure(r"raw aiokafka on the one-per-record topic: ([\d,]+) signals/s")
    one = figure(r"\none-per-record end-to-end: ([\d,]+) signals/s\n")
    assert figure(r"ratio one-per-record / raw: ([\d.]+)") == pytest.approx(
        one / raw_one, abs=0.002
    )
    two = figure(r"two workers end-to-end: ([\d,]+) signals/s")
    assert figure(r"\ntwo workers / one: ([\d.]+)\n") == pytest.approx(two / one, abs=0.01)
    # And the decision latency at both rates, the memory and the restore
    for rate in (1000, 200):
        latency = re.search(
            rf"\ndecision latency p50/p99 at {rate} signals/s: ([\d.]+) / ([\d.]+) ms\n", out
        )
        assert latency and 0 < float(latency.group(1)) <= float(latency.group(2)), out
    figure(r"\nrss after 2000 workspaces: (\d+) MB\n")
    entries = figure(r"\nready after (\d+) changelog entries: [\d.]+ s\n")
    assert entries >= 2000, out
    figure(r"\nready after \d+ changelog entries: ([\d.]+) s\n")
    assert re.search(r"\nrestore rate .*: ([\d,]+ entries/s|n/a \(within noise\))\n", out), out
    figure(r"\nempty worker ready: ([\d.]+) s\n")


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README has no python example"
    return match.group(1)


def test_readme_example_publishes_and_reads_the_decision_back(
    settings: Settings, start_worker: StartWorker, tmp_path: Path
) -> None:
    # Given a worker, when the README's example runs as a script against the same deployment
    start_worker()
    script = tmp_path / "example.py"
    script.write_text(readme_python_example())
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then it prints the decision and the outcome it promises
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "decision.made ws-acme emergency.reported_critical",
        "action.started ws-acme emergency.reported_critical",
        "action.succeeded ws-acme emergency.reported_critical",
    ]


async def test_autopilot_topics_creates_every_topic_with_the_shard_count(
    kafka_bootstrap: str,
) -> None:
    run = f"cli{uuid.uuid4().hex[:8]}"
    prefix = f"{run}."
    changelogs = [f"{run}.signals-changelog", f"{run}-executions-changelog"]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "AUTOPILOT_TOPIC_PREFIX": prefix,
        "AUTOPILOT_APP_ID": run,
        "AUTOPILOT_PARTITIONS": "3",
    }
    # When `autopilot topics` runs twice (the second time finds them all)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-m", "app", "topics"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    # Then every topic, and each state changelog (compacted), exists with three partitions
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([prefix + name for name in TOPICS] + changelogs)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in changelogs]
        )
    finally:
        await admin.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {
        **{prefix + name: 3 for name in TOPICS},
        **{name: 3 for name in changelogs},
    }
    policies = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}["cleanup.policy"]
        for response in configs
        for resource in response.resources
    }
    assert policies == {name: "compact" for name in changelogs}
    # And a worker configured for another shard count is refused with what to fix
    result = subprocess.run(
        [sys.executable, "-m", "app", "topics"],
        cwd=ROOT,
        env={**env, "AUTOPILOT_PARTITIONS": "5"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "has 3 partitions but AUTOPILOT_PARTITIONS is 5" in result.stderr


def test_the_local_broker_tool_serves_until_terminated() -> None:
    # When the local broker runs in the foreground
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.local_kafka", "run"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        bootstrap = None
        deadline = time.monotonic() + 120
        while bootstrap is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if line.startswith("KAFKA_BOOTSTRAP_SERVERS="):
                bootstrap = line.strip().split("=", 1)[1]
        # Then it prints where it listens, and answers there
        assert bootstrap is not None
        assert broker_answers(bootstrap)
        # And SIGTERM stops it cleanly, leaving no broker behind
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert not broker_answers(bootstrap, timeout=2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def readme_commands(marker: str) -> list[str]:
    """The curl commands of the README's first sh block that contains `marker`, each with its
    continuation lines, without comments (the block may be indented, in a list item)."""
    text = (ROOT / "README.md").read_text()
    block = next(b for b in re.findall(r" *```sh\n(.*?)```", text, re.DOTALL) if marker in b)
    commands: list[list[str]] = []
    for line in (line.strip() for line in block.splitlines()):
        if line.startswith("curl "):
            commands.append([line])
        elif line.startswith("#") or not line:
            continue
        elif commands:
            commands[-1].append(line)
    return ["\n".join(lines) for lines in commands]


def run_shell(command: str, env: dict[str, str]) -> str:
    """A README command as a user's shell runs it; its standard output."""
    result = subprocess.run(
        ["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30
    )
    return result.stdout


def test_readme_curl_commands_post_a_signal_and_read_the_health_back(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker with tokens, and the README's two curl commands aimed at it
    worker = start_worker()
    post, get = (
        command.replace("http://127.0.0.1:6066", worker.web_url)
        for command in readme_commands("/signals")
    )
    env = {
        **os.environ,
        **{k: worker.env[k] for k in ("AUTOPILOT_INGEST_TOKEN", "AUTOPILOT_CONTROL_TOKEN")},
    }

    def run(command: str) -> str:
        return run_shell(command, env)

    # When the POST is sent (retried while the worker is still starting)
    deadline = time.monotonic() + 60
    posted = run(post)
    while '"accepted"' not in posted and time.monotonic() < deadline:
        time.sleep(0.5)
        posted = run(post)
    # Then it is accepted as the README says
    assert posted == '{"accepted":1,"ids":["q-1"]}', worker.log_tail()
    # And the GET soon shows the queue depth and the health it gives
    answer = run(get)
    while '"health"' not in answer and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = run(get)
    state = orjson.loads(answer)
    assert state["gauges"] == {"queue_depth": {"at": 1_795_255_200, "value": 73}}
    assert state["health"]["score"] == 80
    assert state["health"]["status"] == "healthy"
    assert state["health"]["deductions"] == [
        {"reason": "queue saturated: 73 pending > 50", "points": 20}
    ]


def test_readme_operator_commands_pause_resume_and_switch_dry_run_on(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker with tokens, and the README's four operator commands aimed at it
    worker = start_worker()
    pause, resume, dry_run, show = (
        command.replace("http://127.0.0.1:6066", worker.web_url)
        for command in readme_commands("operator/pause")
    )
    env = {**os.environ, "AUTOPILOT_CONTROL_TOKEN": worker.env["AUTOPILOT_CONTROL_TOKEN"]}

    def run(command: str) -> str:
        return run_shell(command, env)

    def shards_become(mode: dict[str, bool]) -> dict[str, object]:
        deadline = time.monotonic() + 60
        while True:
            answer = run(show)
            shards = orjson.loads(answer)["shards"] if answer.startswith("{") else {}
            if len(shards) == settings.partitions and all(m == mode for m in shards.values()):
                return shards
            assert time.monotonic() < deadline, f"{answer}\n{worker.log_tail()}"
            time.sleep(0.5)

    # When the pause is sent (retried while the worker is still starting)
    deadline = time.monotonic() + 60
    paused = run(pause)
    while '"request_id"' not in paused and time.monotonic() < deadline:
        time.sleep(0.5)
        paused = run(pause)
    # Then it is accepted for every shard as the README says, and every shard pauses
    answer = orjson.loads(paused)
    assert (answer["switch"], answer["shards"]) == ("pause", settings.partitions)
    assert answer["request_id"].startswith("req-")
    shards_become({"paused": True, "dry_run": False})
    # And resume and dry-run do what they say, in order
    assert orjson.loads(run(resume))["switch"] == "resume"
    shards_become({"paused": False, "dry_run": False})
    assert orjson.loads(run(dry_run))["switch"] == "dry_run_on"
    assert shards_become({"paused": False, "dry_run": True}) == {
        str(shard): {"paused": False, "dry_run": True} for shard in range(settings.partitions)
    }


async def test_readme_run_once_command_sweeps_every_shard(
    settings: Settings, start_worker: StartWorker
) -> None:
    # Given a worker running the seed policy, and the README's run-once command aimed at it
    worker = start_worker()
    (run_once,) = (
        command.replace("http://127.0.0.1:6066", worker.web_url)
        for command in readme_commands("/run-once")
    )
    env = {**os.environ, "AUTOPILOT_CONTROL_TOKEN": worker.env["AUTOPILOT_CONTROL_TOKEN"]}

    # When it runs (retried while the worker is still starting)
    deadline = time.monotonic() + 60
    answer = run_shell(run_once, env)
    while '"ticks"' not in answer and time.monotonic() < deadline:
        time.sleep(0.5)
        answer = run_shell(run_once, env)

    # Then every shard gets a tick of the daily sweep, and records its sweep.completed
    ticks = orjson.loads(answer)["ticks"]
    assert sorted((t["schedule"], t["shard"]) for t in ticks) == [
        ("daily", shard) for shard in range(settings.partitions)
    ]
    ids = {t["tick_id"] for t in ticks}

    def swept(entries: list[LedgerEntry]) -> list[LedgerEntry]:
        return [
            e for e in entries if e.kind is LedgerKind.SWEEP_COMPLETED and e.payload.tick_id in ids
        ]

    entries = await ledger_until(settings, lambda got: len(swept(got)) == settings.partitions)
    assert {(e.payload.requested_by, e.payload.workspaces) for e in swept(entries)} == {
        ("operator", 0)
    }


async def test_readme_approval_and_dlq_commands_do_what_they_say(
    settings: Settings, start_worker: StartWorker, sandbox: Sandbox
) -> None:
    # Given a worker, two credits waiting for approval and a dead-lettered webhook retry
    worker = start_worker()
    sandbox.script("ws-acme", "webhooks-failed", [503] * 5)
    credit, other = (
        command(n, "ws-acme", Action.ISSUE_CREDIT, Priority.HIGH) for n in ("rd1", "rd2")
    )
    webhook = command("rd3", "ws-acme", Action.RETRY_WEBHOOK)
    await send(settings, [credit, other, webhook])
    await ledger_until(
        settings,
        lambda got: (
            sum(e.kind is LedgerKind.ACTION_APPROVAL_REQUESTED for e in got) == 2
            and ended(webhook.command_id)(got)
        ),
    )
    approve, reject = (
        c.replace("http://127.0.0.1:6066", worker.web_url) for c in readme_commands("/approvals/")
    )
    env = {
        **os.environ,
        "AUTOPILOT_CONTROL_TOKEN": worker.env["AUTOPILOT_CONTROL_TOKEN"],
        "COMMAND_ID": credit.command_id,
        "OTHER_COMMAND_ID": other.command_id,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
        "PYTHONPATH": str(ROOT),
    }
    # When the README's approval commands run
    approved = orjson.loads(run_shell(approve, env))
    assert orjson.loads(run_shell(reject, env))["verdict"] == "rejected"
    # Then they are answered as it says, and the approved credit ran, the other did not
    assert approved["verdict"] == "approved"
    assert (approved["workspace_id"], approved["command_id"]) == ("ws-acme", credit.command_id)
    entries = await ledger_until(settings, ended(credit.command_id, other.command_id))
    ends = {e.payload.command_id: e.kind for e in entries if e.kind in TERMINAL_KINDS}
    assert ends[credit.command_id] is LedgerKind.ACTION_SUCCEEDED
    assert ends[other.command_id] is LedgerKind.ACTION_REJECTED
    # And the README's dlq replay command lists the dead-lettered webhook retry, sending nothing
    [listing] = readme_dlq_commands()
    shown = subprocess.run(
        ["bash", "-c", listing.replace("autopilot ", f"{sys.executable} -m app ", 1)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert webhook.command_id in shown.stdout, shown.stdout


def readme_dlq_commands() -> list[str]:
    """The `autopilot dlq replay` lines of the README's sh blocks."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r" *```sh\n(.*?)```", text, re.DOTALL)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("autopilot dlq replay")
    ]
