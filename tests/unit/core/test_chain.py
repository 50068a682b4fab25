"""The ledger's hash chain: the exact bytes a sealed record holds and what its hash covers;
which chain an entry belongs to; and how the check reports each kind of tampering, as the
first broken link of the altered chain only, carrying on from there."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from core.chain import BrokenLink, ChainCheck, chain_of_entry, digest, heads_of, read_link, seal
from core.ledger_entries import breaker_entry, folded_entry
from core.windows import SourcePosition
from tests.support.factories import decision_payload, ledger_entry
from topics.ledger import LedgerEntry, LedgerKind, parse_entry

T = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
KEY = b"ledger-key"
CONTENT = "its content does not match its hash"
NOT_AS_WRITTEN = "its hash is not sealed as written"


def entry(n: int, workspace: str | None = "ws-1", **overrides: Any) -> LedgerEntry:
    """Decision entry `e-n` of a workspace, recorded n seconds after T (its input holds n)."""
    fields: dict[str, Any] = {
        "entry_id": f"e-{n}",
        "workspace_id": workspace,
        "correlation_id": f"sig-{n}",
        "causation_id": f"sig-{n}",
        "policy_version": "seed-1",
        "recorded_at": T + timedelta(seconds=n),
    }
    fields.update(overrides)
    payload = decision_payload(f"e-{n}", input={"n": n})
    return ledger_entry(LedgerKind.DECISION_MADE, payload, **fields)


def v1(n: int, workspace: str = "ws-1") -> bytes:
    """Entry `e-n` as a version 1 writer put it on the ledger: no chain fields at all."""
    written = entry(n, workspace, schema_version=1).model_dump_json(exclude={"prev_hash", "hash"})
    return written.encode()


def sealed(
    entries: Sequence[LedgerEntry], key: bytes | None = None, partition: int = 0
) -> list[tuple[bytes, str]]:
    """The records a writer puts on one partition, each sealed onto its chain's head."""
    heads: dict[str, str] = {}
    records = []
    for item in entries:
        chain = chain_of_entry(item, partition)
        record, hash_ = seal(item, heads.get(chain), key)
        heads[chain] = hash_
        records.append((record, hash_))
    return records


def check(records: Sequence[bytes], key: bytes | None = None, partition: int = 0) -> ChainCheck:
    """A check of one partition's records, at offsets 0, 1, 2, ..."""
    checking = ChainCheck(key)
    for offset, raw in enumerate(records):
        checking.add(partition, offset, raw)
    return checking


def interleaved(key: bytes | None = None) -> list[tuple[bytes, str]]:
    """ws-1's e-1..e-4 and ws-2's e-11..e-13, interleaved on partition 0:
    offsets 0:e-1 1:e-11 2:e-2 3:e-12 4:e-3 5:e-13 6:e-4."""
    order = [entry(1), entry(11, "ws-2"), entry(2), entry(12, "ws-2"), entry(3)]
    return sealed([*order, entry(13, "ws-2"), entry(4)], key)


def body_of(record: bytes) -> bytes:
    """The bytes a seal covers, cut out independently: the record without its hash field."""
    cut = record.rindex(b',"hash":"')
    return record[:cut] + b"}"


def links(previous: str, expected: str) -> str:
    return f"it links to {previous[:12]}, but the chain's previous entry is {expected[:12]}"


# Sealing


def test_a_sealed_record_reads_back_as_the_entry_with_its_link_and_hash_last() -> None:
    """Given e-2 sealed after a head, when the record is read back, then it is e-2 with that
    prev_hash and the returned hash, and `hash` is its last field, written compactly."""
    head = "a" * 64

    record, hash_ = seal(entry(2), head, None)

    assert parse_entry(record) == entry(2, prev_hash=head, hash=hash_)
    assert list(orjson.loads(record))[-1] == "hash"
    assert record.endswith(
        b',"prev_hash":"' + head.encode() + b'","hash":"' + hash_.encode() + b'"}'
    )


