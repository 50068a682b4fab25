"""Settings: read once from AUTOPILOT_* variables, failing loudly and naming what to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Settings, load_settings
from core.windows import WindowConfig
from topics.errors import AutopilotError, ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment with no Autopilot or Kafka variables."""
    for name in list(os.environ):
        if name.upper().startswith("AUTOPILOT_") or name.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def test_defaults_when_nothing_is_set() -> None:
    """Given no variables, then the documented defaults apply."""
    settings = load_settings()

    assert settings.kafka_bootstrap_servers is None
    assert settings.app_id == "autopilot"
    assert settings.topic_prefix == ""
    assert settings.partitions == 8
    assert settings.replication_factor == 1
    assert settings.data_dir == Path("data")
    assert settings.log_level == "info"
    assert (settings.web_enabled, settings.web_host, settings.web_port) == (
        True,
        "127.0.0.1",
        6066,
    )
    assert settings.window_grace_seconds == 60
    assert settings.window_config() == WindowConfig(grace_seconds=60)
    assert settings.signal_max_future_seconds == 300
    assert (settings.ingest_token, settings.control_token) == (None, None)


def test_autopilot_variables_set_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given AUTOPILOT_ variables, then each sets its field, parsed to its type."""
    monkeypatch.setenv("AUTOPILOT_PARTITIONS", "24")
    monkeypatch.setenv("AUTOPILOT_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("AUTOPILOT_WEB_ENABLED", "false")
    monkeypatch.setenv("AUTOPILOT_WINDOW_GRACE_SECONDS", "0")
    monkeypatch.setenv("AUTOPILOT_DATA_DIR", "/var/lib/autopilot")

    settings = load_settings()

    assert settings.partitions == 24
    assert settings.topic_prefix == "staging."
    assert settings.web_enabled is False
    assert settings.window_grace_seconds == 0
    assert settings.data_dir == Path("/var/lib/autopilot")
    assert settings.topic("ledger") == "staging.ledger"


def test_the_bootstrap_servers_come_from_the_variable_every_kafka_tool_uses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given KAFKA_BOOTSTRAP_SERVERS (no prefix), then it sets the brokers; the prefixed
    spelling is not a second name for it."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9093")
    monkeypatch.setenv("AUTOPILOT_KAFKA_BOOTSTRAP_SERVERS", "other:1")

    assert load_settings().kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9093"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("localhost:9092", "localhost:9092"),
        ("  localhost:9092  ", "localhost:9092"),
        ("[::1]:9092", "[::1]:9092"),
        ("a:1, b:2", "a:1, b:2"),
        ("", None),
        ("   ", None),
    ],
)
def test_valid_bootstrap_lists_are_accepted(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    """Given a host:port list (or blank, meaning: choose a broker), then it is accepted."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    assert load_settings().kafka_bootstrap_servers == expected


@pytest.mark.parametrize(
    "value",
    ["localhost", ":9092", "localhost:", "localhost:port", "a:1,,b:2", "a:1,b", "http//x"],
)
def test_a_bad_bootstrap_list_names_the_variable_to_fix(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Given a value that is not a host:port list, then loading fails with a
    ConfigurationError naming the variable and the expected form."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    message = str(raised.value)
    assert message.startswith("invalid configuration, fix the environment: ")
    assert "KAFKA_BOOTSTRAP_SERVERS: " in message
    assert "expected host:port[,host:port...]" in message
    assert isinstance(raised.value, AutopilotError)
    assert isinstance(raised.value.__cause__, ValidationError)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTOPILOT_PARTITIONS", "0"),
        ("AUTOPILOT_PARTITIONS", "many"),
        ("AUTOPILOT_REPLICATION_FACTOR", "6"),
        ("AUTOPILOT_APP_ID", "Autopilot!"),
        ("AUTOPILOT_TOPIC_PREFIX", "Prod/"),
        ("AUTOPILOT_LOG_LEVEL", "verbose"),
        ("AUTOPILOT_WEB_PORT", "70000"),
        ("AUTOPILOT_WINDOW_GRACE_SECONDS", "-1"),
        ("AUTOPILOT_WINDOW_GRACE_SECONDS", "601"),
        ("AUTOPILOT_SIGNAL_MAX_FUTURE_SECONDS", "-1"),
        ("AUTOPILOT_SIGNAL_MAX_FUTURE_SECONDS", "86401"),
        ("AUTOPILOT_INGEST_TOKEN", "short"),
        ("AUTOPILOT_CONTROL_TOKEN", "fifteen-chars-x"),
        ("AUTOPILOT_ENGINE_COMMIT_INTERVAL_SECONDS", "0"),
        ("AUTOPILOT_ROCKSDB_BLOCK_CACHE_BYTES", "1024"),
    ],
)
def test_a_bad_value_names_its_autopilot_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Given one out-of-range or malformed variable, then the error names exactly it."""
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert f"{variable}: " in str(raised.value)
    assert str(raised.value).count("AUTOPILOT_") == 1


def test_every_bad_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given two bad variables, then one error names both, so one fix round is enough."""
    monkeypatch.setenv("AUTOPILOT_PARTITIONS", "0")
    monkeypatch.setenv("AUTOPILOT_LOG_LEVEL", "loud")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "AUTOPILOT_PARTITIONS: " in str(raised.value)
    assert "AUTOPILOT_LOG_LEVEL: " in str(raised.value)


