"""`make bench`: Autopilot end-to-end against raw aiokafka consumption of the same topic.

Each round uses fresh topics and a fresh worker. The worker is proven live first (a warm-up
signal's decision reaches the ledger), then the clock runs from the first published signal until
every decision that an offline replay of the same signals expects is on the ledger (made,
deferred or suppressed: the full policy, with its cooldowns, budgets and cap). The raw
figure is a plain consumer reading that signals topic from offset 0 with getmany and decoding
every signal with orjson. Rates are medians over the rounds; the ratio is of the medians.

The worker acts on a sandbox platform (tools/sandbox.py, its own process on loopback), so the
executors do real HTTP while the decisions are measured; the actions' own figure is the time
from the first signal until every command has its outcome on the ledger. The worker's live
projector is off here (the figures stay comparable with earlier runs); instead, each round's
ledger is then replayed into a fresh SQLite projection exactly as `autopilot replay` does, and
timed against a plain consumer reading (getmany + orjson) the same ledger.

Beside each round, the core alone: the same signals in the same batch records, decoded, folded
and decided in-process, with no Kafka.

Then the engine the signal path runs on (docs/engine.md): a counting stage and the signal stage
in-process over topics of one signal per record, each against raw aiokafka on its topic
(tools/engine_bench.py). Last, the worker process fed one signal per record: end-to-end, two
workers against one, decision latency, memory and restore (tools/worker_bench.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from app.client import DEFAULT_MAX_BATCH, SignalPublisher
from app.kafka_admin import ensure_topics
from app.settings import Settings, load_settings
from core.codec import decode_signals
from core.decide import decide_positioned, initial_quota
from core.policy import Mode, shard_share
from core.replay import replay_decisions, state_in
from core.windows import SourcePosition
from projections.database import Database
from projections.ledger_reader import read_ledger
from projections.replay_jobs import ReplayJob, replay
from projections.store import Projection
from tools import engine_bench, worker_bench
from tools.broker import provide_bootstrap
from tools.worker_process import WorkerProcess
from tools.worker_watch import BenchFailed
from tools.workload import realistic_stream
from topics.batches import encode_batches
from topics.ledger import DECISION_KINDS, TERMINAL_KINDS, LedgerEntry, LedgerKind
from topics.shards import Shards
from topics.signals import FollowupDue, Signal, SignalType

START = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
CORES = os.cpu_count() or 1
TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Round:
    """One round's measurements."""

    raw_rate: float
    e2e_rate: float
    decisions: int
    records: int
    actions: int
    action_rate: float
    ledger_records: int
    raw_ledger_rate: float
    replay_rate: float
    # `autopilot replay --jobs CORES`: one process per core, the ledger's partitions shared.
    parallel_rate: float


