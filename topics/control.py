"""The `control` topic: the operator's switches, sent to every shard, applied in shard order.

A switch is sent once per partition, so each shard's owner applies it between two records of
its own stream and records an `operator.*` entry on that shard's ledger: the ledger then says,
shard by shard, which decisions came before the switch and which after.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from topics.signals import EventId

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
