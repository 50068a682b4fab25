"""Log lines as JSON objects for a log collector (AUTOPILOT_LOG_FORMAT=json), plain otherwise:
the fields a call passed in `extra` kept as fields, never a secret, never a failed line."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from agents.log_format import JsonLinesFormatter, format_logs

ROOT = Path(__file__).parents[3]
# 2024-05-01T12:00:00.250Z
CREATED = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC).timestamp()


def record(
    msg: str = "records skipped, fetching them again",
    *args: object,
    level: int = logging.WARNING,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    made = logging.LogRecord("agents.refetch", level, "refetch.py", 42, msg, args, exc_info)
    made.created = CREATED
    made.__dict__.update(extra)
    return made


def json_line(made: logging.LogRecord) -> dict[str, Any]:
    text = JsonLinesFormatter().format(made)
    assert "\n" not in text
    parsed: dict[str, Any] = orjson.loads(text)
    return parsed


def test_a_line_holds_time_level_logger_message_and_the_extra_fields() -> None:
    """Given a record with %-args and extras, when it is formatted as JSON, then the object has
    the UTC time, level, logger, the rendered message and each extra, and nothing else."""
    made = record("skipped %d records", 3, topic="commands.high", partition=2, since=None)

    assert json_line(made) == {
        "timestamp": "2024-05-01T12:00:00.250+00:00",
        "level": "WARNING",
        "logger": "agents.refetch",
        "message": "skipped 3 records",
        "topic": "commands.high",
        "partition": 2,
        "since": None,
    }


def test_an_exception_is_one_line_with_its_traceback_as_exc_info() -> None:
    """Given a record logged with an exception, when it is formatted, then it is still one line
    and `exc_info` holds the formatted traceback."""
    try:
        raise ValueError("offset out of range")
    except ValueError:
        made = record("fetch failed", level=logging.ERROR, exc_info=sys.exc_info())

    line = json_line(made)

    assert line["message"] == "fetch failed"
    assert line["exc_info"].startswith("Traceback (most recent call last):\n")
    assert line["exc_info"].endswith("ValueError: offset out of range")


def test_a_secret_extra_is_masked_and_other_objects_are_their_text() -> None:
    """Given extras orjson cannot encode (a SecretStr, a path, a set), when the record is
    formatted, then the secret reads `**********`, the others their str(), and the secret's
    value appears nowhere in the line."""
    made = record(token=SecretStr("s3cret-token-value"), store=Path("data/signals/3"), ids={7})

    text = JsonLinesFormatter().format(made)
    line = orjson.loads(text)

    assert (line["token"], line["store"], line["ids"]) == ("**********", "data/signals/3", "{7}")
    assert "s3cret-token-value" not in text


def test_an_extra_orjson_refuses_outright_becomes_its_text() -> None:
    """Given an integer too large for JSON numbers and an object whose str() fails, when the
    record is formatted, then the line is still written, with both as text."""

    class Opaque:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    made = record(offset=2**70, peer=Opaque(), partition=1)

    line = json_line(made)

    assert (line["offset"], line["peer"], line["partition"]) == (
        str(2**70),
        "<unprintable Opaque>",
        "1",
    )


def test_an_extra_named_like_a_line_field_does_not_replace_it() -> None:
    """Given an extra called `level`, when the record is formatted, then `level` is still the
    record's level."""
    made = record(level=logging.INFO)
    made.__dict__["level"] = "shard"

    assert json_line(made)["level"] == "INFO"


@pytest.fixture
def logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger with one handler writing to a string, as a worker's root logger has."""
    log = logging.getLogger("test_log_format")
    log.propagate = False
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield log, stream
    finally:
        log.handlers.clear()


def test_json_format_writes_one_object_per_line(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    """Given a logger set up for JSON, when two lines are logged, then the handler writes two
    JSON objects, the message without bracketed extras."""
    log, stream = logger
    format_logs(log, "json")

    log.warning("lease settled", extra={"command_id": "c-1", "workspace_id": "ws-9"})
    log.warning("no fields")

    lines = [orjson.loads(text) for text in stream.getvalue().splitlines()]
    assert [
        (line["message"], line.get("command_id"), line.get("workspace_id")) for line in lines
    ] == [
        ("lease settled", "c-1", "ws-9"),
        ("no fields", None, None),
    ]


def test_plain_format_keeps_the_bracketed_extras(
    logger: tuple[logging.Logger, io.StringIO],
) -> None:
    """Given a logger set up for plain lines, when a line with extras is logged, then it reads
    as before: the message, then the fields in brackets."""
    log, stream = logger
    format_logs(log, "plain")

    log.warning("lease settled", extra={"command_id": "c-1"})

    assert stream.getvalue() == "WARNING lease settled [command_id=c-1]\n"


# A worker's logging set up as `autopilot worker` does (from the environment, through Faust's
# worker), without a broker: Faust connects only when the worker starts.
WORKER_PROBE = """
import logging
from pydantic import SecretStr
from agents.faust_app import create_app
from app.settings import load_settings

create_app(load_settings(), "localhost:9").app.Worker(loglevel="info")._setup_logging()
logging.getLogger("agents.probe").warning(
    "records skipped", extra={"partition": 3, "token": SecretStr("s3cret-token-value")}
)
"""


@pytest.mark.parametrize(
    ("log_format", "expected"),
    [
        ("json", "records skipped"),
        ("plain", "records skipped [partition=3 token=**********]"),
    ],
)
def test_a_worker_logs_in_the_format_of_autopilot_log_format(
    tmp_path: Path, log_format: str, expected: str
) -> None:
    """Given AUTOPILOT_LOG_FORMAT, when a worker process sets up its logging and logs a line,
    then the line is a JSON object (json) or the plain line with bracketed extras (plain), and
    the token is masked either way."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AUTOPILOT_")},
        "AUTOPILOT_LOG_FORMAT": log_format,
        "AUTOPILOT_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", WORKER_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    # Faust's worker logs to stderr.
    assert "s3cret-token-value" not in result.stderr
    (written,) = result.stderr.splitlines()
    if log_format == "json":
        line = orjson.loads(written)
        assert datetime.fromisoformat(line.pop("timestamp")).utcoffset() == timedelta(0)
        assert line == {
            "level": "WARNING",
            "logger": "agents.probe",
            "message": expected,
            "partition": 3,
            "token": "**********",
        }
    else:
        # mode's plain format ends each line with a space (where its colour reset goes).
        assert written.rstrip().endswith(f"[WARNING] {expected}")