def test_the_hash_is_sha256_of_the_bytes_before_it() -> None:
    """Given no key, then the hash is the SHA-256 of the record up to `,"hash":...`, closed,
    which is the entry's own compact JSON with its link."""
    record, hash_ = seal(entry(1), None, None)

    assert hash_ == hashlib.sha256(body_of(record)).hexdigest()
    assert body_of(record) == entry(1).model_dump_json(exclude={"hash"}).encode()


def test_with_a_key_the_hash_is_an_hmac_sha256() -> None:
    """Given a key, then the hash is HMAC-SHA256 of the same bytes, not their SHA-256."""
    record, hash_ = seal(entry(1), None, KEY)

    assert hash_ == hmac.new(KEY, body_of(record), hashlib.sha256).hexdigest()
    assert hash_ != hashlib.sha256(body_of(record)).hexdigest()


def test_digest_is_sha256_or_hmac() -> None:
    """Given the bytes "abc", then the digest is their known SHA-256, or their HMAC with a key."""
    assert digest(b"abc", None) == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert digest(b"abc", KEY) == hmac.new(KEY, b"abc", hashlib.sha256).hexdigest()


def test_seal_replaces_whatever_chain_fields_the_entry_came_with() -> None:
    """Given an entry already carrying a link and a hash (say, copied from elsewhere), when it
    is sealed after another head, then the record links to that head and the hash is new."""
    stale = entry(1, prev_hash="b" * 64, hash="c" * 64)

    record, hash_ = seal(stale, "d" * 64, None)

    assert seal(entry(1), "d" * 64, None) == (record, hash_)
    assert orjson.loads(record)["prev_hash"] == "d" * 64


def test_read_link_reads_a_records_place_in_its_chain() -> None:
    """Given a sealed record, then its link names its chain, id, link and hash, no problem."""
    record, hash_ = seal(entry(2), "a" * 64, None)

    link = read_link(record, 0, None)

    assert (link.chain, link.entry_id, link.prev_hash, link.hash, link.problem) == (
        "ws-1",
        "e-2",
        "a" * 64,
        hash_,
        None,
    )


# Which chain


@pytest.mark.parametrize(
    ("workspace", "kind", "payload", "chain"),
    [
        ("ws-1", "decision.made", {}, "ws-1"),
        # A workspace's breaker-like entry still chains on its workspace.
        ("ws-1", "breaker.opened", {"worker": "w-1"}, "ws-1"),
        (None, "breaker.opened", {"worker": "w-1"}, "worker:w-1"),
        (None, "breaker.half_opened", {"worker": "w-2"}, "worker:w-2"),
        (None, "breaker.closed", {"worker": "w-1"}, "worker:w-1"),
        (None, "signals.folded", {"signals": 3}, "shard:4"),
        (None, "signal.rejected", {"reason": "invalid: x"}, "shard:4"),
        (None, "breaker.closed", ["not", "a", "dict"], "shard:4"),
    ],
)
def test_a_record_chains_on_its_workspace_else_its_worker_or_shard(
    workspace: str | None, kind: str, payload: Any, chain: str
) -> None:
    """Given a record on partition 4 as `ledger verify` reads it, then it chains on its
    workspace, else a breaker entry on its worker, else the shard."""
    document = {"workspace_id": workspace, "kind": kind, "payload": payload}

    assert read_link(orjson.dumps(document), 4, None).chain == chain


@pytest.mark.parametrize(
    ("workspace", "kind", "chain"),
    [
        ("ws-1", "decision.made", "ws-1"),
        ("ws-1", "signals.folded", "ws-1"),
        ("ws-1", "action.started", "actions:ws-1"),
        ("ws-1", "action.reissued", "actions:ws-1"),
        ("ws-1", "action.approval_requested", "actions:ws-1"),
        ("ws-1", "action.rejected", "actions:ws-1"),
        ("ws-1", "signal.rejected", "shard:4"),
        (None, "signal.rejected", "shard:4"),
        (None, "operator.paused", "shard:4"),
    ],
)
def test_a_version_3_record_chains_its_workspaces_actions_apart(
    workspace: str | None, kind: str, chain: str
) -> None:
    """Given a version 3 record on partition 4, then a workspace's actions chain apart from its
    decisions (two writers, two chains), and rejected input on the shard it was read on."""
    document = {"schema_version": 3, "workspace_id": workspace, "kind": kind, "payload": {}}

    assert read_link(orjson.dumps(document), 4, None).chain == chain


