"""Faust's clients get the same security as Autopilot's own: its aiokafka transport turns the
credentials built from KafkaSecurity into the same client options."""

from __future__ import annotations

import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from agents.faust_app import broker_credentials
from topics.kafka_security import PLAINTEXT, KafkaSecurity

certifi = pytest.importorskip("certifi")


def faust_options(security: KafkaSecurity) -> dict[str, object]:
    """What Faust's transport passes to each consumer and producer it makes."""
    credentials = broker_credentials(security).get("broker_credentials")
    options = dict(credentials_to_aiokafka_auth(credentials))
    options["tls"] = options.pop("ssl_context", None) is not None
    return options


@pytest.mark.parametrize(
    "security",
    [
        PLAINTEXT,
        KafkaSecurity("SSL", ca_file=certifi.where()),
        KafkaSecurity("SASL_PLAINTEXT", "PLAIN", "autopilot", SecretStr("pw-1")),
        KafkaSecurity(
            "SASL_SSL", "SCRAM-SHA-512", "autopilot", SecretStr("pw-2"), ca_file=certifi.where()
        ),
    ],
    ids=lambda security: security.protocol,
)
def test_faust_clients_get_the_options_of_every_other_client(security: KafkaSecurity) -> None:
    """Given a security, then Faust's clients connect with the options Autopilot's clients use."""
    options = security.client_options()
    options["tls"] = options.pop("ssl_context", None) is not None

    assert faust_options(security) == options
