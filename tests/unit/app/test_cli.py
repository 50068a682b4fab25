"""The `autopilot` command as an operator meets it: help that starts nothing, a version, exit
codes, and a clear word when no broker is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[3]


def autopilot(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version_names_the_package_version() -> None:
    """Given the installed package, `autopilot --version` prints its version and exits 0."""
    from importlib import metadata

    result = autopilot("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"autopilot, version {metadata.version('autopilot')}"


@pytest.mark.parametrize("command", [[], ["worker"], ["topics"], ["replay"], ["dlq", "replay"]])
def test_help_loads_no_faust_and_no_broker(command: list[str]) -> None:
    """When any command is asked for --help, then it prints its help without loading Faust
    or aiokafka's consumer (so no worker and no broker can start)."""
    probe = (
        "import sys\n"
        "from app.cli import cli\n"
        "try:\n"
        f"    cli.main({[*command, '--help']!r}, prog_name='autopilot')\n"
        "except SystemExit as exit:\n"
        "    print('exit', exit.code)\n"
        "print('faust loaded' if 'faust' in sys.modules else 'no faust')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "Usage: autopilot" in result.stdout
    assert result.stdout.splitlines()[-2:] == ["exit 0", "no faust"]


def test_an_unknown_command_is_a_usage_error_naming_the_commands() -> None:
    result = autopilot("frobnicate")

    assert result.returncode == 2
    assert (
        "unknown command 'frobnicate'; the commands are: dlq, ledger, parked, policy, projector, "
        "replay, report, schemas, topics, worker" in result.stderr
    )


@pytest.mark.parametrize("command", ["worker", "topics"])
def test_without_a_broker_the_command_names_the_setting_and_make_demo(command: str) -> None:
    """Given no KAFKA_BOOTSTRAP_SERVERS, then the worker starts no broker of its own: it stops
    with exit code 2 and says what to set, or to run `make demo`."""
    result = autopilot(command)

    assert result.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert "make demo" in result.stderr
