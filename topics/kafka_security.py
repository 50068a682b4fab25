"""How every Kafka client of Autopilot authenticates and encrypts: one frozen value, built from
the settings at the edge (app/settings.py) and handed to each place that makes a client.

It lives beside the topics' contracts, below every package that makes a client (the engine,
the projections, the agents, the CLI), and holds file paths rather than an `ssl.SSLContext`:
a replay hands it to processes of its own, and a context cannot be pickled. The context is
made here with the standard library, as `aiokafka.helpers.create_ssl_context` makes it
(`topics` does not import aiokafka).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import SecretStr

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[SaslMechanism, ...] = get_args(SaslMechanism)


@dataclass(frozen=True)
class KafkaSecurity:
    """The security protocol, SASL credentials and TLS files of a Kafka client."""

    protocol: SecurityProtocol = "PLAINTEXT"
    mechanism: SaslMechanism | None = None
    username: str | None = None
    # SecretStr: the value's repr, and so any log of it, shows asterisks.
    password: SecretStr | None = None
    # None: the system's trusted certificate authorities.
    ca_file: Path | None = None
    # A client certificate (and its key) for brokers that ask for one (mutual TLS).
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if self.sasl and (self.mechanism is None or not self.username or self.password is None):
            raise ValueError(f"{self.protocol} needs a SASL mechanism, username and password")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("a client key needs its client certificate")

    @property
    def sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def tls(self) -> bool:
        """Whether connections are encrypted with TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client TLS context that verifies the broker (hostname included); None without TLS.
        Raises OSError or ssl.SSLError for a file that cannot be loaded."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file is not None:
            # A callback, not None: OpenSSL would ask for an encrypted key's passphrase on the
            # terminal, and a worker has none. Returning nothing makes such a key fail to load.
            context.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and AIOKafkaAdminClient."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.tls:
            options["ssl_context"] = self.ssl_context()
        if self.sasl:
            assert self.password is not None  # __post_init__
            options["sasl_mechanism"] = self.mechanism
            options["sasl_plain_username"] = self.username
            options["sasl_plain_password"] = self.password.get_secret_value()
        return options


PLAINTEXT = KafkaSecurity()


def _no_passphrase() -> bytes:
    return b""
