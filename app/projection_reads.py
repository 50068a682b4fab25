"""Reads of the projections database from the worker's event loop: the console, the platform
reads and the command gauges of /metrics (the projector writes it; this only reads)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from projections.database import Database, sqlite_path
from projections.report import ProjectionsMissingError, require_projections

T = TypeVar("T")


class ProjectionReads:
    """One read connection to the projections database, used from a thread at a time (the
    queries block; the event loop must not)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._database: Database | None = None
        self._lock = threading.Lock()

    async def read(self, query: Callable[[Database], T]) -> T:
        return await asyncio.to_thread(self._read, query)

    def _read(self, query: Callable[[Database], T]) -> T:
        with self._lock:
            if self._database is None:
                self._database = self._open()
            require_projections(self._database)
            return query(self._database)

    def _open(self) -> Database:
        # Reading must not create the SQLite file: a worker without a projector leaves none.
        if not self._url.startswith(("postgresql://", "postgres://")):
            path = Path(sqlite_path(self._url))
            if not path.exists():
                raise ProjectionsMissingError(
                    f"the projections database {path} does not exist: no projector has "
                    "written it yet"
                )
        return Database.open(self._url)

    def close(self) -> None:
        with self._lock:
            if self._database is not None:
                self._database.close()
                self._database = None
