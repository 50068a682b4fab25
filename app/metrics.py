"""The worker's Prometheus metrics, served at `GET /metrics` in Prometheus' text format.

Counted where it happens, read when scraped: the signal stage counts what its committed batches
did and the executor what it recorded on the ledger; at each scrape this module turns those
counts, the engine's lag and readiness and the breakers' states into metric families, so the
hot path never calls Prometheus' client per record. Only the engine's commits (duration, size,
restored entries) and HTTP requests are observed into prometheus-client's own metrics.

Label values are bounded sets (rule ids, verdicts, actions, reason kinds, partitions, route
patterns), never a workspace id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agents.executor import Executor
from agents.lanes import LaneGate
from agents.signal_engine import SignalEngine
from app.projection_reads import ProjectionReads
from core.breaker import BreakerState
from projections.database import DatabaseError
from projections.platform_view import command_counts
from projections.report import ProjectionsMissingError

# Methods a client may send are unbounded; anything else is counted as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A commit waits on the broker: milliseconds when it is near, seconds when it struggles.
_COMMIT_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_COMMIT_RECORDS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)


class WorkerMetrics:
    """Every metric of one worker, in a registry of its own (not the process-wide default:
    tests run several apps in one process)."""

    def __init__(
        self, signals: SignalEngine, executor: Executor, not_ready: Callable[[], str | None]
    ) -> None:
        self.registry = CollectorRegistry()
        self._http = Counter(
            "autopilot_http_requests",
            "HTTP requests answered, by route pattern, method and status (401s included).",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self._commit_seconds = Histogram(
            "autopilot_engine_commit_seconds",
            "Time one signal-stage transaction took to commit.",
            buckets=_COMMIT_SECONDS,
            registry=self.registry,
        )
        self._commit_records = Histogram(
            "autopilot_engine_commit_records",
            "Input records committed in one signal-stage transaction.",
            buckets=_COMMIT_RECORDS,
            registry=self.registry,
        )
        self._restored = Counter(
            "autopilot_engine_restored_entries",
            "State changelog entries restored into this worker's partition stores.",
            registry=self.registry,
        )
        # Commands per status, platform-wide, as the projections last said (None: no read
        # models there); refreshed beside the loop by `refresh_commands`.
        self.commands: dict[str, int] | None = None
        # Commands waiting per lane on this worker's lane partitions (None: not known yet);
        # refreshed beside the loop by `refresh_lanes`.
        self.lanes: dict[str, int] | None = None
        self.registry.register(_Polled(signals, executor, not_ready, self))
        signals.engine.observer = self

    async def refresh_commands(self, reads: ProjectionReads) -> None:
        """Read the command counts again (a query in a thread, never at scrape time)."""
        try:
            self.commands = await reads.read(command_counts)
        except (ProjectionsMissingError, DatabaseError):
            self.commands = None

    async def refresh_lanes(self, gate: LaneGate, partitions: list[int]) -> None:
        """Count the lanes' backlogs again (offset lookups and peeks, never at scrape time)."""
        try:
            waiting = await gate.backlog(partitions)
        except (TimeoutError, KafkaError):
            self.lanes = None
            return
        self.lanes = {lane.value: count for lane, count in waiting.items()}

    def count_request(self, route: str, method: str, status: int) -> None:
        """One HTTP answer (the access middleware calls this)."""
        self._http.labels(route, method if method in _METHODS else "OTHER", str(status)).inc()

    def committed(self, partition: int, records: int, seconds: float) -> None:
        self._commit_seconds.observe(seconds)
        self._commit_records.observe(records)

    def restored(self, partition: int, entries: int) -> None:
        self._restored.inc(entries)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _Polled(Collector):
    """The families read from the worker's parts at each scrape."""

    def __init__(
        self,
        signals: SignalEngine,
        executor: Executor,
        not_ready: Callable[[], str | None],
        metrics: WorkerMetrics,
    ) -> None:
        self._signals = signals
        self._executor = executor
        self._not_ready = not_ready
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._stage()
        yield from self._engine()
        yield from self._executor_families()
        ready = GaugeMetricFamily(
            "autopilot_ready", "1 when the worker is ready (GET /ready answers 200), else 0."
        )
        ready.add_metric([], 0.0 if self._not_ready() else 1.0)
        yield ready
        if self._metrics.lanes is not None:
            lanes = GaugeMetricFamily(
                "autopilot_lane_backlog",
                "Commands committed to each lane and not yet served, on this worker's lane "
                "partitions (set-aside deferred commands included).",
                labels=["lane"],
            )
            for lane, count in self._metrics.lanes.items():
                lanes.add_metric([lane], count)
            yield lanes
        if self._metrics.commands is not None:
            commands = GaugeMetricFamily(
                "autopilot_commands",
                "Commands per status across the platform, as the projections hold them "
                "(awaiting_approval: parked for an operator); every worker reports the same.",
                labels=["status"],
            )
            for status, count in sorted(self._metrics.commands.items()):
                commands.add_metric([status], count)
            yield commands

    def _stage(self) -> Iterator[Metric]:
        folded = CounterMetricFamily(
            "autopilot_signals_folded", "Signals folded into workspace state (committed)."
        )
        rejected = CounterMetricFamily(
            "autopilot_signals_rejected",
            "Inputs refused and dead-lettered, by reason kind (undecodable, oversize, invalid).",
            labels=["reason"],
        )
        decisions = CounterMetricFamily(
            "autopilot_decisions",
            "Decisions recorded, by rule and verdict (made, deferred, suppressed).",
            labels=["rule", "verdict"],
        )
        sweeps = CounterMetricFamily(
            "autopilot_sweeps",
            "Sweep runs this worker's shards completed, by schedule (scheduled and requested).",
            labels=["schedule"],
        )
        playbooks = CounterMetricFamily(
            "autopilot_playbook_runs",
            "Playbook runs this worker's shards started, completed and failed, by playbook.",
            labels=["playbook", "event"],
        )
        ignored = CounterMetricFamily(
            "autopilot_playbook_inputs_ignored",
            "Step outcomes and due times no run waited for: a copy (after a crash), a run not "
            "on this shard, or a playbook (or step) the policy no longer has, whose runs wait.",
            labels=["reason"],
        )
        held = CounterMetricFamily(
            "autopilot_signals_held",
            "Signals written ahead of their time and held until it (folded later).",
        )
        totals = self._signals.stage.totals
        folded.add_metric([], totals.get(("folded",), 0))
        held.add_metric([], totals.get(("held",), 0))
        for key, count in sorted(totals.items()):
            if key[0] == "rejected":
                rejected.add_metric([key[1]], count)
            elif key[0] == "decision":
                decisions.add_metric([key[1], key[2].removeprefix("decision.")], count)
            elif key[0] == "sweep":
                sweeps.add_metric([key[1]], count)
            elif key[0] == "playbook":
                playbooks.add_metric([key[1], key[2]], count)
            elif key[0] == "playbook_ignored":
                ignored.add_metric([key[1]], count)
        yield from (folded, rejected, decisions, sweeps, held, playbooks, ignored)

    def _engine(self) -> Iterator[Metric]:
        engine = self._signals.engine
        lag = GaugeMetricFamily(
            "autopilot_consumer_lag",
            "Input records of the signal stage not yet processed, per owned partition.",
            labels=["topic", "partition"],
        )
        for tp, behind in sorted(engine.lag().items()):
            lag.add_metric([tp.topic, str(tp.partition)], behind)
        owned = GaugeMetricFamily(
            "autopilot_partitions_owned", "Signal partitions (shards) this worker owns."
        )
        owned.add_metric([], len(engine.owned))
        restoring = GaugeMetricFamily(
            "autopilot_partitions_restoring", "Partitions whose state is being restored now."
        )
        restoring.add_metric([], engine.restoring)
        yield from (lag, owned, restoring)

    def _executor_families(self) -> Iterator[Metric]:
        actions = CounterMetricFamily(
            "autopilot_actions",
            "Action outcomes this worker recorded on the ledger, by action and outcome "
            "(started, succeeded, failed, deferred, skipped, dead_lettered, ...).",
            labels=["action", "outcome"],
        )
        for (action, outcome), count in sorted(self._executor.outcomes.items()):
            actions.add_metric([action, outcome], count)
        breakers = GaugeMetricFamily(
            "autopilot_breaker_state",
            "1 for each provider's current circuit breaker state, 0 for the others.",
            labels=["provider", "state"],
        )
        for provider, current in self._executor.breakers.states().items():
            for state in BreakerState:
                breakers.add_metric([provider, state.value], float(state.value == current))
        yield from (actions, breakers)
