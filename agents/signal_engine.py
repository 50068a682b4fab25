"""The signal stage on the engine, as the worker runs it: built from the settings, and read by
the HTTP views and the executor.

The stage's consumer group is the engine's own (`{app id}.signals`), not Faust's: which worker
owns a shard's signals is said by the engine's assignment, which also tells every worker the
address of each shard's owner (engine/owners.py), so a request for another's workspace is
forwarded there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.rules import Policy
from core.windows import WorkspaceState
from engine.batch_engine import BatchEngine
from engine.owners import AdvertisedRangeAssignor
from engine.signal_stage import SignalStage, SignalTopics
from topics.catalog import stage_changelog
from topics.shards import Shards

if TYPE_CHECKING:
    # Built at the edge (app/settings.py); the agents only read it.
    from app.settings import Settings


class SignalEngine:
    """The worker's signal stage and the engine running it."""

    def __init__(self, settings: Settings, bootstrap: str, policy: Policy, address: str) -> None:
        self.stage = SignalStage(
            SignalTopics.named(settings.topic, stage_changelog(settings.app_id, SignalStage.name)),
            settings.partitions,
            policy,
            settings.window_config(),
            ledger_key=settings.ledger_chain_key(),
            max_future_seconds=settings.signal_max_future_seconds,
            bootstrap=bootstrap,
            security=settings.kafka_security(),
        )
        self.address = address
        self._owners = AdvertisedRangeAssignor(address)
        self.engine = BatchEngine(
            bootstrap,
            settings.app_id,
            self.stage,
            settings.data_dir,
            max_records=settings.engine_max_records,
            commit_records=settings.engine_commit_records,
            commit_interval=settings.engine_commit_interval_seconds,
            assignor=self._owners,
            security=settings.kafka_security(),
        )
        self._shards = Shards(settings.partitions)

    def owner(self, workspace_id: str) -> str | None:
        """The address of the worker owning the workspace's shard (None: being assigned)."""
        return self._owners.owner(self._shards.owner(workspace_id))

    def state(self, workspace_id: str) -> WorkspaceState | None:
        """The workspace's committed state, when this worker owns its shard (else None)."""
        store = self.engine.store(self._shards.owner(workspace_id))
        return None if store is None else self.stage.workspace_state(store, workspace_id)

    def modes(self) -> dict[int, dict[str, Any]]:
        """The operator mode of each shard this worker owns."""
        modes = {}
        for partition in self.engine.owned:
            store = self.engine.store(partition)
            if store is not None:
                modes[partition] = self.stage.mode(store)
        return modes
