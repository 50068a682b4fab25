"""How a worker's log lines read: plain text with the `extra` fields in brackets, or one JSON
object per line for a log collector (AUTOPILOT_LOG_FORMAT=json).

A JSON line holds the fields a call passed in `extra` as they are, so a collector can filter on
partition or workspace_id without parsing the message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from agents.log_extras import extra_fields, show_extras


class JsonLinesFormatter(logging.Formatter):
    """A record as one JSON object: timestamp (ISO 8601, UTC), level, logger, message, the
    `extra` fields, and the traceback as `exc_info` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's JSON object on one line (a traceback's newlines are escaped)."""
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        extras = extra_fields(record)
        try:
            # str() for what orjson cannot encode: a SecretStr gives "**********", a path its text.
            return _encode(line, extras)
        except orjson.JSONEncodeError:
            # Still unencodable (an int over 64 bits, a str() that fails): the extras as text.
            return _encode(line, {key: _text(value) for key, value in extras.items()})


def _encode(line: dict[str, Any], extras: dict[str, Any]) -> str:
    # The fields every line has come first; an extra of the same name does not hide them.
    fields = {**line, **{key: value for key, value in extras.items() if key not in line}}
    return orjson.dumps(fields, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _text(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a log line must not fail on a field's __str__
        return f"<unprintable {type(value).__name__}>"


def format_logs(logger: logging.Logger, log_format: str) -> None:
    """Give the logger's handlers (the root's, as a worker set them up) the chosen format:
    "json" for JSON lines, anything else for plain lines with the extras in brackets."""
    if log_format == "json":
        for handler in logger.handlers:
            handler.setFormatter(JsonLinesFormatter())
    else:
        show_extras(logger)
