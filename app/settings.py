"""The one frozen Settings object, built once at the edge; nothing else reads the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.rules import Policy, load_policy
from app.errors import ConfigurationError
from tables.windows import MAX_GRACE_SECONDS, WindowConfig

MIN_TOKEN_CHARS = 16


class Settings(BaseSettings):
    """Worker, demo and test configuration; every field can be set as AUTOPILOT_<NAME>."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOPILOT_", frozen=True, extra="ignore", populate_by_name=True
    )

    # Broker choice (app/broker.py): this if set, else testcontainers, else the local broker.
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        # The name every Kafka tool uses, without the prefix: one name, so errors name it too.
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers"),
    )
    app_id: str = Field(default="autopilot", pattern=r"^[a-z][a-z0-9_.-]{0,63}$")
    topic_prefix: str = Field(default="", pattern=r"^[a-z0-9_.-]{0,64}$")
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=5)
    data_dir: Path = Path("data")
    cache_dir: Path = Path.home() / ".cache" / "autopilot"
    log_level: str = Field(default="info", pattern=r"^(debug|info|warn|error|crit)$")

    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535)
    # How other workers reach this one (they forward GET /workspaces/{id} to the owner);
    # default http://<web_host>:<web_port>. Set it when web_host is 0.0.0.0 or behind NAT.
    web_canonical_url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")

    # Tokens for the worker's HTTP endpoints; an endpoint whose token is unset answers 503.
    ingest_token: SecretStr | None = None
    control_token: SecretStr | None = None

    # Event-time windows (tables/windows.py): 1-minute and 5-minute buckets, late grace.
    window_grace_seconds: int = Field(default=60, ge=0, le=MAX_GRACE_SECONDS)
    # Signals dated further than this past their record's timestamp are refused (clock skew).
    signal_max_future_seconds: int = Field(default=300, ge=0, le=86_400)

    # The policy (agents/rules.py): a TOML rule set; unset means the seed policy shipped with
    # Autopilot. Its limits (budget, platform cap) are part of it, so they change its version.
    policy_file: Path | None = None
    # A lower lane waits at most this long per command while a higher lane has a backlog on the
    # same shard, so a busy critical lane slows the others without starving them.
    lane_max_wait_seconds: float = Field(default=2.0, ge=0, le=60)

    # Write-behind of workspace state (tables/write_behind.py): why it exists is in the README.
    state_flush_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    state_flush_max_dirty: int = Field(default=5_000, ge=1)
    state_cache_max_workspaces: int = Field(default=100_000, ge=1)
    rocksdb_block_cache_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)

    @field_validator("ingest_token", "control_token", mode="before")
    @classmethod
    def _token(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return None  # unset: the endpoint answers 503 and says which variable to set
        if isinstance(value, str) and len(value) < MIN_TOKEN_CHARS:
            raise ValueError(f"a token needs at least {MIN_TOKEN_CHARS} characters")
        return value

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

    def window_config(self) -> WindowConfig:
        """The event-time window every part (worker, demo, bench, replay) must agree on."""
        return WindowConfig(self.window_grace_seconds)

    def policy(self) -> Policy:
        """The policy workers decide with (the seed policy unless policy_file is set)."""
        return load_policy(self.policy_file)

    def topic(self, name: str) -> str:
        """The full name of one of Autopilot's topics, with this deployment's prefix."""
        return f"{self.topic_prefix}{name}"


def load_settings() -> Settings:
    """Build the Settings from the environment, failing loudly with what to fix."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable(str(err['loc'][0]) if err['loc'] else '')}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"invalid configuration, fix the environment: {problems}") from exc


def _variable(location: str) -> str:
    """The environment variable to fix: an aliased field's error is located at the alias used."""
    if location in Settings.model_fields:
        return f"AUTOPILOT_{location.upper()}"
    return location