def main() -> None:
    """Parse options, run the rounds, print rates and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--workspaces", type=int, default=1_000)
    parser.add_argument(
        "--span-seconds", type=int, default=600, help="event-time span of the stream"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--monitoring",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mix in monitoring signals (gauges, errors), so every rule of the policy is used",
    )
    parser.add_argument(
        "--latency-rate", type=int, default=1_000, help="signals/s of the latency stream"
    )
    parser.add_argument(
        "--latency-seconds", type=float, default=15.0, help="how long latency is measured"
    )
    parser.add_argument(
        "--latency-light-rate",
        type=int,
        default=200,
        help="signals/s of a second latency stream, light enough not to saturate the machine",
    )
    parser.add_argument(
        "--memory-workspaces",
        type=int,
        default=100_000,
        help="workspaces folded before the worker's memory is read and its state restored",
    )
    args = parser.parse_args()
    try:
        asyncio.run(_bench(load_settings(), args))
    except BenchFailed as exc:
        raise SystemExit(str(exc)) from exc


async def _bench(base: Settings, args: argparse.Namespace) -> None:
    """Every measurement side by side on one broker, then the figures (medians)."""
    signals = realistic_stream(
        workspaces=args.workspaces,
        signals=args.signals,
        start=START,
        span_seconds=args.span_seconds,
        monitoring=args.monitoring,
    )
    policy = base.policy()
    expected = replay_decisions(signals, base.window_config(), policy, base.partitions)
    expected_ids = {d.decision_id for d in expected}
    commands = sum(d.kind.value in {"decision.made", "decision.deferred"} for d in expected)
    verdicts = Counter(d.kind.value for d in expected)
    print(
        f"workload: {len(signals)} signals, {args.workspaces} workspaces, "
        f"{args.span_seconds} s of event time, {base.partitions} partitions, "
        f"{'with' if args.monitoring else 'without'} monitoring signals; policy "
        f"{policy.version}: {len(expected_ids)} decisions expected "
        f"({', '.join(f'{n} {k}' for k, n in sorted(verdicts.items()))})"
    )
    workload = worker_bench.Workload(signals, expected_ids, START)
    options = worker_bench.Options(
        args.rounds,
        args.latency_rate,
        args.latency_seconds,
        args.memory_workspaces,
        args.latency_light_rate,
    )
    with (
        provide_bootstrap(base.kafka_bootstrap_servers, base.cache_dir) as bootstrap,
        tempfile.TemporaryDirectory(prefix="autopilot-bench-") as tmp,
        _sandbox() as platform,
    ):
        rounds, cores = await _batch_rounds(
            base, bootstrap, workload, commands, args.rounds, Path(tmp), platform
        )
        # The engine the signal path runs on (docs/engine.md), on its own topics.
        engine_raw, engine_rate = await engine_bench.measure(bootstrap, 200_000, args.rounds)
        stage_raw, stage_rate = await engine_bench.measure_signal_stage(bootstrap, args.rounds)
        workers = worker_bench.WorkerBench(base, bootstrap, Path(tmp), platform)
        worker_figures = await worker_bench.measure(workers, workload, options)
    _print_batch(rounds, statistics.median(cores))
    engine_bench.print_figures(engine_raw, engine_rate, stage_raw, stage_rate)
    worker_bench.print_figures(worker_figures, options)


async def _batch_rounds(
    base: Settings,
    bootstrap: str,
    workload: worker_bench.Workload,
    commands: int,
    count: int,
    tmp: Path,
    platform: dict[str, str],
) -> tuple[list[Round], list[float]]:
    """The batch rounds, each on fresh topics and a fresh worker, each beside the core alone."""
    signals = workload.signals
    rounds, cores = [], []
    for number in range(1, count + 1):
        core = _core_rate(base, signals, len(workload.expected))
        run = f"bench{int(time.time())}r{number}"
        settings = base.model_copy(update={"topic_prefix": f"{run}.", "app_id": f"ap-{run}"})
        result = await _round(
            settings, bootstrap, signals, workload.expected, commands, tmp / run, platform
        )
        rounds.append(result)
        cores.append(core)
        print(
            f"round {number}: raw {result.raw_rate:,.0f} signals/s, "
            f"batch end-to-end {result.e2e_rate:,.0f} signals/s "
            f"({result.records} records, {result.decisions} decisions on the ledger), "
            f"ratio {result.e2e_rate / result.raw_rate:.3f}; core {core:,.0f} signals/s; "
            f"{result.actions} actions carried out, {result.action_rate:,.0f} actions/s; "
            f"ledger of {result.ledger_records} records: raw {result.raw_ledger_rate:,.0f}/s, "
            f"replay into SQLite {result.replay_rate:,.0f} entries/s (1 process), "
            f"{result.parallel_rate:,.0f} entries/s ({CORES} processes)"
        )
    return rounds, cores


def _print_batch(rounds: list[Round], core: float) -> None:
    """The batch rounds' lines: medians, and the ratios of the medians."""
    raw = statistics.median(r.raw_rate for r in rounds)
    e2e = statistics.median(r.e2e_rate for r in rounds)
    said = f"medians of {len(rounds)} rounds" if len(rounds) > 1 else "1 round"
    print(f"\nbatch records through the worker ({said})")
    print(f"raw aiokafka (getmany + orjson decode):   {raw:>12,.0f} signals/s (median)")
    print(f"batch end-to-end: {e2e:,.0f} signals/s")
    print(f"ratio batch / raw: {e2e / raw:.3f}")
    print(f"core in-process (decode, fold, decide):  {core:>12,.0f} signals/s (median)")
    print(f"ratio batch / core: {e2e / core:.3f}")
    actions = statistics.median(r.action_rate for r in rounds)
    print(f"actions on the sandbox platform (HTTP):  {actions:>12,.0f} actions/s (median)")
    raw_ledger = statistics.median(r.raw_ledger_rate for r in rounds)
    replay = statistics.median(r.replay_rate for r in rounds)
    parallel = statistics.median(r.parallel_rate for r in rounds)
    print(f"raw aiokafka on the ledger:              {raw_ledger:>12,.0f} entries/s (median)")
    print(f"autopilot replay into SQLite, 1 process: {replay:>12,.0f} entries/s (median)")
    print(f"ratio replay / raw:                      {replay / raw_ledger:>12.3f}")
    print(f"autopilot replay, {CORES} processes:          {parallel:>12,.0f} entries/s (median)")
    print(f"ratio replay ({CORES} processes) / raw:        {parallel / raw_ledger:>12.3f}")