def test_an_entry_being_written_chains_as_its_record_will_be_read() -> None:
    """Given a breaker entry, a fold and a decision written on partition 4, then the writer
    puts each on the chain the verifier reads it on."""
    written = [
        breaker_entry("control_api", "open", 5, "w-1", T),
        folded_entry(3, SourcePosition("signals", 4, 0), T),
        entry(1),
    ]

    for item in written:
        record, _ = seal(item, None, None)
        assert chain_of_entry(item, 4) == read_link(record, 4, None).chain
    assert [chain_of_entry(item, 4) for item in written] == ["worker:w-1", "shard:4", "ws-1"]


def test_entries_without_a_workspace_chain_per_shard_and_per_worker() -> None:
    """Given partition 2 holding folded-signal entries, breaker entries of two workers and a
    workspace's entries, sealed as a writer does, then the check finds four chains, all
    holding, and heads_of names the same heads."""
    source = SourcePosition("signals", 2, 0)
    entries = [
        folded_entry(5, source, T),
        breaker_entry("control_api", "open", 5, "w-1", T),
        entry(1),
        breaker_entry("control_api", "open", 3, "w-2", T),
        folded_entry(7, SourcePosition("signals", 2, 1), T + timedelta(seconds=1)),
        breaker_entry("control_api", "half_open", 5, "w-1", T + timedelta(seconds=30)),
    ]
    records = sealed(entries, partition=2)

    checking = check([record for record, _ in records], partition=2)

    assert checking.broken == {}
    assert checking.heads == {
        "shard:2": records[4][1],
        "worker:w-1": records[5][1],
        "ws-1": records[2][1],
        "worker:w-2": records[3][1],
    }
    assert heads_of((record for record, _ in records), 2) == checking.heads
    # Each chain starts from nothing: the second folded entry links to the first, not to ws-1.
    assert orjson.loads(records[4][0])["prev_hash"] == records[0][1]


# Checking an untouched ledger


@pytest.mark.parametrize("key", [None, KEY], ids=["sha256", "hmac"])
def test_two_interleaved_workspaces_hold(key: bytes | None) -> None:
    """Given ws-1 and ws-2 interleaved on a partition, sealed as written, then nothing is
    broken, each workspace's head is its last hash, and every record was checked."""
    records = interleaved(key)

    checking = check([record for record, _ in records], key)

    assert checking.broken == {}
    assert checking.heads == {"ws-1": records[6][1], "ws-2": records[5][1]}
    assert checking.checked == 7
    assert checking.unsealed == 0


def test_a_chain_sealed_with_a_key_does_not_hold_without_it() -> None:
    """Given records sealed with a key, when checked without it (or with another), then each
    chain breaks at its first entry."""
    records = [record for record, _ in interleaved(KEY)]

    for key in (None, b"another-key"):
        checking = check(records, key)

        assert checking.broken == {
            "ws-1": BrokenLink("ws-1", 0, 0, "e-1", CONTENT),
            "ws-2": BrokenLink("ws-2", 0, 1, "e-11", CONTENT),
        }


# Tampering: each reported once, at the first broken link of the altered chain only


def test_an_edited_payload_byte_breaks_that_entry() -> None:
    """Given e-2's payload edited in place ("n":2 → "n":3), then ws-1 is broken at e-2 (offset
    2) because its content no longer matches its hash; ws-2 holds."""
    records = [record for record, _ in interleaved()]
    records[2] = records[2].replace(b'"n":2', b'"n":3')

    checking = check(records)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-2", CONTENT)}


