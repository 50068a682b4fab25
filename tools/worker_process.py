"""A worker run as a child process, as the demo, the benchmark and the tests run it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from app.settings import Settings

STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess:
    """`python -m app worker` in its own process group, logging to a file; stops cleanly."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.env.setdefault("AUTOPILOT_WEB_PORT", str(free_port()))
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_deployment(
        cls,
        settings: Settings,
        bootstrap: str,
        workdir: Path,
        *,
        log_level: str = "warn",
        name: str = "worker",
    ) -> WorkerProcess:
        """A worker of this deployment (topic prefix, group, shard count); data in workdir."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "AUTOPILOT_TOPIC_PREFIX": settings.topic_prefix,
            "AUTOPILOT_APP_ID": settings.app_id,
            "AUTOPILOT_PARTITIONS": str(settings.partitions),
            "AUTOPILOT_DATA_DIR": str(workdir / "data"),
            "AUTOPILOT_LOG_LEVEL": log_level,
        }
        return cls(env, workdir / f"{name}.log")

    def start(self) -> WorkerProcess:
        """Start the worker; returns at once (it consumes from the earliest offset)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def web_url(self) -> str:
        """The base URL of the worker's HTTP endpoints."""
        return f"http://127.0.0.1:{self.env['AUTOPILOT_WEB_PORT']}"

    @property
    def alive(self) -> bool:
        """Whether the worker process is still running."""
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process ended; None while it runs or before it started."""
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """SIGKILL the worker's process group, as a crash would."""
        if self.process is not None and self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> int | None:
        """SIGTERM, wait for a graceful stop, then SIGKILL; returns the exit code."""
        if self.process is None:
            return None
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
