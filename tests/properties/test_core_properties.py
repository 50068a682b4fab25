"""Properties of the pure core: no input crashes the decoder, no event is lost or counted
twice whatever the batching, the windowed state agrees with what was observed, and the same
signals always give the same state, health and decisions."""

from __future__ import annotations

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import windows
from core.codec import decode_signals
from core.health import health_of, status_of
from core.replay import replay_decisions
from core.windows import SourcePosition, WindowConfig
from tests.support.factories import SEED_POLICY
from topics.batches import encode_batches
from topics.limits import MAX_BATCH_SIGNALS, MAX_RECORD_BYTES
from topics.signals import GAUGE_ATTRIBUTE, Signal, SignalType, signal_from

T0 = datetime(2024, 1, 1, tzinfo=UTC)
E0 = 1_704_067_200
# A short grace over event times spanning minutes and hours, so streams cross minutes and
# steps, arrive late and expire buckets often.
CONFIG = WindowConfig(grace_seconds=30)
SOURCE = SourcePosition("signals", 0, 0)
REASON_CLASSES = ("undecodable: ", "invalid: ", "oversize: ")

# --- strategies -------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=12)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=20,
)

# Signal-shaped objects mixing valid and invalid field values, so both the accepting and the
# rejecting paths of the decoder are exercised (an arbitrary JSON value is almost never valid).
signal_like = st.fixed_dictionaries(
    {
        "workspace_id": st.sampled_from(["ws-1", "ws-2", "../etc", "", "a" * 65, "ws 1", 7]),
        "type": st.sampled_from([*(t.value for t in SignalType), "drop_tables", None]),
        "occurred_at": st.sampled_from(
            [
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:00:00+02:00",
                "2024-01-01T00:05:00Z",
                "2024-01-01T00:05:01Z",
                "2024-01-01T00:00:00",
                "soon",
            ]
        ),
    },
    optional={
        "id": st.sampled_from(["a", "b", "c:1", "bad id", ""]),
        "source": st.sampled_from(["monitor", "bad source!"]),
        "attributes": st.dictionaries(
            st.sampled_from(
                ["health_score", "status", "pending", "age_seconds", "reason", "Bad-Key", "note"]
            ),
            st.none()
            | st.integers(-100, 700)
            | st.floats(allow_nan=True)
            | st.booleans()
            | st.sampled_from(["42", "api"])
            | st.text(max_size=300),
            max_size=4,
        ),
        "extra": json_scalars,
    },
)
records = json_values | signal_like | st.lists(signal_like | json_values, min_size=1, max_size=8)


def expected_inputs(raw: bytes | None) -> int:
    """How many inputs a record holds: one per batch item, else the record itself."""
    if raw is None or len(raw) > MAX_RECORD_BYTES:
        return 1
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return 1
    if isinstance(parsed, list) and 0 < len(parsed) <= MAX_BATCH_SIGNALS:
        return len(parsed)
    return 1


def check_accounting(raw: bytes | None, written_at: float | None = None) -> None:
    """Every input of the record is accepted or rejected exactly once, with a classed
    reason, and a rejected batch item keeps its original content."""
    decoded = decode_signals(raw, written_at)

    assert len(decoded.signals) + len(decoded.rejections) == expected_inputs(raw)
    assert all(r.reason.startswith(REASON_CLASSES) for r in decoded.rejections)
    indices = [r.index for r in decoded.rejections]
    if None in indices:
        assert len(decoded.rejections) == 1
        assert decoded.signals == []
        assert decoded.rejections[0].raw == (raw or b"")
    else:
        items = orjson.loads(raw or b"")
        assert indices == sorted(set(indices))
        for rejection in decoded.rejections:
            assert orjson.loads(rejection.raw) == items[rejection.index]


# Signals of a few workspaces with few ids, of every type: event times either within ten
# minutes (reused ids, out-of-order and late signals are common) or over three hours (steps
# and minutes expire, the hour moves on, gauges go stale).
def attributes_for(signal_type: SignalType) -> st.SearchStrategy[dict[str, Any]]:
    if signal_type is SignalType.QUEUE_DEPTH:
        return st.builds(lambda n: {"pending": n}, st.integers(0, 120))
    if signal_type is SignalType.OLDEST_PENDING_AGE:
        return st.builds(lambda s: {"age_seconds": s}, st.integers(0, 4000) | st.floats(0, 4000))
    if signal_type is SignalType.HEALTH_DEGRADED:
        return st.sampled_from([{}, {"health_score": 10}, {"health_score": 50}])
    return st.just({})


