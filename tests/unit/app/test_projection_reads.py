"""The worker's reader of the projections, on real SQLite: it never creates the database a
projector has not written, and reads one that holds the read models."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.projection_reads import ProjectionReads
from projections import schema
from projections.database import Database
from projections.platform_view import command_counts
from projections.report import ProjectionsMissingError


async def test_a_database_no_projector_wrote_is_missing_and_stays_so(tmp_path: Path) -> None:
    path = tmp_path / "data" / "projections.sqlite3"
    reads = ProjectionReads(f"sqlite:///{path}")

    with pytest.raises(ProjectionsMissingError, match="does not exist"):
        await reads.read(command_counts)

    assert not path.exists()


async def test_a_projected_database_is_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'projections.sqlite3'}"
    database = Database.open(url)
    schema.create(database, 60)
    database.close()
    reads = ProjectionReads(url)

    try:
        assert await reads.read(command_counts) == {}
    finally:
        reads.close()
