"""`autopilot ledger verify`: walk every chain of the ledger and report where one breaks."""

from __future__ import annotations

import asyncio

import click
import orjson

from app.settings import load_settings
from core.chain import ChainCheck
from projections.ledger_reader import read_records_to_end
from topics.catalog import LEDGER
from topics.errors import ConfigurationError

READ_TIMEOUT_SECONDS = 1_800.0


@click.group("ledger")
def ledger_group() -> None:
    """Check the ledger."""


@ledger_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def verify_command(as_json: bool) -> None:
    """Check every chain of the ledger (one per workspace); exit 1 if one is broken."""
    raise SystemExit(run_ledger_verify(as_json=as_json))


def run_ledger_verify(*, as_json: bool = False) -> int:
    """Check every entry's seal and link; 1 if any chain is broken."""
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        raise ConfigurationError("set KAFKA_BOOTSTRAP_SERVERS to the broker that holds the ledger")
    topic = settings.topic(LEDGER)
    records = asyncio.run(
        read_records_to_end(
            settings.kafka_bootstrap_servers,
            topic,
            timeout=READ_TIMEOUT_SECONDS,
            security=settings.kafka_security(),
        )
    )
    check = ChainCheck(settings.ledger_chain_key())
    for partition in sorted(records):
        for offset, raw in records[partition]:
            check.add(partition, offset, raw)
    broken = sorted(check.broken.values(), key=lambda b: (b.partition, b.offset))
    if as_json:
        print(
            orjson.dumps(
                {
                    "topic": topic,
                    "checked": check.checked,
                    "chains": len(check.heads),
                    "unsealed": check.unsealed,
                    "keyed": settings.ledger_key is not None,
                    "broken": [
                        {
                            "chain": b.chain,
                            "partition": b.partition,
                            "offset": b.offset,
                            "entry_id": b.entry_id,
                            "reason": b.reason,
                        }
                        for b in broken
                    ],
                }
            ).decode()
        )
        return 1 if broken else 0
    seal = "HMAC-SHA256 with AUTOPILOT_LEDGER_KEY" if settings.ledger_key else "SHA-256"
    print(
        f"checked {check.checked} entries of {topic} in {len(check.heads)} chains ({seal}); "
        f"{check.unsealed} written before chaining began"
    )
    for b in broken:
        print(
            f"BROKEN {b.chain}: partition {b.partition} offset {b.offset} "
            f"(entry {b.entry_id}): {b.reason}"
        )
    if broken:
        print(
            f"{len(broken)} chain(s) broken: the ledger was altered, or written by another writer"
        )
        return 1
    print("every chain holds")
    return 0
