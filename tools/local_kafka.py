"""A real Apache Kafka broker without Docker: jars from Maven Central, one KRaft node in a JVM.

`assemble` fetches Kafka's runtime classpath once into a cache directory; `LocalKafka` runs a
single combined broker+controller on free 127.0.0.1 ports with a throwaway data directory, which
it keeps across halt() and start() (a broker restart, for the tests of riding one out).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from topics.errors import BrokerUnavailableError

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
# Pinned so a cold assembly resolves the same plugin everywhere (Maven 3.8 would pick 2.8).
_DEPENDENCY_PLUGIN_VERSION = "3.8.1"
_MARKER = ".assembled"
_MAVEN_TIMEOUT_S = 900.0
_FORMAT_TIMEOUT_S = 120.0
_STOP_TIMEOUT_S = 20.0
_LOG_TAIL_CHARS = 4_000
_HEAP = "768m"

_WHAT_TO_DO = (
    "install Java 17+ and Maven 3.8+ (e.g. `apt-get install openjdk-17-jdk-headless maven`), "
    "or set KAFKA_BOOTSTRAP_SERVERS to an existing broker"
)

# Broker tuning shared by every way Autopilot runs Kafka: LocalKafka, the test container
# (tools/broker.py) and docker-compose.yml, which mirrors it by hand (a test checks the copy).
SHARED_BROKER_SETTINGS: Mapping[str, str] = MappingProxyType(
    {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        # Fewer than the default 50 so group coordination is fast on a small machine.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "8",
        "group.initial.rebalance.delay.ms": "0",
        # Autopilot creates its topics explicitly; a typo must fail, not create a topic.
        "auto.create.topics.enable": "false",
    }
)

# Console goes to the JVM's stdout, which start() sends to broker.log: one file holds both
# Kafka's warnings and any JVM crash, so an error message can quote a single tail.
_LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def server_properties(port: int, controller_port: int, log_dir: Path) -> dict[str, str]:
    """The complete server.properties of a single-node broker on 127.0.0.1."""
    return {
        **SHARED_BROKER_SETTINGS,
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
    }


_SCRAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class SaslSslListener:
    """A second client listener, as managed Kafka offers: TLS with a certificate made when
    the broker is first started, and SCRAM-SHA-512 users created with its storage."""

    # name -> password; letters, digits, `_.-` only (the storage tool's argument syntax).
    users: Mapping[str, str]

    def __post_init__(self) -> None:
        for name, password in self.users.items():
            if not (_SCRAM_NAME.match(name) and _SCRAM_NAME.match(password)):
                raise ValueError("SCRAM user names and passwords: letters, digits and _.- only")


def sasl_ssl_properties(keystore: Path, keystore_password: str) -> dict[str, str]:
    """What a SASL_SSL listener on 127.0.0.1 adds to server.properties (brokers and
    controller keep talking PLAINTEXT to each other)."""
    prefix = "listener.name.sasl_ssl."
    return {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        f"{prefix}scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        f"{prefix}ssl.keystore.type": "PKCS12",
        f"{prefix}ssl.keystore.location": str(keystore),
        f"{prefix}ssl.keystore.password": keystore_password,
        f"{prefix}ssl.key.password": keystore_password,
    }


def new_cluster_id() -> str:
    """A KRaft cluster id: a random uuid as 22 characters of url-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def assemble(cache_dir: Path, version: str = KAFKA_VERSION) -> Path:
    """Fetch Kafka's runtime jars from Maven Central once; return the directory holding them."""
    home = cache_dir / f"kafka-{version}"
    libs = home / "libs"
    if (home / _MARKER).exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / f"kafka-{version}.lock"):
        if (home / _MARKER).exists():  # another process finished while this one waited
            return libs
        started = time.monotonic()
        _require_tool("mvn")
        _require_tool("java")
        shutil.rmtree(libs, ignore_errors=True)  # leftovers of an interrupted assembly
        (home / "pom.xml").write_text(_pom(version))
        _run_tool(
            [
                "mvn",
                "-B",
                "-q",
                "-Dstyle.color=never",  # its errors end up in an exception message
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
                "-DincludeScope=runtime",
            ],
            cwd=home,
            timeout=_MAVEN_TIMEOUT_S,
            doing="fetching Kafka from Maven Central",
            advice=f"check access to Maven Central and retry; otherwise {_WHAT_TO_DO}",
        )
        if not (libs / f"kafka_2.13-{version}.jar").is_file():
            raise BrokerUnavailableError(
                f"Maven finished but {libs} holds no kafka_2.13-{version}.jar; "
                f"delete {home} and retry, or set KAFKA_BOOTSTRAP_SERVERS to an existing broker"
            )
        marker = home / f"{_MARKER}.tmp"
        marker.write_text(f"{version}\n")
        marker.replace(home / _MARKER)  # atomic: a reader sees either no marker or a whole one
        logger.info(
            "kafka assembled",
            extra={
                "libs": str(libs),
                "jars": len(list(libs.glob("*.jar"))),
                "seconds": round(time.monotonic() - started, 1),
            },
        )
    return libs