@st.composite
def signals(draw: st.DrawFn) -> Signal:
    signal_type = draw(st.sampled_from(list(SignalType)))
    return signal_from(
        {
            "id": draw(st.sampled_from("abcd")),
            "workspace_id": draw(st.sampled_from(["ws-1", "ws-2", "ws-3"])),
            "type": signal_type,
            "occurred_at": T0
            + timedelta(seconds=draw(st.integers(0, 600) | st.integers(0, 3 * 3600))),
            "attributes": draw(attributes_for(signal_type)),
        }
    )


signal_streams = st.lists(signals(), max_size=30)


def split(draw: st.DrawFn, signals: list[Signal]) -> list[list[Signal]]:
    """The signals cut into consecutive batches at drawn positions (empty batches too)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(signals)), max_size=6)))
    bounds = [0, *cuts, len(signals)]
    return [signals[start:end] for start, end in pairwise(bounds)]


def fold(batches: list[list[Signal]]) -> tuple[windows.WorkspaceState, list[windows.FoldResult]]:
    state = windows.initialize()
    return state, [windows.add(state, batch, SOURCE, CONFIG) for batch in batches]


def single_workspace(signals: list[Signal]) -> list[Signal]:
    # One fold holds one workspace's state, as the aggregate agent keys it.
    return [s.model_copy(update={"workspace_id": "ws-1"}) for s in signals]


# --- decoding ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.none() | st.binary(max_size=200))
def test_decoding_arbitrary_bytes_never_raises_and_accounts_for_every_input(
    raw: bytes | None,
) -> None:
    """Given any bytes, when decoded, then nothing raises and accepted + rejected equals
    the inputs the record holds."""
    check_accounting(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, st.none() | st.just(float(E0)))
def test_decoding_any_json_never_raises_and_accounts_for_every_input(
    value: Any, written_at: float | None
) -> None:
    """Given any JSON value (signal-shaped or not, single or batch), with or without the
    record's time, when decoded, then nothing raises and accepted + rejected equals 1 for
    an object or scalar and the length of a non-empty array."""
    raw = orjson.dumps(value)

    check_accounting(raw, written_at)

    expected = len(value) if isinstance(value, list) and value else 1
    decoded = decode_signals(raw, written_at)
    assert len(decoded.signals) + len(decoded.rejections) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(signal_like, min_size=1, max_size=6), st.integers(0, 600))
def test_no_accepted_signal_is_further_ahead_than_the_limit(
    batch: list[dict[str, Any]], limit: int
) -> None:
    """Given any batch written at T0 and any future limit, then every accepted signal is at
    most that far after T0, and a signal is refused for the future only past the limit."""
    decoded = decode_signals(orjson.dumps(batch), float(E0), limit)

    assert all(s.occurred_at.timestamp() <= E0 + limit for s in decoded.signals)
    without_limit = decode_signals(orjson.dumps(batch))
    ahead = [s for s in without_limit.signals if s.occurred_at.timestamp() > E0 + limit]
    assert len(decoded.signals) == len(without_limit.signals) - len(ahead)
    future = [r for r in decoded.rejections if "after the record was written" in r.reason]
    assert len(future) == len(ahead)


@settings(max_examples=100, deadline=None)
@given(signal_streams)
def test_every_batch_record_is_read_back_as_it_was_sent(signals: list[Signal]) -> None:
    """Given any signals, when encoded as batch records, then the decoder accepts every
    record whole and reads back the same signals in the same order."""
    read = []
    for raw in encode_batches(signals) if signals else []:
        decoded = decode_signals(raw)
        assert decoded.rejections == []
        read.extend(decoded.signals)

    assert read == signals


@settings(max_examples=150, deadline=None)
@given(st.lists(signal_like, min_size=1, max_size=6))
def test_decoding_is_deterministic_including_derived_ids(batch: list[dict[str, Any]]) -> None:
    """Given the same record twice, then the same signals (ids included) and rejections."""
    raw = orjson.dumps(batch)

    assert decode_signals(raw) == decode_signals(raw)
    assert decode_signals(raw, float(E0), 60) == decode_signals(raw, float(E0), 60)


# --- folding ----------------------------------------------------------------------------------


def observed(results: list[windows.FoldResult]) -> list[tuple[str, int, int]]:
    return [(o.signal_id, o.window_start, o.count) for r in results for o in r.observations]


def set_aside(results: list[windows.FoldResult], kind: str) -> list[str]:
    return [s.id for r in results for s in getattr(r, kind)]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_split_into_batches_folds_like_one_batch(data: st.DataObject) -> None:
    """Given a workspace's signals, when folded in any split into batches, then the
    observations, duplicates, late signals and final state equal one single-batch fold."""
    signals = single_workspace(data.draw(signal_streams))
    batches = split(data.draw, signals)

    whole_state, whole = fold([signals])
    split_state, parts = fold(batches)

    assert observed(parts) == observed(whole)
    assert set_aside(parts, "duplicates") == set_aside(whole, "duplicates")
    assert set_aside(parts, "late") == set_aside(whole, "late")
    assert split_state == whole_state


COUNTERS = ("late", "duplicates", "dedup_unchecked")


def without_counters(state: windows.WorkspaceState) -> dict[str, Any]:
    return {key: value for key, value in state.items() if key not in COUNTERS}


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_refolding_a_redelivered_batch_observes_nothing_new(data: st.DataObject) -> None:
    """Given a folded stream, when its last batch is delivered again (at-least-once
    delivery), then nothing is observed twice, and the buckets, watermark, last-seen times
    and gauges are unchanged (only the duplicate and late tallies grow)."""
    signals = single_workspace(data.draw(signal_streams))
    batches = split(data.draw, signals)
    state, _ = fold(batches)
    before = copy.deepcopy(state)

    again = windows.add(state, batches[-1], SOURCE, CONFIG)

    assert again.observations == []
    assert len(again.duplicates) + len(again.late) == len(batches[-1])
    assert without_counters(state) == without_counters(before)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_no_signal_is_lost_or_counted_twice(data: st.DataObject) -> None:
    """Given any signals in any batches, then every signal ends in exactly one of
    observations, duplicates or late, and the state's counters agree."""
    signals = single_workspace(data.draw(signal_streams))
    state, results = fold(split(data.draw, signals))

    observed_ids = [o.signal_id for r in results for o in r.observations]
    duplicates = set_aside(results, "duplicates")
    late = set_aside(results, "late")
    assert len(observed_ids) + len(duplicates) + len(late) == len(signals)
    assert Counter(observed_ids) + Counter(duplicates) + Counter(late) == Counter(
        s.id for s in signals
    )
    assert (state["duplicates"], state["late"]) == (len(duplicates), len(late))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_counts_in_a_window_are_one_per_distinct_id(data: st.DataObject) -> None:
    """Given any signals, then the last count observed per window and type equals the number
    of distinct ids observed there (a duplicate never inflates a count)."""
    signals = single_workspace(data.draw(signal_streams))
    _, results = fold(split(data.draw, signals))

    last_count: dict[tuple[int, SignalType], int] = {}
    ids: dict[tuple[int, SignalType], set[str]] = {}
    for observation in (o for r in results for o in r.observations):
        key = (observation.window_start, observation.signal_type)
        last_count[key] = observation.count
        ids.setdefault(key, set()).add(observation.signal_id)
    assert last_count == {key: len(seen) for key, seen in ids.items()}


