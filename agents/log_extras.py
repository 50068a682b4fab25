"""Log lines that show the fields a call passed in `extra`, which Faust's log format leaves out.

Without it, "records skipped by the consumer, fetching them again" says nothing of which
partition or offsets; every `extra=` in Autopilot names ids, positions and reasons, never a
secret or a payload.
"""

from __future__ import annotations

import logging
from typing import Any

# What every LogRecord has: anything else on a record came in through `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
}
_DONE = "_autopilot_extras"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a call passed in `extra` (Autopilot's own markers start with `_`)."""
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class ExtrasFilter(logging.Filter):
    """Appends ` key=value` for each extra field to the record's message, once per record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always passes the record on, with its extras written into the message."""
        if getattr(record, _DONE, False):
            return True
        extras = [
            f"{key}={value!r}" if isinstance(value, str) and " " in value else f"{key}={value}"
            for key, value in extra_fields(record).items()
        ]
        setattr(record, _DONE, True)
        if extras:
            record.msg = f"{record.getMessage()} [{' '.join(extras)}]"
            record.args = ()
        return True


def show_extras(logger: logging.Logger) -> None:
    """Add the filter to each of the logger's handlers (the root's, as a worker set them up)."""
    for handler in logger.handlers:
        handler.addFilter(ExtrasFilter())
