"""A consumer of the worker's own, outside Faust's group: started on first use, kept for the
worker's life (starting one per read cost about a second), closed when the worker stops."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer

from topics.kafka_security import PLAINTEXT, KafkaSecurity


class OwnConsumer:
    """One lazily started AIOKafkaConsumer without a group or auto-commit."""

    def __init__(
        self, bootstrap: str, *, security: KafkaSecurity = PLAINTEXT, **options: Any
    ) -> None:
        self._bootstrap = bootstrap
        self._security = security
        self._options = options
        self._consumer: AIOKafkaConsumer | None = None

    async def get(self) -> AIOKafkaConsumer:
        """The consumer, started if it was not yet."""
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                enable_auto_commit=False,
                **self._options,
                **self._security.client_options(),
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def stop(self) -> None:
        """Close the consumer, if one was started."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