# --- the windowed state agrees with what was observed ----------------------------------------


def observations_of(results: list[windows.FoldResult]) -> list[windows.Observation]:
    return [o for r in results for o in r.observations]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_hour_counts_every_observation_of_the_last_twelve_steps(data: st.DataObject) -> None:
    """Given any signals in any batches, then the hour's counts per type are exactly the
    observations whose 5-minute bucket is in the hour ending with the watermark's bucket,
    and the watermark's minute counts exactly the observations in that minute."""
    state, results = fold(split(data.draw, single_workspace(data.draw(signal_streams))))
    observed_signals = observations_of(results)
    view = windows.view(state)

    if state["watermark"] is None:
        assert observed_signals == []
        return
    first = windows.hour_start(state["watermark"])
    minute = windows.minute_start(state["watermark"])
    assert view["hour"]["counts"] == dict(
        Counter(o.signal_type.value for o in observed_signals if o.window_start >= first)
    )
    assert view["minute"]["counts"] == dict(
        Counter(
            o.signal_type.value
            for o in observed_signals
            if windows.minute_start(o.occurred_at) == minute
        )
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_last_seen_and_gauges_are_the_latest_observed_by_event_time(data: st.DataObject) -> None:
    """Given any signals in any batches, then each type's last-seen time is its latest
    observed event time, and each gauge holds the reading of its latest observed signal
    (by event time, the later arrival winning a tie), whatever order they arrived in."""
    state, results = fold(split(data.draw, single_workspace(data.draw(signal_streams))))

    last_seen: dict[str, int] = {}
    gauges: dict[str, list[Any]] = {}
    for o in observations_of(results):
        name = o.signal_type.value
        last_seen[name] = max(last_seen.get(name, o.occurred_at), o.occurred_at)
        gauge = GAUGE_ATTRIBUTE.get(o.signal_type)
        if gauge is not None and (name not in gauges or gauges[name][0] <= o.occurred_at):
            gauges[name] = [o.occurred_at, o.attributes[gauge]]
    assert state["last_seen"] == last_seen
    assert state["gauges"] == gauges


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_health_is_bounded_banded_and_the_sum_of_its_deductions(data: st.DataObject) -> None:
    """Given any signals, then the health score is 100 minus its deductions, floored at 0,
    its band is the score's band, and the same signals in any split give the same health."""
    signals = single_workspace(data.draw(signal_streams))
    whole_state, _ = fold([signals])
    split_state, _ = fold(split(data.draw, signals))

    health = health_of(whole_state)

    assert health.score == max(0, 100 - sum(d.points for d in health.deductions))
    assert 0 <= health.score <= 100
    assert health.status is status_of(health.score)
    assert health_of(split_state) == health


@settings(max_examples=100, deadline=None)
@given(signal_streams)
def test_upcasting_a_current_state_changes_nothing(signals: list[Signal]) -> None:
    """Given any folded state, then upcast leaves it as it is, so reading a stored state
    back never alters it."""
    state, _ = fold([single_workspace(signals)])
    before = copy.deepcopy(state)

    assert windows.upcast(state) == before


# --- decisions --------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(signal_streams)
def test_replaying_the_same_signals_gives_the_same_decisions(signals: list[Signal]) -> None:
    """Given the same signals replayed twice, then the decisions, their ids and their
    command ids are identical."""
    first = replay_decisions(signals, CONFIG)
    second = replay_decisions(list(signals), CONFIG)

    assert [(d.decision_id, d.command_id) for d in first] == [
        (d.decision_id, d.command_id) for d in second
    ]
    assert first == second


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_decisions_do_not_depend_on_how_workspaces_interleave(data: st.DataObject) -> None:
    """Given the same signals with workspaces interleaved differently (each workspace's own
    order kept, as shards are read in any order), then the decisions are identical."""
    signals = data.draw(signal_streams)
    order = data.draw(st.permutations(["ws-1", "ws-2", "ws-3"]))
    regrouped = sorted(signals, key=lambda s: order.index(s.workspace_id))

    assert replay_decisions(regrouped, CONFIG) == replay_decisions(signals, CONFIG)


def ids_per_bucket(signals: list[Signal]) -> list[Signal]:
    """The signals with each id made unique to its 5-minute bucket: a resent signal still
    meets its first copy, but no id is reused for a new signal in a later bucket (that case
    is a known defect, see test_decide.py's reused-id test)."""
    return [
        s.model_copy(update={"id": f"{s.id}-{windows.step_start(int(s.occurred_at.timestamp()))}"})
        for s in signals
    ]


@settings(max_examples=150, deadline=None)
@given(signal_streams)
def test_an_action_is_never_issued_to_a_workspace_again_within_its_cooldown(
    signals: list[Signal],
) -> None:
    """Given any signals, then two decisions on the same action for the same workspace are
    at least the later rule's cooldown apart in event time, whatever duplicates or late
    signals arrive, and no decision id or command id repeats."""
    decisions = replay_decisions(ids_per_bucket(signals), CONFIG)
    cooldown = {rule.id: rule.cooldown_seconds for rule in SEED_POLICY.spec.rules}

    last: dict[tuple[str, str], int] = {}
    for decision in decisions:
        key = (decision.workspace_id, decision.action.value)
        if key in last:
            assert decision.inputs.at - last[key] >= cooldown[decision.rule_id]
        last[key] = decision.inputs.at
    assert len({d.decision_id for d in decisions}) == len(decisions)
    issued = [d.command_id for d in decisions if d.command_id is not None]
    assert len(set(issued)) == len(issued)