def test_unknown_autopilot_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given an AUTOPILOT_ variable no field uses, then loading still succeeds."""
    monkeypatch.setenv("AUTOPILOT_SOMETHING_ELSE", "x")

    assert load_settings().partitions == 8


def test_settings_are_frozen() -> None:
    """Given loaded settings, then they cannot be changed afterwards."""
    settings = load_settings()

    with pytest.raises(ValidationError):
        settings.partitions = 3  # type: ignore[misc]
    assert settings.partitions == 8


def test_settings_can_be_built_in_code_by_field_name() -> None:
    """Given field names in code (tests, the demo), then they are accepted."""
    settings = Settings(kafka_bootstrap_servers="k:9092", partitions=3)

    assert (settings.kafka_bootstrap_servers, settings.partitions) == ("k:9092", 3)


@pytest.mark.parametrize("value", ["kafka:99999", "kafka:0"])
def test_a_port_out_of_range_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Given a bootstrap port outside 1..65535, then loading fails naming the variable."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", value)

    with pytest.raises(ConfigurationError, match="KAFKA_BOOTSTRAP_SERVERS"):
        load_settings()


def test_following_the_error_message_fixes_the_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a bad KAFKA_BOOTSTRAP_SERVERS, when the operator sets the variable the error
    names to a valid value, then the settings load."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    [named] = [word.rstrip(":") for word in str(raised.value).split() if "BOOTSTRAP" in word]

    monkeypatch.setenv(named, "kafka:9092")

    assert load_settings().kafka_bootstrap_servers == "kafka:9092"


@pytest.mark.parametrize("grace", ["0", "600"])
def test_the_grace_period_is_the_window_config(monkeypatch: pytest.MonkeyPatch, grace: str) -> None:
    """Given a grace period at either end of 0..600 s, then the window config every part
    shares carries it."""
    monkeypatch.setenv("AUTOPILOT_WINDOW_GRACE_SECONDS", grace)

    assert load_settings().window_config() == WindowConfig(grace_seconds=int(grace))


def test_the_future_limit_for_signals_can_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given AUTOPILOT_SIGNAL_MAX_FUTURE_SECONDS, then it sets how far ahead a signal may be."""
    monkeypatch.setenv("AUTOPILOT_SIGNAL_MAX_FUTURE_SECONDS", "0")

    assert load_settings().signal_max_future_seconds == 0


def test_tokens_are_secrets_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given both endpoint tokens, then each is kept as given but never appears when the
    settings are printed or logged."""
    ingest, control = "ingest-0123456789abcdef", "control-0123456789abcdef"
    monkeypatch.setenv("AUTOPILOT_INGEST_TOKEN", ingest)
    monkeypatch.setenv("AUTOPILOT_CONTROL_TOKEN", control)

    settings = load_settings()

    assert settings.ingest_token is not None and settings.control_token is not None
    assert settings.ingest_token.get_secret_value() == ingest
    assert settings.control_token.get_secret_value() == control
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert ingest not in shown
    assert control not in shown


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_token_leaves_its_endpoint_disabled(
    monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    """Given a blank token variable, then the token is unset (its endpoint answers 503),
    never an empty token that an empty bearer header would match."""
    monkeypatch.setenv("AUTOPILOT_INGEST_TOKEN", blank)

    assert load_settings().ingest_token is None


def test_a_short_token_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a token shorter than 16 characters, then loading fails naming the variable,
    and the error does not repeat the token."""
    monkeypatch.setenv("AUTOPILOT_CONTROL_TOKEN", "hunter2-secret")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "AUTOPILOT_CONTROL_TOKEN: " in str(raised.value)
    assert "16 characters" in str(raised.value)
    assert "hunter2-secret" not in str(raised.value)


def test_a_token_of_16_characters_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a token of exactly 16 characters, then it is accepted as the token."""
    monkeypatch.setenv("AUTOPILOT_INGEST_TOKEN", "0123456789abcdef")

    token = load_settings().ingest_token

    assert token is not None
    assert token.get_secret_value() == "0123456789abcdef"