def _core_rate(settings: Settings, signals: list[Signal], expected: int) -> float:
    """Signals/s of the core alone, in-process: each shard's signals in batch records as the
    client sends them, every record decoded, then the shard's signals folded and decided in
    one call, as the signal stage does with a batch. No Kafka, no ledger entries."""
    policy, windows, partitions = settings.policy(), settings.window_config(), settings.partitions
    shards = Shards(partitions)
    per_shard: dict[int, list[Signal]] = {}
    for signal in signals:
        per_shard.setdefault(shards.owner(signal.workspace_id), []).append(signal)
    records = {
        shard: [
            value
            for at in range(0, len(own), DEFAULT_MAX_BATCH)
            for value in encode_batches(own[at : at + DEFAULT_MAX_BATCH])
        ]
        for shard, own in per_shard.items()
    }
    decisions = 0
    started = time.perf_counter()
    for shard, values in records.items():
        positioned = [
            (signal, SourcePosition("signals", shard, offset))
            for offset, value in enumerate(values)
            for signal in decode_signals(value).signals
        ]
        decided = decide_positioned(
            partial(state_in, {}),
            positioned,
            windows,
            policy,
            initial_quota(),
            shard_share(policy.limits.platform_cap_per_interval, partitions, shard),
            Mode(),
        )
        decisions += len(decided.decisions)
    rate = len(signals) / (time.perf_counter() - started)
    if decisions != expected:
        raise SystemExit(f"bench failed: the core decided {decisions}, the replay {expected}")
    return rate


async def _round(
    settings: Settings,
    bootstrap: str,
    signals: list[Signal],
    expected: set[str],
    commands: int,
    tmp: Path,
    platform: dict[str, str],
) -> Round:
    await ensure_topics(settings, bootstrap)
    worker = WorkerProcess.for_deployment(settings, bootstrap, tmp)
    worker.env.update(platform)
    worker.env["AUTOPILOT_PROJECTOR_ENABLED"] = "false"
    decided_at: list[float] = []

    def complete(got: list[LedgerEntry]) -> bool:
        if not worker.alive:
            return True  # nothing more comes: said below
        if not decided_at and _decisions(got) >= len(expected) + 1:
            decided_at.append(time.perf_counter())
        # The warm-up's command is one more outcome.
        return bool(decided_at) and _outcomes(got) >= commands + 1

    with worker:
        ledger = settings.topic("ledger")
        try:
            await _warm_up(settings, bootstrap, lambda: not worker.alive)
            started = time.perf_counter()
            async with SignalPublisher(bootstrap, settings.topic("signals")) as publisher:
                await publisher.publish_many(signals)
            entries = await read_ledger(bootstrap, ledger, until=complete, timeout=TIMEOUT_SECONDS)
            acted = time.perf_counter() - started
        except TimeoutError as exc:
            raise SystemExit(
                f"bench failed: {exc}\n--- worker log ---\n{worker.log_tail()}"
            ) from exc
        if not worker.alive:
            raise SystemExit(
                f"bench failed: the worker exited with code {worker.returncode}\n"
                f"--- worker log ---\n{worker.log_tail()}"
            )
    decided = {e.entry_id for e in entries if e.kind in DECISION_KINDS}
    missing = expected - decided
    if missing:
        raise SystemExit(f"bench failed: {len(missing)} expected decisions not on the ledger")
    succeeded = sum(e.kind is LedgerKind.ACTION_SUCCEEDED for e in entries)
    if succeeded < commands + 1:
        raise SystemExit(f"bench failed: {commands + 1 - succeeded} actions did not succeed")
    raw_rate = await engine_bench.raw_rate(bootstrap, settings.topic("signals"), len(signals) + 1)
    replayed, replay_rate = await asyncio.to_thread(_replay_rate, settings, bootstrap, tmp, 1)
    _, parallel_rate = await asyncio.to_thread(_replay_rate, settings, bootstrap, tmp, CORES)
    raw_ledger_rate = await engine_bench.raw_rate(bootstrap, ledger, replayed)
    return Round(
        raw_rate,
        len(signals) / (decided_at[0] - started),
        len(decided) - 1,
        publisher.records_sent,
        commands,
        commands / acted,
        replayed,
        raw_ledger_rate,
        replay_rate,
        parallel_rate,
    )


