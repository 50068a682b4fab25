"""The one frozen Settings object, built once at the edge; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from actions.reconciler import ExecutorConfig
from core.backoff import RetryPolicy
from core.breaker import BreakerConfig
from core.rules import Policy, load_policy
from core.windows import MAX_GRACE_SECONDS, WindowConfig
from topics.errors import ConfigurationError
from topics.kafka_security import (
    SASL_MECHANISMS,
    KafkaSecurity,
    SaslMechanism,
    SecurityProtocol,
)

MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    """Worker, demo and test configuration; every field can be set as AUTOPILOT_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOPILOT_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        # A ValidationError's text would quote the input, secrets included.
        hide_input_in_errors=True,
    )

    # The brokers; the product starts none of its own (the demo, tests and bench do: tools/).
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        # The name every Kafka tool uses, without the prefix: one name, so errors name it too.
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    # Managed Kafka (docs/operations.md): every client the worker and the CLI make uses these.
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # PEM files; without a CA file the system's certificate authorities are trusted.
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    app_id: str = Field(default="autopilot", pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    topic_prefix: str = Field(default="", pattern=r"^[a-z0-9_.-]{0,64}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=5)
    data_dir: Path = Path("data")
    cache_dir: Path = Path.home() / ".cache" / "autopilot"
    log_level: str = Field(default="info", pattern=r"^(debug|info|warn|error|crit)$")
    # JSON lines (one object per line, `extra` fields included) for a log collector.
    log_format: Literal["plain", "json"] = "plain"

    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # How other workers reach this one (they forward GET /workspaces/{id} to the owner);
    # default http://<web_host>:<web_port>. Set it when web_host is 0.0.0.0 or behind NAT.
    web_canonical_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")

    # Tokens for the worker's HTTP endpoints; an endpoint whose token is unset answers 503.
    ingest_token: SecretStr | None = None
    control_token: SecretStr | None = None
    # GET /metrics is open unless this is set (Prometheus then sends it as a bearer token).
    metrics_token: SecretStr | None = None
    # The commit GET /version names; unset: read from the checkout's .git, if there is one.
    git_revision: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")

    # Event-time windows (core/windows.py): 1-minute and 5-minute buckets, late grace.
    window_grace_seconds: int = Field(default=60, ge=0, le=MAX_GRACE_SECONDS)
    # Signals dated further than this past their record's timestamp are refused (clock skew).
    signal_max_future_seconds: int = Field(default=300, ge=0, le=86_400)

    # The policy (core/rules.py): a TOML rule set; unset means the seed policy shipped with
    # Autopilot. Its limits (budget, platform cap) are part of it, so they change its version.
    policy_file: Path | None = None
    # A lower lane waits at most this long per command while a higher lane has a backlog on the
    # same shard, so a busy critical lane slows the others without starving them.
    lane_max_wait_seconds: float = Field(default=2.0, ge=0, le=60)

    # Executors (agents/executor.py). One action per workspace at a time: a lease per workspace
    # outlives a rebalance, so the shard's next owner does not start the action again before
    # this long has passed or the outcome is on the ledger.
    lease_ttl_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # Retryable failures: exponential backoff with jitter and a cap, then commands.dlq.
    retry_max_attempts: int = Field(default=5, ge=1, le=100)
    retry_base_seconds: float = Field(default=1.0, gt=0, le=3_600)
    retry_cap_seconds: float = Field(default=300.0, gt=0, le=86_400)
    # A provider's breaker opens after this many consecutive failures, half-opens after the
    # cool-down; while open, its commands are deferred, not failed.
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1_000)
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0, le=3_600)
    # Actions carried out at once per worker (each waits on its HTTP calls).
    executor_concurrency: int = Field(default=32, ge=1, le=1_024)
    # How long a finished command's id is remembered, so a copy of it does nothing.
    idempotency_horizon_hours: float = Field(default=168.0, gt=0, le=24 * 365)
    # Actions tagged with one of these (actions/) wait for an operator's approval.
    # A comma-separated list in the environment (NoDecode: not JSON).
    approval_tags: Annotated[frozenset[str], NoDecode] = frozenset(
        {"finance", "identity", "policy"}
    )

    # The platform's control API and webhook signing (actions/).
    control_api_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/\s]$")
    control_api_token: SecretStr | None = None
    # Master key: each workspace's webhook secret is HMAC-SHA256(key, workspace_id).
    webhook_signing_key: SecretStr | None = None
    http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # An OpenAI-compatible endpoint writes follow-up text; with no key the template is used.
    llm_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    llm_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AUTOPILOT_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_model: str = Field(default="gpt-4o-mini", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")
    llm_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    # Projections (projections/): the read models' database, a SQLite file under data_dir
    # unless this points at PostgreSQL (postgresql://user:password@host/db).
    projections_url: str | None = Field(default=None, pattern=r"^(sqlite|postgresql|postgres):")
    # The worker keeps the read models up to date as the ledger grows (off: `autopilot
    # projector` or `autopilot replay` does it instead).
    projector_enabled: bool = True
    # Ledger records folded per transaction (the projection's position moves once per batch).
    projector_batch_records: int = Field(default=5_000, ge=1, le=100_000)
    # Run metrics are counted per interval of this many seconds of recorded time.
    metrics_interval_seconds: int = Field(default=60, ge=1, le=86_400)
    # With a key, each entry's chain hash is an HMAC (only a holder of the key can extend a
    # workspace's chain); without one it is a plain SHA-256 (detects edits, not forgeries).
    ledger_key: SecretStr | None = None

    # The signal stage's engine (docs/engine.md): records read per batch, and when a shard
    # under load commits (a shard that caught up commits as soon as its batch is decided).
    engine_max_records: int = Field(default=10_000, ge=1, le=1_000_000)
    engine_commit_records: int = Field(default=10_000, ge=1)
    engine_commit_interval_seconds: float = Field(default=0.1, gt=0, le=60)
    # The executions table's RocksDB block cache.
    rocksdb_block_cache_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)

    @field_validator("ingest_token", "control_token", "metrics_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None  # unset: 503 naming the variable to set (/metrics: open)
        if isinstance(value, str) and len(value) < MIN_TOKEN_CHARS:
            raise ValueError(f"a token needs at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("approval_tags", mode="before")
    @classmethod
    def _tags(cls, value: object) -> object:
        # From the environment: "finance,identity" (empty: no action waits for approval).
        if isinstance(value, str):
            return frozenset(tag.strip() for tag in value.split(",") if tag.strip())
        return value

    @field_validator(
        "control_api_url",
        "llm_base_url",
        "webhook_signing_key",
        "projections_url",
        "ledger_key",
        mode="before",
    )
    @classmethod
    def _unset_when_blank(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value.strip()

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        if value.strip() == "":
            return "PLAINTEXT" if info.field_name == "kafka_security_protocol" else None
        return value.strip().upper()

    @field_validator(
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
        mode="before",
    )
    @classmethod
    def _kafka_unset_when_blank(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip() == "" else value

    @field_validator("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file at {value}")
        return value

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Settings:
        """SASL has its three settings, TLS files come with a TLS protocol, and they load."""
        protocol = self.kafka_security_protocol
        sasl = {
            "AUTOPILOT_KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "AUTOPILOT_KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "AUTOPILOT_KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        files = {
            "AUTOPILOT_KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file,
            "AUTOPILOT_KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
            "AUTOPILOT_KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file,
        }
        security = f"AUTOPILOT_KAFKA_SECURITY_PROTOCOL is {protocol}"
        if protocol.startswith("SASL_"):
            if missing := [name for name, value in sasl.items() if value is None]:
                raise ValueError(
                    f"{security}, which needs {', '.join(missing)} "
                    f"(mechanisms: {', '.join(SASL_MECHANISMS)})"
                )
        elif given := [name for name, value in sasl.items() if value is not None]:
            raise ValueError(
                f"{', '.join(given)} set but {security}: set it to SASL_SSL or SASL_PLAINTEXT"
            )
        if protocol not in ("SSL", "SASL_SSL"):
            if given := [name for name, value in files.items() if value is not None]:
                raise ValueError(
                    f"{', '.join(given)} set but {security}: set it to SSL or SASL_SSL"
                )
            return self
        if self.kafka_ssl_key_file is not None and self.kafka_ssl_cert_file is None:
            raise ValueError("AUTOPILOT_KAFKA_SSL_KEY_FILE needs AUTOPILOT_KAFKA_SSL_CERT_FILE")
        # Loaded once here, so a file that is not PEM stops the worker at start, named.
        try:
            KafkaSecurity("SSL", ca_file=self.kafka_ssl_ca_file).ssl_context()
        except OSError as exc:
            raise ValueError(
                f"AUTOPILOT_KAFKA_SSL_CA_FILE {self.kafka_ssl_ca_file} does not load as PEM "
                f"certificates ({exc})"
            ) from None
        try:
            self.kafka_security().ssl_context()
        except OSError as exc:
            raise ValueError(
                f"AUTOPILOT_KAFKA_SSL_CERT_FILE {self.kafka_ssl_cert_file} and "
                f"AUTOPILOT_KAFKA_SSL_KEY_FILE {self.kafka_ssl_key_file} do not load as a PEM "
                f"certificate and its unencrypted key ({exc})"
            ) from None
        return self

    def executor_config(self) -> ExecutorConfig:
        """What action handlers need to reach the outside (secrets unwrapped only here)."""
        return ExecutorConfig(
            control_api_url=self.control_api_url,
            control_api_token=_reveal(self.control_api_token),
            webhook_signing_key=_reveal(self.webhook_signing_key),
            http_timeout_seconds=self.http_timeout_seconds,
            llm_base_url=self.llm_base_url,
            llm_api_key=_reveal(self.llm_api_key),
            llm_model=self.llm_model,
            llm_timeout_seconds=self.llm_timeout_seconds,
        )

    def retry_policy(self) -> RetryPolicy:
        """Backoff for retryable action failures."""
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_seconds=min(self.retry_base_seconds, self.retry_cap_seconds),
            cap_seconds=self.retry_cap_seconds,
        )

    def breaker_config(self) -> BreakerConfig:
        """When providers' circuit breakers open and for how long."""
        return BreakerConfig(self.breaker_failure_threshold, self.breaker_cooldown_seconds)

    def window_config(self) -> WindowConfig:
        """The event-time window every part (worker, demo, bench, replay) must agree on."""
        return WindowConfig(self.window_grace_seconds)

    def policy(self) -> Policy:
        """The policy workers decide with (the seed policy unless policy_file is set)."""
        return load_policy(self.policy_file)

    def projections_database(self) -> str:
        """The read models' database URL: the setting, else a SQLite file under data_dir."""
        from projections.database import default_url

        return self.projections_url or default_url(self.data_dir)

    def ledger_chain_key(self) -> bytes | None:
        """The key of the ledger's chain hashes (None: plain SHA-256)."""
        secret = _reveal(self.ledger_key)
        return None if secret is None else secret.encode()

    def topic(self, name: str) -> str:
        """The full name of one of Autopilot's topics, with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"

    def kafka_security(self) -> KafkaSecurity:
        """How every Kafka client authenticates and encrypts (topics/kafka_security.py)."""
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            ca_file=self.kafka_ssl_ca_file,
            cert_file=self.kafka_ssl_cert_file,
            key_file=self.kafka_ssl_key_file,
        )


def load_settings() -> Settings:
    """Build the Settings from the environment, failing loudly with what to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        # A check across settings has no location: its message names the settings itself.
        problems = "; ".join(
            f"{_variable(str(err['loc'][0]))}: {err['msg']}" if err["loc"] else err["msg"]
            for err in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid configuration, fix the environment: {problems}") from exc


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _variable(location: str) -> str:
    """The environment variable to fix: an aliased field's error is located at the alias used."""
    if location in Settings.model_fields:
        return f"AUTOPILOT_{location.upper()}"
    return location