def test_a_removed_entry_breaks_the_chain_at_the_next_one() -> None:
    """Given e-2 removed from the middle of ws-1, then ws-1 is broken at e-3, which links to
    the missing e-2 rather than to e-1; ws-2 holds."""
    records = interleaved()
    h1, (e2, h2) = records[0][1], records[2]
    kept = [(offset, record) for offset, (record, _) in enumerate(records) if record != e2]

    checking = ChainCheck(None)
    for offset, record in kept:
        checking.add(0, offset, record)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 4, "e-3", links(h2, h1))}
    assert checking.checked == 6


def test_two_swapped_entries_break_the_chain_at_the_first_out_of_place() -> None:
    """Given ws-1's e-2 and e-3 swapped, then ws-1 is broken once, where e-3 now stands
    (offset 2), linking to e-2 while the chain's previous entry is e-1; ws-2 holds."""
    records = interleaved()
    h1, h2 = records[0][1], records[2][1]
    raw = [record for record, _ in records]
    raw[2], raw[4] = raw[4], raw[2]

    checking = check(raw)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-3", links(h2, h1))}


def test_an_appended_entry_sealed_without_the_key_is_forged() -> None:
    """Given a keyed ledger, when someone appends an entry linked to the real head with a
    recomputed SHA-256 (not knowing the key), then ws-1 is broken at it."""
    records = interleaved(KEY)
    forged, _ = seal(entry(5), records[6][1], None)

    checking = check([*(record for record, _ in records), forged], KEY)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 7, "e-5", CONTENT)}


@pytest.mark.parametrize(
    ("reformat", "reason"),
    [
        # What json.dumps writes by default: spaces after , and : (the hash field too).
        (lambda raw: json.dumps(json.loads(raw)).encode(), NOT_AS_WRITTEN),
        (lambda raw: json.dumps(json.loads(raw), indent=2).encode(), NOT_AS_WRITTEN),
        # The hash field untouched, whitespace added before it.
        (lambda raw: raw.replace(b'"kind":', b'"kind": ', 1), CONTENT),
        (lambda raw: b" " + raw, CONTENT),
    ],
    ids=["json-dumps", "indented", "inner-space", "leading-space"],
)
def test_an_entry_reserialised_with_other_whitespace_is_broken(
    reformat: Callable[[bytes], bytes], reason: str
) -> None:
    """Given e-2 re-serialised with the same content but other whitespace, then ws-1 is broken
    at e-2: the seal covers the bytes written, not the JSON they parse to."""
    records = [record for record, _ in interleaved()]
    records[2] = reformat(records[2])

    checking = check(records)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-2", reason)}


def test_an_entry_with_a_trailing_newline_is_broken() -> None:
    """Given e-2 with a newline appended after its closing brace, then ws-1 is broken at e-2:
    those are not the bytes that were sealed."""
    records = [record for record, _ in interleaved()]
    records[2] = records[2] + b"\n"

    checking = check(records)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-2", NOT_AS_WRITTEN)}


def test_a_replaced_hash_does_not_match_the_content() -> None:
    """Given e-2's hash field rewritten to another well-formed value, then ws-1 is broken at
    e-2."""
    records = [record for record, _ in interleaved()]
    document = orjson.loads(records[2])
    records[2] = records[2].replace(document["hash"].encode(), b"0" * 64)

    checking = check(records)

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-2", CONTENT)}


def test_only_the_first_break_of_a_chain_is_reported() -> None:
    """Given ws-1 edited at e-2 and again at e-4, and ws-2 at e-13, then each chain reports
    its first break only."""
    records = [record for record, _ in interleaved()]
    records[2] = records[2].replace(b'"n":2', b'"n":9')
    records[6] = records[6].replace(b'"n":4', b'"n":9')
    records[5] = records[5].replace(b'"n":13', b'"n":99')

    checking = check(records)

    assert checking.broken == {
        "ws-1": BrokenLink("ws-1", 0, 2, "e-2", CONTENT),
        "ws-2": BrokenLink("ws-2", 0, 5, "e-13", CONTENT),
    }


