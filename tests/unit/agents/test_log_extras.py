"""Log lines show the fields passed in `extra`, formatted once however many handlers see them."""

from __future__ import annotations

import io
import logging

from agents.log_extras import show_extras


def test_a_log_line_shows_its_extra_fields_after_the_message() -> None:
    """Given a logger whose two handlers show extras, when a line with extras and %-args is
    logged, then both handlers write the message once, followed by the fields."""
    logger = logging.getLogger("test_log_extras")
    logger.propagate = False
    streams = [io.StringIO(), io.StringIO()]
    for stream in streams:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(handler)
    show_extras(logger)
    try:
        logger.warning(
            "skipped %d records",
            3,
            extra={"topic": "commands.high", "partition": 2, "reason": "stale generation"},
        )
        logger.warning("plain")
    finally:
        logger.handlers.clear()

    expected = (
        "WARNING skipped 3 records [topic=commands.high partition=2 reason='stale generation']\n"
        "WARNING plain\n"
    )
    assert [stream.getvalue() for stream in streams] == [expected, expected]
