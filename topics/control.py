"""The `control` topic: each shard's input besides its signals.

- The operator's switches, sent to every shard, applied in shard order. A switch is sent once
  per partition, so each shard's owner applies it between two records of its own stream and
  records an `operator.*` entry on that shard's ledger: the ledger then says, shard by shard,
  which decisions came before the switch and which after.
- Step outcomes: how a playbook's command ended, written by the executor that ran it, so the
  shard's stage moves the playbook's run on in its own transaction (core/playbooks.py).
- Ticks: one per schedule period per shard, written by the shard's owner (agents/ticker.py),
  or by an operator's `POST /run-once`. The shard acts on a period's first tick only, so a
  tick written twice (a new owner after a failover) acts once (core/schedules.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from topics.commands import Target
from topics.signals import EventId, WorkspaceId

OperatorName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")]


class Switch(StrEnum):
    """What the operator asked for."""

    PAUSE = "pause"
    RESUME = "resume"
    DRY_RUN_ON = "dry_run_on"
    DRY_RUN_OFF = "dry_run_off"


class OperatorSwitch(BaseModel):
    """One operator request, as sent to each shard."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    request_id: EventId
    switch: Switch
    by: OperatorName | None = None
    reason: str | None = Field(default=None, max_length=256)
    requested_at: AwareDatetime


def switched(mode: dict[str, Any], switch: Switch) -> dict[str, Any]:
    """The shard's mode after a switch."""
    if switch is Switch.PAUSE:
        return {**mode, "paused": True}
    if switch is Switch.RESUME:
        return {**mode, "paused": False}
    return {**mode, "dry_run": switch is Switch.DRY_RUN_ON}


class Tick(BaseModel):
    """One period of a schedule, for one shard: its moment is the period's start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    tick_id: EventId
    schedule: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    shard: int = Field(ge=0)
    due_at: AwareDatetime
    # An operator's run (`POST /run-once`), acted on besides the schedule's own periods.
    requested_by: OperatorName | None = None


# The most items one step's outcome may hand to a fan-out.
MAX_STEP_ITEMS = 100


class StepOutcome(BaseModel):
    """How one command of a playbook's run ended (at most once per command, but a copy may be
    written again after a crash: the run takes the first)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    run_id: EventId
    command_id: EventId
    workspace_id: WorkspaceId
    # The ledger kind that ended it (action.succeeded, action.dead_lettered, ...).
    ended: str = Field(max_length=64)
    succeeded: bool
    # What a listing step found (e.g. offline integrations), for a fan-out step after it.
    items: tuple[Target, ...] = Field(default=(), max_length=MAX_STEP_ITEMS)
    at: AwareDatetime


_TARGET = TypeAdapter(Target)


def found_items(detail: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The items a listing handler's detail names under "found" (ids only, at most
    MAX_STEP_ITEMS; anything else is left out)."""
    found = (detail or {}).get("found")
    if not isinstance(found, list):
        return ()
    items = []
    for item in found[:MAX_STEP_ITEMS]:
        try:
            items.append(_TARGET.validate_python(item))
        except ValidationError:
            continue
    return tuple(items)


CONTROL_RECORD: TypeAdapter[OperatorSwitch | Tick | StepOutcome] = TypeAdapter(
    OperatorSwitch | Tick | StepOutcome
)
