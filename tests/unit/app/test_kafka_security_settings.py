"""Managed Kafka settings: AUTOPILOT_KAFKA_* become one KafkaSecurity, checked loudly, naming the
variable to fix, and never showing the password."""

from __future__ import annotations

import os
import pickle
import ssl
from pathlib import Path

import pytest
from pydantic import SecretStr

from app.settings import load_settings
from topics.errors import ConfigurationError
from topics.kafka_security import PLAINTEXT, KafkaSecurity

PASSWORD = "pw-9c1e7f3a55d0b2e8"
certifi = pytest.importorskip("certifi")
CA_FILE = certifi.where()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment with no Autopilot or Kafka variables."""
    for name in list(os.environ):
        if name.upper().startswith("AUTOPILOT_") or name.upper() == "KAFKA_BOOTSTRAP_SERVERS":
            monkeypatch.delenv(name)


def sasl_ssl(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    variables = {
        "AUTOPILOT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AUTOPILOT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "AUTOPILOT_KAFKA_SASL_USERNAME": "autopilot",
        "AUTOPILOT_KAFKA_SASL_PASSWORD": PASSWORD,
        "AUTOPILOT_KAFKA_SSL_CA_FILE": CA_FILE,
        **overrides,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def refusal(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> str:
    sasl_ssl(monkeypatch, **overrides)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    text = f"{caught.value} {caught.value.__cause__}"
    assert PASSWORD not in text
    return str(caught.value)


def test_plaintext_when_nothing_is_set() -> None:
    """Given no Kafka security variables, then clients connect in plain text, as before."""
    security = load_settings().kafka_security()

    assert security == PLAINTEXT
    assert security.client_options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_every_client_the_same_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given SASL_SSL with SCRAM and a CA file, then the aiokafka options carry them, the
    password revealed only there, and TLS verifies the broker's certificate and name."""
    sasl_ssl(monkeypatch, AUTOPILOT_KAFKA_SECURITY_PROTOCOL="sasl_ssl")

    settings = load_settings()
    options = settings.kafka_security().client_options()

    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "autopilot",
        "sasl_plain_password": PASSWORD,
    }
    assert isinstance(context, ssl.SSLContext)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in repr(settings.kafka_security())


def test_the_security_survives_a_trip_to_a_replay_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given SASL_SSL settings, then their KafkaSecurity pickles (a replay spawns processes)."""
    sasl_ssl(monkeypatch)
    security = load_settings().kafka_security()

    assert pickle.loads(pickle.dumps(security)) == security


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        ("AUTOPILOT_KAFKA_SASL_PASSWORD", "AUTOPILOT_KAFKA_SASL_PASSWORD"),
        ("AUTOPILOT_KAFKA_SASL_USERNAME", "AUTOPILOT_KAFKA_SASL_USERNAME"),
        ("AUTOPILOT_KAFKA_SASL_MECHANISM", "AUTOPILOT_KAFKA_SASL_MECHANISM"),
    ],
)
def test_sasl_without_one_of_its_settings_is_refused(
    monkeypatch: pytest.MonkeyPatch, unset: str, named: str
) -> None:
    """Given SASL_SSL with one of mechanism, username, password blank, then the error names it."""
    message = refusal(monkeypatch, **{unset: ""})

    assert f"AUTOPILOT_KAFKA_SECURITY_PROTOCOL is SASL_SSL, which needs {named}" in message


def test_sasl_settings_with_plaintext_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given credentials but PLAINTEXT, then the error says to set the protocol."""
    message = refusal(
        monkeypatch, AUTOPILOT_KAFKA_SECURITY_PROTOCOL="PLAINTEXT", AUTOPILOT_KAFKA_SSL_CA_FILE=""
    )

    assert "but AUTOPILOT_KAFKA_SECURITY_PROTOCOL is PLAINTEXT" in message
    assert "AUTOPILOT_KAFKA_SASL_PASSWORD" in message


def test_an_unknown_protocol_or_mechanism_names_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a protocol or mechanism Kafka does not have, then the error names the variable."""
    assert "AUTOPILOT_KAFKA_SECURITY_PROTOCOL: " in refusal(
        monkeypatch, AUTOPILOT_KAFKA_SECURITY_PROTOCOL="TLS"
    )
    assert "AUTOPILOT_KAFKA_SASL_MECHANISM: " in refusal(
        monkeypatch, AUTOPILOT_KAFKA_SASL_MECHANISM="GSSAPI"
    )


def test_a_missing_file_names_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Given a CA, certificate or key file that does not exist, then the error names it."""
    missing = tmp_path / "nowhere.pem"
    for name in (
        "AUTOPILOT_KAFKA_SSL_CA_FILE",
        "AUTOPILOT_KAFKA_SSL_CERT_FILE",
        "AUTOPILOT_KAFKA_SSL_KEY_FILE",
    ):
        message = refusal(monkeypatch, **{name: str(missing)})
        assert f"{name}: Value error, no file at {missing}" in message


def test_files_that_do_not_load_name_their_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Given a CA file, or a certificate and key, that are not PEM, then the error names them."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")

    assert "AUTOPILOT_KAFKA_SSL_CA_FILE" in refusal(
        monkeypatch, AUTOPILOT_KAFKA_SSL_CA_FILE=str(junk)
    )
    message = refusal(
        monkeypatch, AUTOPILOT_KAFKA_SSL_CERT_FILE=str(junk), AUTOPILOT_KAFKA_SSL_KEY_FILE=str(junk)
    )
    assert "AUTOPILOT_KAFKA_SSL_CERT_FILE" in message
    assert "AUTOPILOT_KAFKA_SSL_KEY_FILE" in message


def test_tls_files_need_a_tls_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a CA file with SASL_PLAINTEXT, then the error says the protocol has no TLS."""
    message = refusal(monkeypatch, AUTOPILOT_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")

    assert (
        "AUTOPILOT_KAFKA_SSL_CA_FILE set but AUTOPILOT_KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT"
        in message
    )


def test_sasl_plaintext_has_no_tls() -> None:
    """Given SASL_PLAINTEXT, then clients authenticate without a TLS context."""
    security = KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "autopilot", SecretStr(PASSWORD))

    assert "ssl_context" not in security.client_options()
    assert security.client_options()["sasl_mechanism"] == "PLAIN"