def broker_answers(bootstrap_servers: str, timeout: float = 5.0) -> bool:
    """Whether a broker answers a metadata request listing a live broker; blocks the caller."""

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=int(timeout * 1000)
        )
        try:
            async with asyncio.timeout(timeout):
                await admin.start()
                cluster = await admin.describe_cluster()
            return bool(cluster["brokers"])
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await admin.close()

    # Its own thread and loop, so this works whether or not the caller runs an event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(probe())).result()


class LocalKafka:
    """A single-node KRaft Kafka (broker and controller in one JVM) on free 127.0.0.1 ports."""

    def __init__(
        self,
        libs: Path,
        *,
        startup_timeout: float = 60.0,
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self._libs = libs
        self._startup_timeout = startup_timeout
        self._sasl_ssl = sasl_ssl
        self._process: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._port: int | None = None
        self._sasl_ssl_port: int | None = None

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to, `127.0.0.1:PORT`."""
        if self._port is None:
            raise BrokerUnavailableError("LocalKafka is not running; call start() first")
        return f"127.0.0.1:{self._port}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        """The SASL_SSL listener's address, `127.0.0.1:PORT`, when started with one."""
        if self._sasl_ssl_port is None:
            raise BrokerUnavailableError("LocalKafka runs no SASL_SSL listener")
        return f"127.0.0.1:{self._sasl_ssl_port}"

    @property
    def ca_file(self) -> Path:
        """The PEM certificate the SASL_SSL listener presents, for clients to trust."""
        if self._data_dir is None or self._sasl_ssl is None:
            raise BrokerUnavailableError("LocalKafka runs no SASL_SSL listener")
        return self._data_dir / "broker.pem"

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self._process else None

    @property
    def data_dir(self) -> Path | None:
        """The throwaway directory holding config, log and partitions until stop()."""
        return self._data_dir

    def is_running(self) -> bool:
        """Whether the JVM is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Launch the JVM and wait until it answers metadata requests: on fresh storage, or
        after halt() on the same data directory and ports."""
        if self._process is not None:
            raise BrokerUnavailableError("LocalKafka is already running; stop() it first")
        java = _require_tool("java")
        started = time.monotonic()
        fresh = self._data_dir is None
        if fresh:
            self._data_dir = Path(tempfile.mkdtemp(prefix="autopilot-kafka-"))
            # Registered before the JVM exists so no failure path can leave one behind.
            atexit.register(self.stop)
        data_dir = self._data_dir
        assert data_dir is not None
        config = data_dir / "server.properties"
        log_config = data_dir / "log4j2.properties"
        jvm = [java, f"-Dlog4j2.configurationFile={log_config}", "-cp", f"{self._libs}/*"]
        try:
            if fresh:
                self._port, controller_port, sasl_ssl_port = _free_ports(3)
                properties = server_properties(self._port, controller_port, data_dir / "kraft")
                scram: list[str] = []
                if self._sasl_ssl is not None:
                    self._sasl_ssl_port = sasl_ssl_port
                    properties.update(self._add_sasl_ssl(properties, data_dir))
                    scram = [
                        f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
                        for name, password in self._sasl_ssl.users.items()
                    ]
                config.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
                log_config.write_text(_LOG4J2_PROPERTIES)
                # No --standalone: with controller.quorum.voters set, StorageTool refuses it.
                # The `=` form keeps a cluster id that starts with `-` from being read as an
                # option.
                cluster_id, config_arg = f"--cluster-id={new_cluster_id()}", f"--config={config}"
                _run_tool(
                    [*jvm, "kafka.tools.StorageTool", "format", cluster_id, config_arg, *scram],
                    cwd=data_dir,
                    timeout=_FORMAT_TIMEOUT_S,
                    doing="formatting Kafka storage",
                    advice=f"if the jars are damaged, delete {self._libs.parent}; "
                    f"else {_WHAT_TO_DO}",
                )
            with (data_dir / "broker.log").open("ab") as log:
                self._process = subprocess.Popen(
                    [*jvm, f"-Xmx{_HEAP}", "kafka.Kafka", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=data_dir,
                    # Own process group: a terminal's Ctrl-C reaches only the caller, which
                    # then stops the broker in order; stop() signals the whole group.
                    start_new_session=True,
                )
            self._wait_until_ready(started + self._startup_timeout)
        except BaseException:
            self.stop()
            raise
        logger.info(
            "local kafka started",
            extra={
                "bootstrap_servers": self.bootstrap_servers,
                "pid": self.pid,
                "fresh": fresh,
                "seconds": round(time.monotonic() - started, 1),
            },
        )
        return self

    def _add_sasl_ssl(self, properties: Mapping[str, str], data_dir: Path) -> dict[str, str]:
        """The SASL_SSL listener's settings, with a self-signed certificate for 127.0.0.1
        made by the JDK's keytool (its PEM is `ca_file`)."""
        keytool = _require_tool("keytool")
        keystore, password = data_dir / "broker.p12", secrets.token_hex(16)
        store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", password]
        generate = ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048"]
        generate += ["-validity", "7", "-dname", "CN=localhost", "-keypass", password]
        generate += ["-ext", "SAN=ip:127.0.0.1,dns:localhost", "-noprompt"]
        for command in (
            generate,
            ["-exportcert", "-rfc", "-alias", "broker", "-file", str(data_dir / "broker.pem")],
        ):
            _run_tool(
                [keytool, *command, *store],
                cwd=data_dir,
                timeout=_FORMAT_TIMEOUT_S,
                doing="making the SASL_SSL listener's certificate",
                advice=_WHAT_TO_DO,
            )
        port = self._sasl_ssl_port
        return {
            "listeners": f"{properties['listeners']},SASL_SSL://127.0.0.1:{port}",
            "advertised.listeners": (
                f"{properties['advertised.listeners']},SASL_SSL://127.0.0.1:{port}"
            ),
            "listener.security.protocol.map": (
                f"{properties['listener.security.protocol.map']},SASL_SSL:SASL_SSL"
            ),
            **sasl_ssl_properties(keystore, password),
        }

    def halt(self) -> None:
        """Stop the JVM (SIGTERM, SIGKILL after 20 s) but keep its data and ports, as a rolling
        restart does: start() brings the same broker back at the same address."""
        process, self._process = self._process, None
        if process is not None:
            _terminate_group(process)

    def stop(self) -> None:
        """Stop the JVM and delete its data; safe to repeat."""
        self.halt()
        self._port = self._sasl_ssl_port = None
        data_dir, self._data_dir = self._data_dir, None
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_ready(self, deadline: float) -> None:
        assert self._process is not None and self._port is not None
        while True:
            code = self._process.poll()
            if code is not None:
                raise BrokerUnavailableError(
                    f"local Kafka exited with code {code} while starting; "
                    f"its log ends with:\n{self.log_tail()}\n{_WHAT_TO_DO}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailableError(
                    f"local Kafka did not answer within {self._startup_timeout:.0f} s; "
                    f"its log ends with:\n{self.log_tail()}\n"
                    "raise the startup timeout on a slow machine, or set KAFKA_BOOTSTRAP_SERVERS"
                )
            # The TCP check first keeps aiokafka from logging connection errors while the JVM boots.
            if _port_open(self._port) and broker_answers(
                self.bootstrap_servers, timeout=min(5.0, remaining)
            ):
                return
            time.sleep(0.2)

    def log_tail(self) -> str:
        """The end of broker.log (Kafka's warnings and the JVM's own output)."""
        if self._data_dir is None:
            return ""
        try:
            text = (self._data_dir / "broker.log").read_text(errors="replace")
        except OSError:
            return "(no broker.log)"
        return text[-_LOG_TAIL_CHARS:]


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerUnavailableError(f"`{name}` not found on PATH: {_WHAT_TO_DO}")
    return path


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # flock, not a lock directory: the kernel releases it when a holder dies mid-assembly.
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pom(version: str) -> str:
    # The log4j2 binding is not among Kafka's own dependencies; without it the broker is mute.
    return f"""\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>autopilot</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>{_DEPENDENCY_PLUGIN_VERSION}</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""


def _run_tool(command: list[str], *, cwd: Path, timeout: float, doing: str, advice: str) -> None:
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BrokerUnavailableError(f"{doing} took over {timeout:.0f} s; {advice}") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-_LOG_TAIL_CHARS:]
        raise BrokerUnavailableError(
            f"{doing} failed (exit {result.returncode}):\n{output}\n{advice}"
        )


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so the ports differ from each other.
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _terminate_group(process: subprocess.Popen[bytes]) -> None:
    # The JVM leads its own group (start_new_session), so its pid is the group id.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("local kafka ignored SIGTERM, killing it", extra={"pid": process.pid})
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main(argv: list[str] | None = None) -> int:
    """`python -m tools.local_kafka assemble|run [--cache-dir D]`."""
    default_cache = Path(
        os.environ.get("AUTOPILOT_CACHE_DIR") or Path.home() / ".cache" / "autopilot"
    )
    parser = argparse.ArgumentParser(
        prog="python -m tools.local_kafka",
        description=f"Apache Kafka {KAFKA_VERSION} from Maven Central, without Docker.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("assemble", "fetch the jars once and print where they are"),
        ("run", "start a single-node broker and keep it running until Ctrl-C or SIGTERM"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--cache-dir", type=Path, default=default_cache)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        libs = assemble(args.cache_dir)
        if args.command == "assemble":
            print(libs)
            return 0
        return _run_until_signalled(libs)
    except BrokerUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run_until_signalled(libs: Path) -> int:
    stop_requested = threading.Event()
    # Installed before start() so a signal during startup still ends in a clean stop().
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.set())
    with LocalKafka(libs) as kafka:
        print(f"KAFKA_BOOTSTRAP_SERVERS={kafka.bootstrap_servers}", flush=True)
        while not stop_requested.wait(timeout=1.0):
            if not kafka.is_running():
                print(f"error: local Kafka exited:\n{kafka.log_tail()}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
