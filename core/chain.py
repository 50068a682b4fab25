"""The ledger's hash chain: each entry sealed and linked to the previous entry of its chain. Pure.

Every chain has one writer, so its entries are sealed in the order they land. Which chain an entry
belongs to is read off the entry itself (its schema version, kind, workspace and worker) and the
ledger partition it is on:
- version 3: a workspace's decisions (written by the signal stage owning its shard) and its
  actions' outcomes and parking (`action.*`, `workspace.*`: written by the executor owning its
  lane partition, outside the stage's transactions) are two chains, `<workspace>` and
  `actions:<workspace>`; rejected input, the
  shard's folds and operator switches chain per ledger partition (`shard:<p>`), as the stage
  reading that partition writes them, whichever workspace a rejected record names;
- versions 1 and 2: all of a workspace's entries are one chain; entries that name no workspace
  chain per shard;
- always: a worker's breaker entries chain per worker (`worker:<id>`).
The seal covers the exact bytes on the ledger: the record is the entry's JSON without `hash`,
then `,"hash":"<hex>"}` appended, and `hash` = SHA-256 of those first bytes (HMAC-SHA256 with
the ledger key when one is set). Verifying re-reads the bytes, never a re-serialisation, so a
schema upgrade cannot break old links.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from topics.ledger import BreakerChanged, LedgerEntry, LedgerKind

_SEAL = re.compile(rb',"hash":"([0-9a-f]{64})"\}\Z')
_BREAKER_KINDS = frozenset(
    {
        LedgerKind.BREAKER_OPENED.value,
        LedgerKind.BREAKER_HALF_OPENED.value,
        LedgerKind.BREAKER_CLOSED.value,
    }
)
_REJECTED = LedgerKind.SIGNAL_REJECTED.value
# Every kind an executor writes about a workspace's commands: their outcomes, approvals and
# re-issues, and the workspace's parking.
_EXECUTOR_PREFIXES = ("action.", "workspace.")


def _chain_of(
    version: object, workspace_id: str | None, kind: str, worker: object, partition: int
) -> str:
    """The chain an entry belongs to (see the module's docstring)."""
    if version == 3:
        if kind == _REJECTED:
            return f"shard:{partition}"
        if workspace_id and kind.startswith(_EXECUTOR_PREFIXES):
            return f"actions:{workspace_id}"
    if workspace_id:
        return workspace_id
    if kind in _BREAKER_KINDS and worker is not None:
        return f"worker:{worker}"
    return f"shard:{partition}"


def chain_of_entry(entry: LedgerEntry, partition: int) -> str:
    """The chain an entry about to be written on `partition` belongs to."""
    worker = entry.payload.worker if isinstance(entry, BreakerChanged) else None
    return _chain_of(entry.schema_version, entry.workspace_id, entry.kind.value, worker, partition)


def _chain_of_document(document: dict[str, Any], partition: int) -> str:
    """The chain of a record as read (JSON), whatever it holds."""
    payload = document.get("payload")
    worker = payload.get("worker") if isinstance(payload, dict) else None
    return _chain_of(
        document.get("schema_version", 1),
        document.get("workspace_id"),
        str(document.get("kind")),
        worker,
        partition,
    )


def digest(body: bytes, key: bytes | None) -> str:
    """The seal of an entry's bytes (before its hash)."""
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def seal(entry: LedgerEntry, prev_hash: str | None, key: bytes | None) -> tuple[bytes, str]:
    """The record to write for an entry following `prev_hash` in its chain, and its hash."""
    linked = entry.model_copy(update={"prev_hash": prev_hash, "hash": None})
    body = linked.model_dump_json(exclude={"hash"}).encode()
    sealed = digest(body, key)
    return body[:-1] + b',"hash":"' + sealed.encode() + b'"}', sealed


@dataclass(frozen=True, slots=True)
class Link:
    """What the chain needs of one record: its chain, its link and its seal as read."""

    chain: str
    entry_id: str | None
    prev_hash: str | None
    hash: str | None
    # None: the seal holds (or there is none); else why the bytes do not match it.
    problem: str | None


def read_link(raw: bytes, partition: int, key: bytes | None) -> Link:
    """One ledger record's place in its chain, checking its seal against its bytes."""
    try:
        document = orjson.loads(raw)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except ValueError:
        return Link(f"shard:{partition}", None, None, None, "unreadable: not a ledger entry")
    chain = _chain_of_document(document, partition)
    entry_id = document.get("entry_id")
    prev_hash = document.get("prev_hash")
    claimed = document.get("hash")
    if claimed is None:
        return Link(chain, entry_id, prev_hash, None, None)
    matched = _SEAL.search(raw)
    if matched is None or matched.group(1).decode() != claimed:
        return Link(chain, entry_id, prev_hash, claimed, "its hash is not sealed as written")
    if digest(raw[: matched.start()] + b"}", key) != claimed:
        return Link(chain, entry_id, prev_hash, claimed, "its content does not match its hash")
    return Link(chain, entry_id, prev_hash, claimed, None)


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """The first place a chain does not hold."""

    chain: str
    partition: int
    offset: int
    entry_id: str | None
    reason: str


@dataclass
class ChainCheck:
    """Walks records partition by partition in offset order; keeps the first break per chain."""

    key: bytes | None
    heads: dict[str, str] = field(default_factory=dict)
    broken: dict[str, BrokenLink] = field(default_factory=dict)
    checked: int = 0
    # Entries written before the chain existed (schema version 1), before a chain's first seal.
    unsealed: int = 0

    def add(self, partition: int, offset: int, raw: bytes) -> None:
        """Check one record against the head of its chain, then make it the head."""
        self.checked += 1
        link = read_link(raw, partition, self.key)
        head = self.heads.get(link.chain)
        reason = link.problem
        if reason is None and link.hash is None:
            if head is None:
                self.unsealed += 1
                return
            reason = "it carries no hash, after its chain began"
        if reason is None and link.prev_hash != head:
            reason = (
                f"it links to {_short(link.prev_hash)}, "
                f"but the chain's previous entry is {_short(head)}"
            )
        if reason is not None and link.chain not in self.broken:
            self.broken[link.chain] = BrokenLink(
                link.chain, partition, offset, link.entry_id, reason
            )
        if link.hash is not None:
            # Carry on from this entry, so one break is not reported again for every later one.
            self.heads[link.chain] = link.hash


def heads_of(records: Iterable[bytes], partition: int) -> dict[str, str]:
    """The last hash of every chain in a partition's records (oldest first), for its writer."""
    heads: dict[str, str] = {}
    for raw in records:
        try:
            document = orjson.loads(raw)
        except ValueError:
            continue
        if not isinstance(document, dict) or not isinstance(document.get("hash"), str):
            continue
        heads[_chain_of_document(document, partition)] = document["hash"]
    return heads


def _short(value: str | None) -> str:
    return "nothing (a chain's start)" if value is None else value[:12]
