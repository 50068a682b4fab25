"""The Faust app: its settings, topics and table. The one place that configures Faust."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ProducerT, TransportT

from agents.boundary import crash_on_unexpected
from agents.ledger_chain import LedgerChain
from agents.log_format import format_logs
from agents.log_repeats import hold_back_repeats
from agents.rocksdb_store import ClosingStore
from engine.batch_engine import BatchEngine
from topics import catalog
from topics.catalog import EXECUTIONS_TABLE
from topics.commands import Priority
from topics.kafka_security import KafkaSecurity

if TYPE_CHECKING:
    # Built at the edge (app/settings.py); the agents only read it.
    from app.settings import Settings


class QuietWorker(faust.Worker):
    """Faust's worker without its terminal spinner.

    The spinner sets the root logger to DEBUG whenever the log level is WARN or higher, so every
    debug call in Faust and aiokafka builds a log record: measured at a quarter of the decide
    agent's time. It also writes terminal escape codes into log files.
    """

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Configure the root logger without the spinner handler, in the configured format
        (plain with `extra` fields, or JSON lines), holding back a Kafka client's repeated
        errors."""
        self.spinner = None
        hold_back_repeats(logger)
        format_logs(logger, self.app.log_format if isinstance(self.app, AutopilotApp) else "plain")


class IdempotentProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer with idempotence always on (Faust turns it on only inside its
    own transactions).

    A produce request whose answer is lost, as when a broker restarts, is sent again; without
    idempotence the broker can append the batch twice, and a copied ledger entry breaks its
    chain (a broker restart under load broke one).
    """

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer, reading only committed records (Faust does so only inside its own
    transactions).

    The signal stage writes commands in transactions: reading uncommitted, an executor would
    run the commands of a batch that is later aborted (a zombie's, or one whose commit failed),
    whose decisions never reach the ledger.
    """

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (it builds its fetcher then); Faust passes no setting.
        consumer._isolation_level = "read_committed"
        return consumer


class ReadCommittedConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer on the read-committed thread above."""

    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class AutopilotTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with the read-committed consumer."""

    Consumer = ReadCommittedConsumer


class ClosingTable(faust.Table[Any, Any]):
    """Faust's table, on a store that closes its databases (agents/rocksdb_store.py)."""

    def _new_store_by_url(self, url: Any) -> Any:
        return ClosingStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )


