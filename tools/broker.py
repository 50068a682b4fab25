"""The one place that decides which Kafka broker Autopilot talks to.

In order: the configured KAFKA_BOOTSTRAP_SERVERS; else a throwaway apache/kafka container when
a Docker engine answers; else a local JVM broker assembled from Maven Central (tools/local_kafka).
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tools.local_kafka import (
    KAFKA_VERSION,
    SHARED_BROKER_SETTINGS,
    LocalKafka,
    assemble,
    broker_answers,
    new_cluster_id,
)
from topics.errors import BrokerUnavailableError

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

logger = logging.getLogger(__name__)

KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
_EXTERNAL_PORT = 9094
_START_SCRIPT = "/autopilot-start.sh"
_LOG_TAIL_CHARS = 4_000

# Inside the container: PLAINTEXT for the broker itself, EXTERNAL is what the host connects to.
_CONTAINER_PROPERTIES: Mapping[str, str] = {
    **SHARED_BROKER_SETTINGS,
    "controller.quorum.voters": "1@localhost:9093",
    "listeners": f"PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093,"
    f"EXTERNAL://0.0.0.0:{_EXTERNAL_PORT}",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:PLAINTEXT",
    "log.dirs": "/var/lib/kafka/data",
}


@contextmanager
def provide_bootstrap(
    configured: str | None, cache_dir: Path, *, startup_timeout: float = 60.0
) -> Iterator[str]:
    """Yield a broker address: the configured one, else a container, else a local JVM broker."""
    if configured:
        logger.info(
            "kafka broker chosen", extra={"source": "configured", "bootstrap_servers": configured}
        )
        yield configured
        return
    if docker_engine_answers():
        with _kafka_container(startup_timeout) as bootstrap:
            logger.info(
                "kafka broker chosen",
                extra={"source": "testcontainers", "bootstrap_servers": bootstrap},
            )
            yield bootstrap
        return
    with LocalKafka(assemble(cache_dir), startup_timeout=startup_timeout) as kafka:
        logger.info(
            "kafka broker chosen",
            extra={"source": "local_kafka", "bootstrap_servers": kafka.bootstrap_servers},
        )
        yield kafka.bootstrap_servers


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers a ping within about two seconds; never raises."""
    try:
        import docker  # test-only dependency, installed with testcontainers
    except ImportError:
        return False
    # Any failure (no socket, no permission, a hung daemon) means "no engine": the caller
    # then runs Kafka in a local JVM instead, which is the point of asking.
    try:
        client = docker.from_env(timeout=2)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def kafka_container_env(properties: Mapping[str, str]) -> dict[str, str]:
    """Broker properties as the apache/kafka image's KAFKA_* environment variables."""
    # The image's rule: `.` -> `_`, `_` -> `__`, `-` -> `___`, upper-cased, KAFKA_ prefix.
    return {
        "KAFKA_" + name.replace("_", "__").replace("-", "___").replace(".", "_").upper(): value
        for name, value in properties.items()
    }


@contextmanager
def _kafka_container(startup_timeout: float) -> Iterator[str]:
    # testcontainers' KafkaContainer is built for Confluent images (its KRaft mode rejects tags
    # below 7.0.0 and its boot script edits /etc/confluent), so apache/kafka runs generically.
    from testcontainers.core.container import DockerContainer  # test-only dependency

    container = DockerContainer(KAFKA_IMAGE)
    for name, value in kafka_container_env(_CONTAINER_PROPERTIES).items():
        container.with_env(name, value)
    container = (
        container.with_env("CLUSTER_ID", new_cluster_id())
        .with_exposed_ports(_EXTERNAL_PORT)
        # The advertised address needs the host port, known only once the container runs:
        # wait for a start script that is copied in after that (as KafkaContainer does).
        .with_command(
            [
                "sh",
                "-c",
                f"while [ ! -f {_START_SCRIPT} ]; do sleep 0.1; done; exec bash {_START_SCRIPT}",
            ]
        )
    )
    try:
        container.start()  # inside the try: a half-created container is removed too
        host = container.get_container_host_ip()
        bootstrap = f"{host}:{container.get_exposed_port(_EXTERNAL_PORT)}"
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS="
            f"PLAINTEXT://localhost:9092,EXTERNAL://{bootstrap}\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.get_wrapped_container().put_archive("/", _tar_of(_START_SCRIPT, script))
        _wait_for_container(container, bootstrap, startup_timeout)
        yield bootstrap
    finally:
        container.stop()


def _wait_for_container(container: DockerContainer, bootstrap: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status not in ("created", "running"):
            raise BrokerUnavailableError(
                f"the Kafka container stopped while starting ({wrapped.status}); its log ends "
                f"with:\n{_container_log_tail(container)}\nset KAFKA_BOOTSTRAP_SERVERS to a "
                "working broker, or stop Docker to use a local JVM broker instead"
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BrokerUnavailableError(
                f"the Kafka container did not answer at {bootstrap} within {timeout:.0f} s; its "
                f"log ends with:\n{_container_log_tail(container)}\nraise the startup timeout "
                "or set KAFKA_BOOTSTRAP_SERVERS to a working broker"
            )
        if broker_answers(bootstrap, timeout=min(5.0, remaining)):
            return
        time.sleep(0.5)


def _container_log_tail(container: DockerContainer) -> str:
    stdout, stderr = container.get_logs()
    return (stdout + stderr).decode(errors="replace")[-_LOG_TAIL_CHARS:]


def _tar_of(path: str, text: str) -> bytes:
    # docker's put_archive takes a tar; plain docker-py works with every testcontainers 4.x.
    content = text.encode()
    info = tarfile.TarInfo(name=path.lstrip("/"))
    info.size = len(content)
    info.mode = 0o644
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
