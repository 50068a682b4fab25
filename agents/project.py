"""The projector agent: the worker keeps the read models up to date as the ledger grows.

It runs projections/projector.py, the code `autopilot replay` runs, in a task of its own. Its
database is AUTOPILOT_PROJECTIONS_URL, else a SQLite file under the worker's data directory.
A database or broker failure is logged and retried from the stored position; it never stops
the worker's decisions or actions.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from agents.faust_app import Autopilot
from projections.database import Database
from projections.projector import Projector
from projections.schema import refuse_as_of
from projections.store import Projection
from topics.errors import AutopilotError

logger = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


def attach(autopilot: Autopilot, bootstrap: str) -> None:
    """Run the projector for as long as the worker runs."""
    settings = autopilot.settings
    topic = autopilot.ledger.get_topic_name()

    def open_projection() -> Projection:
        database = Database.open(settings.projections_database())
        try:
            projection = Projection(database, topic, settings.metrics_interval_seconds)
            refuse_as_of(database)
        except BaseException:
            database.close()
            raise
        return projection

    @autopilot.app.task  # type: ignore[untyped-decorator]  # Faust's decorator is untyped
    async def project() -> None:
        while True:
            projection = None
            try:
                projection = await asyncio.to_thread(open_projection)
                logger.info("projecting the ledger", extra={"database": projection.database.where})
                await Projector(
                    projection,
                    bootstrap,
                    batch_records=settings.projector_batch_records,
                    security=settings.kafka_security(),
                ).run(follow=True)
            except (AutopilotError, KafkaError) as exc:
                logger.error(
                    "projector failed; retrying from its stored position",
                    extra={"reason": str(exc), "retry_in": RETRY_SECONDS},
                )
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                if projection is not None:
                    projection.database.close()