def _replay_rate(
    settings: Settings, bootstrap: str, tmp: Path, processes: int
) -> tuple[int, float]:
    """Ledger records and entries/s of a replay into a fresh SQLite file (`autopilot replay
    --jobs N`), from the first fetch to the last commit."""
    url = f"sqlite:///{tmp / f'replayed-{processes}.sqlite3'}"
    database = Database.open(url)
    try:
        # Created once before the processes start, as `autopilot replay` does.
        Projection(database, settings.topic("ledger"), settings.metrics_interval_seconds)
    finally:
        database.close()
    job = ReplayJob(
        url,
        bootstrap,
        settings.topic("ledger"),
        settings.metrics_interval_seconds,
        settings.projector_batch_records,
        None,
    )
    totals = replay(job, processes)
    return totals.records, totals.rate


@contextmanager
def _sandbox() -> Iterator[dict[str, str]]:
    """A sandbox platform in its own process; yields the worker settings that reach it."""
    keys = {name: secrets.token_urlsafe(24) for name in ("control", "signing", "llm")}
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.sandbox", "--port", "0"],
        env={
            "SANDBOX_CONTROL_TOKEN": keys["control"],
            "SANDBOX_SIGNING_KEY": keys["signing"],
            "SANDBOX_LLM_KEY": keys["llm"],
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("sandbox listening on "):
            raise SystemExit(f"bench failed: the sandbox platform did not start ({line!r})")
        url = line.removeprefix("sandbox listening on ")
        yield {
            "AUTOPILOT_CONTROL_API_URL": url,
            "AUTOPILOT_CONTROL_API_TOKEN": keys["control"],
            "AUTOPILOT_WEBHOOK_SIGNING_KEY": keys["signing"],
            "AUTOPILOT_LLM_BASE_URL": f"{url}/v1",
            "AUTOPILOT_LLM_API_KEY": keys["llm"],
            "AUTOPILOT_LLM_MODEL": "sandbox-writer",
        }
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _warm_up(settings: Settings, bootstrap: str, died: Callable[[], bool]) -> None:
    # A day before the workload: its slot under the platform cap is in an interval the
    # workload never uses, so the expected decisions are unchanged.
    signal = FollowupDue(
        id="warm-up",
        workspace_id="ws-warm-up",
        type=SignalType.FOLLOWUP_DUE,
        occurred_at=START - timedelta(days=1),
        source="bench",
    )
    async with SignalPublisher(bootstrap, settings.topic("signals")) as publisher:
        await publisher.publish(signal)
    await read_ledger(
        bootstrap,
        settings.topic("ledger"),
        until=lambda got: died() or _decisions(got) >= 1,
        timeout=120,
    )


def _decisions(entries: list[LedgerEntry]) -> int:
    return sum(1 for e in entries if e.kind in DECISION_KINDS)


def _outcomes(entries: list[LedgerEntry]) -> int:
    return sum(1 for e in entries if e.kind in TERMINAL_KINDS)


if __name__ == "__main__":
    main()
