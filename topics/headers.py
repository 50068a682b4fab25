"""Names of the Kafka record headers Autopilot writes and reads, in one place, and reading one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# On every dead letter (signals.dlq, commands.dlq): why, and where the refused record was read.
REASON = "autopilot.reason"
SOURCE_TOPIC = "autopilot.source.topic"
SOURCE_PARTITION = "autopilot.source.partition"
SOURCE_OFFSET = "autopilot.source.offset"
# The refused item's index when it was one signal of a batch record.
SOURCE_INDEX = "autopilot.source.index"

# On a dead-lettered command: the error that ended it, when, after how many attempts.
ERROR_CLASS = "autopilot.error-class"
DEAD_LETTERED_AT = "autopilot.dead-lettered-at"
ATTEMPTS = "autopilot.attempts"

# What a dead letter's value is, when it is not the refused record's value as it was.
# The record had no value at all (a Kafka NULL, such as a tombstone): the dead letter's is empty.
VALUE_NULL = "autopilot.value-null"
# The value was too large to store whole: the dead letter keeps its first bytes; these say so
# and give the whole value's size and SHA-256, to match it against the producer's copy.
VALUE_CUT = "autopilot.value-cut"
VALUE_BYTES = "autopilot.value-bytes"
VALUE_SHA256 = "autopilot.value-sha256"
# The broker refused the dead letter itself for good (the error's name): this one holds no value.
REFUSED = "autopilot.dead-letter-refused"

# On a signals record re-routed to the shard that owns its workspaces: the record it came from,
# and which piece of it this is when its signals needed several records.
REROUTED_FROM = "autopilot.rerouted-from"
REROUTED_PIECE = "autopilot.rerouted-piece"

# On a command sent again by `autopilot dlq replay`: its action.reissued entry, which the
# executor owning the workspace appends to the workspace's chain before it runs the command.
REISSUE = "autopilot-reissue"


def header_of(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, bytes | None] | None, name: str
) -> bytes | None:
    """The first value of a record header (Faust gives a list of pairs, or a mapping)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return next((value for key, value in pairs if key == name), None)
