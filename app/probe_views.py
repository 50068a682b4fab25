"""What a supervisor, a load balancer and Prometheus ask a worker, without a control token.

- `GET /health`: 200 while the process serves HTTP at all (a liveness probe).
- `GET /ready`: 200 once the worker has joined its groups, restored the state of every
  partition assigned to it and is consuming; 503 with the reason otherwise (while it starts,
  rebalances, restores, or the broker is unreachable).
- `GET /version`: the package, policy and schema versions and the git revision when known.
- `GET /metrics`: Prometheus' text format (app/metrics.py); behind `AUTOPILOT_METRICS_TOKEN`
  when that is set.
None of them shows a workspace, a setting or a secret.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from agents.faust_app import Autopilot
from agents.signal_engine import SignalEngine
from app.metrics import WorkerMetrics
from topics.approvals import ApprovalGiven
from topics.commands import Command
from topics.control import OperatorSwitch
from topics.ledger import LedgerEntry
from topics.signals import SIGNAL_MODELS

# The checkout the code runs from, when it is one (an installed package has no .git).
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def not_ready(autopilot: Autopilot, signals: SignalEngine) -> str | None:
    """Why the worker is not ready, or None when it is."""
    reason = signals.engine.not_ready()
    if reason is not None:
        return reason
    app = autopilot.app
    if app.rebalancing:
        return "the executors' consumer group is rebalancing"
    # Faust's TableManager has its recovery; its declared type does not say so.
    if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return "the executors' tables are being restored"
    return None


def attach(
    autopilot: Autopilot, signals: SignalEngine, metrics: WorkerMetrics, policy_version: str
) -> None:
    """Register the probes and the metrics endpoint on the app's web server."""
    app = autopilot.app
    about = versions(policy_version, autopilot.settings.git_revision)

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive"})

    @app.page("/ready")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            reason = not_ready(autopilot, signals)
            if reason is not None:
                return self.json({"ready": False, "reason": reason}, status=503)
            return self.json({"ready": True, "partitions": signals.engine.owned})

    @app.page("/version")
    class VersionView(View):
        async def get(self, request: Request) -> Response:
            return self.json(about)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            # Its charset parameter is refused by aiohttp as a content_type argument.
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    del HealthView, ReadyView, VersionView, MetricsView  # registered by the decorators


def versions(policy_version: str, revision: str | None) -> dict[str, Any]:
    """What `GET /version` answers (computed once: none of it changes while the worker runs)."""
    return {
        "autopilot": package_version(),
        "policy_version": policy_version,
        "schema_versions": {
            "signals": {kind.value: _schema(model) for kind, model in SIGNAL_MODELS.items()},
            "command": _schema(Command),
            "ledger_entry": _schema(LedgerEntry),
            "operator_switch": _schema(OperatorSwitch),
            "approval": _schema(ApprovalGiven),
        },
        "git_revision": revision or git_revision(_SOURCE_ROOT),
    }


def package_version() -> str | None:
    """The installed autopilot package's version (None when run from an uninstalled tree)."""
    try:
        return version("autopilot")
    except PackageNotFoundError:
        return None


def _schema(model: type[BaseModel]) -> int:
    version_: int = model.model_fields["schema_version"].default
    return version_


def git_revision(root: Path) -> str | None:
    """The commit checked out at `root` (read from .git, no git needed), or None."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split(" ", 1)[0]
    except OSError:
        return None
    return None
