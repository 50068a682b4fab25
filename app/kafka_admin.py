"""Creating Autopilot's topics, and its tables' changelogs, on the broker; idempotent, and loud
about a shard-count mismatch."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)

from app.settings import Settings
from topics.catalog import catalog, changelogs
from topics.errors import AutopilotError, BrokerUnavailableError, ConfigurationError
from topics.kafka_security import KafkaSecurity

logger = logging.getLogger(__name__)

LEADER_WAIT_SECONDS = 30.0


async def ensure_topics(settings: Settings, bootstrap: str) -> None:
    """Create the missing topics; fail if an existing one has a different partition count."""
    specs = catalog(settings.topic_prefix, settings.partitions) + changelogs(
        settings.app_id, settings.partitions
    )
    security = settings.kafka_security()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=15_000, **security.client_options()
    )
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise await why_unreachable(bootstrap, security) from exc
    try:
        # Describe only topics that exist: a metadata request for a missing topic can
        # auto-create it with the broker's default partition count.
        names = await admin.list_topics()
        existing = await admin.describe_topics([s.name for s in specs if s.name in names])
        partitions = {t["topic"]: len(t["partitions"]) for t in existing}
        missing = [spec for spec in specs if spec.name not in partitions]
        for spec in specs:
            found = partitions.get(spec.name)
            if found is not None and found != spec.partitions:
                raise ConfigurationError(
                    f"topic {spec.name} has {found} partitions but AUTOPILOT_PARTITIONS is "
                    f"{spec.partitions}: all workspace topics must share one shard count"
                )
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        spec.partitions,
                        settings.replication_factor,
                        topic_configs=spec.config,
                    )
                    for spec in missing
                ]
            )
            # Errors come back per topic, not raised; "already exists" means another worker won.
            # (topic, error_code[, error_message]) per topic, depending on the protocol version.
            failed = [
                f"{error[0]}: {error[2] if len(error) > 2 and error[2] else error[1]}"
                for error in response.topic_errors
                if error[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if failed:
                raise BrokerUnavailableError(f"could not create topics: {'; '.join(failed)}")
            logger.info("topics created", extra={"topics": [spec.name for spec in missing]})
            await _wait_for_leaders(admin, [spec.name for spec in missing])
    finally:
        await admin.close()


async def why_unreachable(bootstrap: str, security: KafkaSecurity) -> AutopilotError:
    """Why no client could start, naming the setting to fix: a client only says it could not
    bootstrap, so each server is connected to once more on its own to learn the reason."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            connection = await create_conn(
                host, int(port), request_timeout_ms=10_000, **security.client_options()
            )
        except SaslAuthenticationFailed:
            # The broker's reason names the mechanism, never the password.
            return ConfigurationError(
                f"Kafka at {server} refused the SASL credentials of user "
                f"{security.username!r} ({security.mechanism}): check "
                "AUTOPILOT_KAFKA_SASL_USERNAME and AUTOPILOT_KAFKA_SASL_PASSWORD"
            )
        except UnsupportedSaslMechanismError as exc:
            return ConfigurationError(
                f"Kafka at {server} does not accept {security.mechanism}: "
                f"check AUTOPILOT_KAFKA_SASL_MECHANISM ({exc})"
            )
        except ssl.SSLCertVerificationError as exc:
            return ConfigurationError(
                f"the certificate of Kafka at {server} is not trusted ({exc.verify_message}): "
                "check AUTOPILOT_KAFKA_SSL_CA_FILE"
            )
        except ssl.SSLError as exc:
            return ConfigurationError(
                f"no TLS connection to Kafka at {server} ({exc.reason}): check that "
                f"AUTOPILOT_KAFKA_SECURITY_PROTOCOL={security.protocol} is what its listener "
                "speaks, and AUTOPILOT_KAFKA_SSL_CERT_FILE if it asks for a client certificate"
            )
        except (OSError, KafkaError, TimeoutError, ValueError):
            continue
        connection.close()
    return BrokerUnavailableError(
        f"cannot reach Kafka at {bootstrap} with AUTOPILOT_KAFKA_SECURITY_PROTOCOL="
        f"{security.protocol}: check KAFKA_BOOTSTRAP_SERVERS, and that its listeners speak "
        "that protocol"
    )


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    """Return once every partition of the new topics has a leader, so first sends succeed."""
    deadline = time.monotonic() + LEADER_WAIT_SECONDS
    while time.monotonic() < deadline:
        described = await admin.describe_topics(names)
        if all(
            t.get("error_code", 0) == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)
    raise BrokerUnavailableError(
        f"topics {names} have no leader after {LEADER_WAIT_SECONDS:.0f} s: check the broker's log"
    )