class AutopilotApp(faust.App):
    """The Faust app with the idempotent producer, hosting engines, stopping its tables last."""

    def __init__(self, *args: Any, log_format: str = "plain", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Faust's settings have no log format: the worker reads it here (QuietWorker).
        self.log_format = log_format
        self._engines: list[tuple[BatchEngine, asyncio.Event]] = []

    def host(self, engine: BatchEngine) -> None:
        """Run an engine in the worker: started with the app's tasks, stopped (committing what
        it processed) before anything else stops. An engine that fails ends the worker."""
        stopped = asyncio.Event()

        async def run() -> None:
            try:
                with crash_on_unexpected(f"engine {engine.stage.name}"):
                    await engine.run()
            finally:
                stopped.set()

        self.task(run)
        self._engines.append((engine, stopped))

    def _new_producer(self) -> ProducerT:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_transport(self) -> TransportT:
        return AutopilotTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        """Stop the engines, then what uses the tables; let the work in hand end, then close
        the tables' stores.

        Faust's own order (faust/app/base.py, App.on_stop) closes the stores first, then sends
        on_before_shutdown (the executor finishes the actions it began), flushes the producer
        (each acknowledged changelog write stores its offset) and stops the agents and timers
        last, so all of them used a store already closed, which Faust's store then opened again.
        """
        for engine, _ in self._engines:
            engine.stop()
        for _, stopped in self._engines:
            await stopped.wait()
        await self.agents.stop()
        # The timers (agents/execute.py reads skipped records and writes its table); they
        # were cancelled only once the stop had ended.
        await self._stop_futures()
        await self.on_before_shutdown.send()
        await self._producer_flush(self.log)
        # Pauses the partitions, stops the fetcher, then stops the tables, closing the stores.
        await self._stop_consumer()
        await self._maybe_close_http_client()


@dataclass(frozen=True)
class Autopilot:
    """A configured Faust app with Autopilot's topics and state table."""

    app: AutopilotApp
    settings: Settings
    signals: faust.TopicT
    signals_dlq: faust.TopicT
    control: faust.TopicT
    lanes: dict[Priority, faust.TopicT]
    commands_retry: faust.TopicT
    commands_dlq: faust.TopicT
    approvals: faust.TopicT
    ledger: faust.TopicT
    executions: faust.types.TableT[str, bytes]
    # Every ledger entry this worker writes goes through it (agents/emit.py).
    chain: LedgerChain


def broker_credentials(security: KafkaSecurity) -> dict[str, Any]:
    """Faust's settings for the same security as every other client (its aiokafka transport
    hands them to each consumer and producer it makes); none for PLAINTEXT."""
    context = security.ssl_context()
    if security.sasl:
        assert security.password is not None  # KafkaSecurity checks it
        return {
            "broker_credentials": faust.SASLCredentials(
                username=security.username,
                password=security.password.get_secret_value(),
                mechanism=security.mechanism,
                # With a context the protocol is SASL_SSL, without one SASL_PLAINTEXT.
                ssl_context=context,
            )
        }
    if context is not None:
        return {"broker_credentials": faust.SSLCredentials(context)}
    return {}


def create_app(settings: Settings, bootstrap: str) -> Autopilot:
    """Build the app for one broker; agents are attached by app.worker."""
    app = AutopilotApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in bootstrap.split(",")],
        **broker_credentials(settings.kafka_security()),
        store="rocksdb://",
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        # Autopilot creates its own topics (app/kafka_admin.py); Faust creates its changelog.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # Fast group join (shared/FAUST-NOTES.md): worker start to ready in seconds, not 30 s.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        # Measured: a short linger and large batches are what helps Faust's producer.
        producer_linger=0.005,
        producer_max_batch_size=1024 * 1024,
        producer_max_request_size=8 * 1024 * 1024,
        # The execute agents hold records unacked until their commands ran: waiting for every
        # held record to be acked before a rebalance (Faust's default) can wait for the whole
        # backoff of a deferred command. Not waiting is safe: unacked records are not
        # committed, and their next owner gets them again.
        stream_wait_empty=False,
        web_enabled=settings.web_enabled,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=settings.web_canonical_url
        or f"http://{settings.web_host}:{settings.web_port}",
        web_in_thread=False,
        # Faust's /router and /table routes would show raw table values; nothing of ours uses
        # them (reads are forwarded by engine/owners.py), so they are not served at all.
        web_router_enabled=False,
        web_tables_enabled=False,
        Worker=QuietWorker,
        Table=ClosingTable,
        log_format=settings.log_format,
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(
            settings.topic(name),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
            internal=False,
        )

    executions = app.Table(
        EXECUTIONS_TABLE,
        key_type=str,
        value_type=bytes,
        partitions=settings.partitions,
        options={"block_cache_size": settings.rocksdb_block_cache_bytes},
    )
    chain = LedgerChain(
        lambda: app.producer,
        bootstrap,
        settings.topic(catalog.LEDGER),
        settings.partitions,
        settings.ledger_chain_key(),
        settings.kafka_security(),
    )

    # Faust types signal receivers as sync callables without keyword arguments; async works.
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def _revoked(app: faust.App, revoked: set[Any], **_: Any) -> None:
        chain.forget(tp.partition for tp in revoked)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def _assigned(app: faust.App, assigned: set[Any], **_: Any) -> None:
        chain.forget(tp.partition for tp in assigned)

    return Autopilot(
        app=app,
        settings=settings,
        signals=raw_topic(catalog.SIGNALS),
        signals_dlq=raw_topic(catalog.SIGNALS_DLQ),
        control=raw_topic(catalog.CONTROL),
        lanes={Priority(lane): raw_topic(catalog.lane_topic(lane)) for lane in catalog.LANES},
        commands_retry=raw_topic(catalog.COMMANDS_RETRY),
        commands_dlq=raw_topic(catalog.COMMANDS_DLQ),
        approvals=raw_topic(catalog.APPROVALS),
        ledger=raw_topic(catalog.LEDGER),
        executions=executions,
        chain=chain,
    )
