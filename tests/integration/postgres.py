"""A throwaway PostgreSQL server for the test session, and a fresh database for each test.

The server is Debian's `postgresql` package (`make tools` installs it): initdb into a temporary
directory, trust authentication on loopback only, a free TCP port on 127.0.0.1, the unix socket
inside that directory, stopped and removed afterwards. PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` system user the package creates.

AUTOPILOT_TEST_POSTGRES_URL=postgresql://user:password@host:port/db uses that server instead of
starting one; its user needs CREATEDB, since every test gets a database of its own on it.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

URL_VARIABLE = "AUTOPILOT_TEST_POSTGRES_URL"
INSTALL_HINT = (
    "run `make tools` (it installs Debian's postgresql package), or set "
    f"{URL_VARIABLE} to a PostgreSQL server whose user may CREATE DATABASE"
)
START_HINT = (
    f"the output above says why; fix that, or set {URL_VARIABLE} to a PostgreSQL server "
    "whose user may CREATE DATABASE"
)
DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # created by Debian's postgresql-common
SUPERUSER = "autopilot"
SESSION_DATABASE = "autopilot_test"
_LOG_TAIL_LINES = 30
_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailableError(Exception):
    """No PostgreSQL server for the tests; the message says why and what to install or do."""


@dataclass(frozen=True)
class _Binaries:
    initdb: Path
    pg_ctl: Path


@contextmanager
def postgres_server(*, startup_timeout: float = 30.0) -> Iterator[str]:
    """Yield a server URL: AUTOPILOT_TEST_POSTGRES_URL, else a throwaway local server."""
    configured = os.environ.get(URL_VARIABLE)
    if configured:
        yield configured
        return
    binaries = find_binaries()
    owner = _server_owner()
    root = Path(tempfile.mkdtemp(prefix="autopilot-pg-"))
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        with _running_server(binaries, owner, root, startup_timeout) as url:
            yield url
    finally:
        # A leftover temporary directory is harmless; an error here would hide why it failed.
        shutil.rmtree(root, ignore_errors=True)


def find_binaries() -> _Binaries:
    """initdb and pg_ctl of the newest /usr/lib/postgresql/<version>/bin, else from PATH."""
    versions = [
        bin_dir
        for bin_dir in DEBIAN_BINARIES.glob("*/bin")
        if _executable(bin_dir / "initdb") and _executable(bin_dir / "pg_ctl")
    ]
    if versions:
        newest = max(versions, key=lambda bin_dir: _version_key(bin_dir.parent.name))
        return _Binaries(newest / "initdb", newest / "pg_ctl")
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return _Binaries(Path(initdb), Path(pg_ctl))
    raise PostgresUnavailableError(
        f"no PostgreSQL server binaries (initdb, pg_ctl) under {DEBIAN_BINARIES}/<version>/bin "
        f"or on PATH: {INSTALL_HINT}"
    )


def create_database(server_url: str, name: str) -> str:
    """Create an empty database `name` on the server at `server_url`; its URL."""
    _check_name(name)
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlsplit(server_url)._replace(path=f"/{name}").geturl()


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` from the server, closing any connection still open to it."""
    _check_name(name)
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def _running_server(
    binaries: _Binaries, owner: pwd.struct_passwd | None, root: Path, startup_timeout: float
) -> Iterator[str]:
    data = root / "data"
    server_log = root / "server.log"
    started = time.monotonic()
    _run(
        binaries,
        owner,
        root,
        [
            str(binaries.initdb),
            f"--pgdata={data}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # a throwaway cluster: durability buys nothing
        ],
        "initdb",
        timeout=120.0,
    )
    port = _free_port()
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# tests/integration/postgres.py: loopback only, fast, throwaway\n"
            "listen_addresses = '127.0.0.1'\n"
            f"port = {port}\n"
            f"unix_socket_directories = '{root}'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
        )
    try:
        _run(
            binaries,
            owner,
            root,
            [
                str(binaries.pg_ctl),
                f"--pgdata={data}",
                f"--log={server_log}",
                "--wait",
                f"--timeout={max(1, round(startup_timeout))}",
                "start",
            ],
            "pg_ctl start",
            timeout=startup_timeout + 10.0,
            server_log=server_log,
        )
        admin_url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        _wait_until_accepting(admin_url, startup_timeout, server_log)
        url = create_database(admin_url, SESSION_DATABASE)
        logger.info(
            "postgres started",
            extra={"seconds": round(time.monotonic() - started, 2), "url": url},
        )
        yield url
    finally:
        if (data / "postmaster.pid").exists():
            # Immediate: nothing in a throwaway cluster is worth a clean shutdown.
            _run(
                binaries,
                owner,
                root,
                [str(binaries.pg_ctl), f"--pgdata={data}", "--mode=immediate", "--wait", "stop"],
                "pg_ctl stop",
                timeout=60.0,
                server_log=server_log,
            )


def _server_owner() -> pwd.struct_passwd | None:
    """Who runs initdb and the server: None for the current user, `postgres` when root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, and PostgreSQL refuses to run as root, but there is no "
            f"{SERVER_USER!r} system user to run it as: {INSTALL_HINT}, or run the tests as an "
            "unprivileged user"
        ) from None


def _run(
    binaries: _Binaries,
    owner: pwd.struct_passwd | None,
    root: Path,
    command: Sequence[str],
    step: str,
    *,
    timeout: float,
    server_log: Path | None = None,
) -> None:
    # Output goes to a file, not a pipe: pg_ctl's server would keep a pipe open for ever.
    output = root / f"{step.replace(' ', '-')}.out"
    # PG* variables (PGDATA, PGPORT, ...) of the caller's environment must not steer the server.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    env["LC_ALL"] = "C"
    try:
        with output.open("wb") as out:
            completed = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
                env=env,
                timeout=timeout,
                check=False,
                user=None if owner is None else owner.pw_uid,
                group=None if owner is None else owner.pw_gid,
                extra_groups=None if owner is None else [],
            )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresUnavailableError(
            f"{step} ({binaries.pg_ctl.parent}) failed: {exc}{_tails(output, server_log)}; "
            f"{START_HINT}"
        ) from exc
    if completed.returncode != 0:
        raise PostgresUnavailableError(
            f"{step} ({binaries.pg_ctl.parent}) exited with {completed.returncode}"
            f"{_tails(output, server_log)}; {START_HINT}"
        )


def _wait_until_accepting(url: str, timeout: float, server_log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as connection:
                connection.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresUnavailableError(
                    f"the PostgreSQL server did not accept connections at {url} within "
                    f"{timeout:.0f}s ({exc}){_tails(server_log)}; {START_HINT}"
                ) from exc
            time.sleep(0.1)


def _tails(*paths: Path | None) -> str:
    parts = []
    for path in paths:
        if path is None or not path.exists():
            continue
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if lines:
            tail = "\n".join(lines[-_LOG_TAIL_LINES:])
            parts.append(f"\n--- last lines of {path.name} ---\n{tail}")
    return "".join(parts) + ("\n---" if parts else "")


def _free_port() -> int:
    # The kernel's pick, released for the server; another process taking it in between is
    # possible but rare, and the start then fails with the server log saying so.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_key(name: str) -> tuple[int, ...]:
    parts = name.split(".")
    return tuple(int(part) for part in parts) if all(p.isdigit() for p in parts) else (-1,)


def _check_name(name: str) -> None:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a plain database name: {name!r}")