def test_after_a_break_the_check_carries_on_from_the_broken_entry() -> None:
    """Given e-2 edited, then the check follows ws-1 on from e-2's claimed hash: e-3 and e-4,
    which link to it, are judged against it and hold, and ws-1's head ends at e-4's hash."""
    records = interleaved()
    raw = [record for record, _ in records]
    raw[2] = raw[2].replace(b'"n":2', b'"n":3')
    checking = ChainCheck(None)

    for offset, record in enumerate(raw):
        checking.add(0, offset, record)
        if offset == 2:
            # The broken entry is now the head: what follows is judged against it.
            assert checking.heads["ws-1"] == records[2][1]

    assert checking.broken == {"ws-1": BrokenLink("ws-1", 0, 2, "e-2", CONTENT)}
    assert checking.heads == {"ws-1": records[6][1], "ws-2": records[5][1]}
    # e-3 checked on its own against that head holds: nothing more would be reported.
    fresh = ChainCheck(None, heads={"ws-1": records[2][1]})
    fresh.add(0, 4, raw[4])
    assert fresh.broken == {}


# Entries written before the chain


def test_version_1_entries_before_a_chains_first_seal_are_unsealed_not_broken() -> None:
    """Given two version 1 entries of ws-1 and one of ws-2, then ws-1 sealed from nothing,
    then all hold; the three are counted as unsealed, and all five as checked."""
    chain = sealed([entry(3), entry(4)])
    records = [v1(1), v1(11, "ws-2"), v1(2), *(record for record, _ in chain)]

    checking = check(records)

    assert checking.broken == {}
    assert checking.unsealed == 3
    assert checking.checked == 5
    assert checking.heads == {"ws-1": chain[1][1]}


def test_an_unsealed_entry_after_its_chain_began_is_broken() -> None:
    """Given ws-1 sealed from e-1, then a version 1 entry of ws-1, then e-2 sealed after e-1,
    then ws-1 is broken at the unsealed entry, which moves no head (e-2 links on from e-1); an
    unsealed entry of ws-2, whose chain never began, is not broken."""
    chain = sealed([entry(1), entry(2)])
    records = [chain[0][0], v1(5), v1(11, "ws-2"), chain[1][0]]

    checking = check(records)

    assert checking.broken == {
        "ws-1": BrokenLink("ws-1", 0, 1, "e-5", "it carries no hash, after its chain began")
    }
    assert checking.heads == {"ws-1": chain[1][1]}
    assert checking.unsealed == 1


@pytest.mark.parametrize(
    "raw",
    [b"not json at all", b"\xff\xfe\x00", b"[1, 2, 3]", b'"a string"', b""],
    ids=["text", "not-utf8", "array", "string", "empty"],
)
def test_unreadable_bytes_are_reported_on_their_shard(raw: bytes) -> None:
    """Given a record on partition 3 that is not a JSON object, between ws-1's entries, then
    the shard's chain is broken there, with no entry id; ws-1 holds."""
    chain = sealed([entry(1), entry(2)], partition=3)

    checking = check([chain[0][0], raw, chain[1][0]], partition=3)

    assert checking.broken == {
        "shard:3": BrokenLink("shard:3", 3, 1, None, "unreadable: not a ledger entry")
    }
    assert checking.heads == {"ws-1": chain[1][1]}
    assert checking.checked == 3


# Heads for a writer


def test_heads_of_is_the_last_hash_of_every_chain() -> None:
    """Given a partition's records (oldest first) with unsealed and unreadable ones among
    them, then heads_of names each chain's last sealed hash and ignores the others."""
    records = interleaved()
    raw = [v1(20, "ws-3"), *(record for record, _ in records), b"garbage", v1(21)]

    heads = heads_of(raw, 0)

    assert heads == {"ws-1": records[6][1], "ws-2": records[5][1]}


def test_heads_of_nothing_is_empty() -> None:
    """Given an empty partition, then every chain starts from nothing."""
    assert heads_of([], 0) == {}
