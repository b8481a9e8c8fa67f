"""The circuit breaker as a pure state machine: every answer kind, every state, time injected."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.contracts import Channel
from stream_app.gateway.breaker import (
    TRANSITIONS,
    CallOutcome,
    Cause,
    ChannelBreaker,
    Circuit,
    Transition,
    classify,
)
from stream_app.gateway.client import (
    Accepted,
    Found,
    NotFound,
    Permanent,
    RateLimited,
    Rejected,
    SendResult,
    StatusResult,
    Transient,
)
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.settings import BreakerConfig, gateway_from_env

OK, FAIL = CallOutcome.SUCCESS, CallOutcome.FAILURE
INPUTS: dict[str, CallOutcome | None] = {"OK": OK, "FAIL": FAIL, "None": None}
CONFIG = BreakerConfig(
    failure_ratio=0.5, window_seconds=10, min_calls=4, open_seconds=30, max_open_seconds=100
)


def breaker(config: BreakerConfig = CONFIG) -> ChannelBreaker:
    return ChannelBreaker(Channel.WHATSAPP, config)


def feed(b: ChannelBreaker, outcomes: list[CallOutcome | None], at: float = 0.0) -> list[Transition]:
    return [t for o in outcomes if (t := b.record(o, at)) is not None]


def tripped(at: float = 0.0) -> ChannelBreaker:
    b = breaker()
    assert [t.after for t in feed(b, [FAIL] * 4, at)] == [Circuit.OPEN]
    return b


def half_open() -> ChannelBreaker:
    b = tripped()
    t = b.tick(30.0)
    assert t is not None and t.after is Circuit.HALF_OPEN
    return b


# ------------------------------------------------------------------------------ what counts


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (Transient("HTTP 500: internal error", maybe_sent=True), FAIL),
        (Transient("HTTP 503: unavailable", maybe_sent=False), FAIL),
        (Transient("HTTP 408: timeout", maybe_sent=True), FAIL),
        (Transient("ReadTimeout: timed out", maybe_sent=True), FAIL),
        (Transient("ConnectError: connection refused", maybe_sent=False), FAIL),
        (Transient("RemoteProtocolError: connection reset", maybe_sent=True), FAIL),
        (Transient("HTTP 200 with an unreadable body", maybe_sent=True), FAIL),
        (Accepted("gw-1"), OK),
        # about one message, not the channel: the gateway answered
        (Rejected(("RECIPIENT_NOT_ON_WHATSAPP",)), OK),
        (Rejected(("Template not approved or not found",), http_status=422), OK),
        (Permanent(400, "sender: required"), OK),
        # the gateway is up but throttling, or we held the call back: says nothing
        (RateLimited(1.0), None),
        (RateLimited(5.0, held_back=True), None),
        # status look-ups on the channel (asked instead of a send after a 5xx that may have sent)
        (Found("SENT", None, (), None, "gw-1"), OK),
        (NotFound(), OK),
        (Transient("HTTP 502: bad gateway", maybe_sent=True), FAIL),
    ],
)
def test_each_answer_kind_is_classified(
    result: SendResult | StatusResult, expected: CallOutcome | None
) -> None:
    assert classify(result) is expected


def test_rejections_and_422s_never_trip_however_many() -> None:
    b = breaker()
    outcomes = [classify(Rejected(("NO",), http_status=422)), classify(Rejected(("NO",)))] * 50
    assert feed(b, outcomes) == []
    assert b.state is Circuit.CLOSED


def test_rate_limits_are_not_counted_in_the_window() -> None:
    b = breaker()
    feed(b, [classify(RateLimited(1.0))] * 50 + [FAIL] * 3)
    assert b.counts(0.0) == (3, 3)
    assert b.state is Circuit.CLOSED  # 3 calls: under min_calls, the 429s did not make up the number


# ------------------------------------------------------------------------------ tripping


def test_trips_past_the_ratio_once_min_calls_are_in_the_window() -> None:
    b = breaker()
    assert feed(b, [FAIL] * 3, at=5.0) == []  # 3 of 3 failed, but 3 < min_calls
    [t] = feed(b, [FAIL], at=5.5)
    assert (t.before, t.after, t.cause, t.channel) == (
        Circuit.CLOSED,
        Circuit.OPEN,
        Cause.TRIPPED,
        Channel.WHATSAPP,
    )
    assert (t.at, t.until, t.calls, t.failures, t.ratio) == (5.5, 35.5, 4, 4, 1.0)
    assert (b.state, b.until, b.next_due()) == (Circuit.OPEN, 35.5, 35.5)


def test_the_ratio_must_be_exceeded_not_reached() -> None:
    b = breaker()
    assert feed(b, [OK, FAIL, OK, FAIL, OK, FAIL]) == []  # exactly half: stays closed
    [t] = feed(b, [FAIL])  # 4 of 7
    assert t.after is Circuit.OPEN and (t.calls, t.failures) == (7, 4)


def test_a_success_never_trips_even_over_the_ratio() -> None:
    b = breaker(BreakerConfig(failure_ratio=0.1, window_seconds=10, min_calls=4))
    assert feed(b, [FAIL, FAIL, FAIL]) == []
    assert feed(b, [OK]) == []  # 3 of 4 failed, but the answer that arrived is a good one
    [t] = feed(b, [FAIL])
    assert t.after is Circuit.OPEN


def test_old_failures_slide_out_of_the_window() -> None:
    b = breaker()
    feed(b, [FAIL] * 3, at=0.0)
    assert b.counts(9.9) == (3, 3)
    assert b.counts(10.0) == (0, 0)  # the second-0 bucket is 10 s old: gone
    assert feed(b, [FAIL], at=10.0) == []
    assert b.state is Circuit.CLOSED
    feed(b, [FAIL] * 2, at=11.0)
    [t] = feed(b, [FAIL], at=12.0)
    assert (t.calls, t.failures) == (4, 4)


def test_a_window_mixing_seconds_counts_each_bucket_once() -> None:
    b = breaker(BreakerConfig(failure_ratio=0.5, window_seconds=3, min_calls=100))
    for second in range(10):
        feed(b, [OK, FAIL], at=second + 0.5)
    assert b.counts(9.5) == (6, 3)  # seconds 7, 8 and 9
    assert len(b._buckets) == 3


def test_a_clock_stepping_back_lands_in_the_last_bucket() -> None:
    b = breaker()
    feed(b, [FAIL, FAIL], at=5.0)
    feed(b, [FAIL], at=4.0)
    assert b.counts(5.0) == (3, 3)
    assert len(b._buckets) == 1


def test_ratio_one_never_trips() -> None:
    b = breaker(BreakerConfig(failure_ratio=1.0, window_seconds=10, min_calls=1))
    assert feed(b, [FAIL] * 100) == []


# ------------------------------------------------------------------------------ open, half-open


def test_answers_while_open_change_nothing() -> None:
    b = tripped()
    assert feed(b, [OK, FAIL, OK, None] * 10, at=1.0) == []
    assert (b.state, b.until) == (Circuit.OPEN, 30.0)


def test_tick_before_until_changes_nothing_and_at_until_a_probe_is_due() -> None:
    b = tripped()
    assert b.tick(29.999) is None
    t = b.tick(30.0)
    assert t is not None
    assert (t.before, t.after, t.cause, t.until) == (Circuit.OPEN, Circuit.HALF_OPEN, Cause.PROBE_DUE, None)
    assert (b.state, b.until, b.next_due()) == (Circuit.HALF_OPEN, None, None)
    assert b.tick(1000.0) is None  # half-open waits for an answer, not for time


def test_tick_while_closed_changes_nothing() -> None:
    b = breaker()
    assert b.tick(1e9) is None
    assert b.next_due() is None


def test_a_successful_probe_closes_the_circuit_and_starts_a_fresh_window() -> None:
    b = half_open()
    [t] = feed(b, [OK], at=31.0)
    assert (t.before, t.after, t.cause, t.until) == (
        Circuit.HALF_OPEN,
        Circuit.CLOSED,
        Cause.PROBE_SUCCEEDED,
        None,
    )
    assert b.counts(31.0) == (0, 0)  # the outage's failures are not held against the recovered channel
    assert feed(b, [FAIL] * 3, at=32.0) == []


def test_a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() -> None:
    b = half_open()
    untils = []
    now = 30.0
    for _ in range(5):
        [t] = feed(b, [FAIL], at=now)
        assert (t.before, t.after, t.cause) == (Circuit.HALF_OPEN, Circuit.OPEN, Cause.PROBE_FAILED)
        assert t.until is not None
        untils.append(t.until - now)
        now = t.until
        assert b.tick(now) is not None
    assert untils == [60.0, 100.0, 100.0, 100.0, 100.0]  # 30 doubled, then the 100 s cap


def test_recovery_resets_the_open_time_for_the_next_outage() -> None:
    b = half_open()
    [t] = feed(b, [FAIL], at=30.0)  # 60 s
    assert t.until == 90.0
    b.tick(90.0)
    feed(b, [OK], at=90.0)
    [t] = feed(b, [FAIL] * 4, at=100.0)
    assert t.until == 130.0  # back to open_seconds


def test_a_rate_limited_probe_decides_nothing() -> None:
    b = half_open()
    assert b.record(classify(RateLimited(1.0)), 31.0) is None
    assert b.state is Circuit.HALF_OPEN


# ------------------------------------------------------------------------------ every state x input

EXPECTED = {
    # (state, input) -> state after; input: OK, FAIL, None (not counted), "tick" (at until)
    (Circuit.CLOSED, "OK"): Circuit.CLOSED,
    (Circuit.CLOSED, "FAIL"): Circuit.OPEN,  # the 4th failure of 4: min_calls reached
    (Circuit.CLOSED, "None"): Circuit.CLOSED,
    (Circuit.CLOSED, "tick"): Circuit.CLOSED,
    (Circuit.OPEN, "OK"): Circuit.OPEN,
    (Circuit.OPEN, "FAIL"): Circuit.OPEN,
    (Circuit.OPEN, "None"): Circuit.OPEN,
    (Circuit.OPEN, "tick"): Circuit.HALF_OPEN,
    (Circuit.HALF_OPEN, "OK"): Circuit.CLOSED,
    (Circuit.HALF_OPEN, "FAIL"): Circuit.OPEN,
    (Circuit.HALF_OPEN, "None"): Circuit.HALF_OPEN,
    (Circuit.HALF_OPEN, "tick"): Circuit.HALF_OPEN,
}


def in_state(state: Circuit) -> ChannelBreaker:
    if state is Circuit.CLOSED:
        b = breaker()
        feed(b, [FAIL] * 3)
        return b
    return tripped() if state is Circuit.OPEN else half_open()


@pytest.mark.parametrize(("state", "given"), sorted(EXPECTED))
def test_every_state_and_input(state: Circuit, given: str) -> None:
    b = in_state(state)
    now = 30.0 if state is not Circuit.CLOSED else 0.0
    t = b.tick(now) if given == "tick" else b.record(INPUTS[given], now)
    after = EXPECTED[(state, given)]
    assert b.state is after
    assert (t is None) == (after is state)
    if t is not None:
        assert (t.before, t.after) in TRANSITIONS


def test_the_transition_table_is_the_four_moves() -> None:
    assert {(a.value, b.value) for a, b in TRANSITIONS} == {
        ("CLOSED", "OPEN"),
        ("OPEN", "HALF_OPEN"),
        ("HALF_OPEN", "CLOSED"),
        ("HALF_OPEN", "OPEN"),
    }


steps = st.lists(
    st.tuples(st.sampled_from(["OK", "FAIL", "None", "tick"]), st.floats(min_value=0, max_value=50)),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_any_sequence_moves_only_along_the_table(sequence: list[tuple[str, float]]) -> None:
    b = breaker()
    now = 0.0
    for step, dt in sequence:
        now += dt
        before = b.state
        t = b.tick(now) if step == "tick" else b.record(INPUTS[step], now)
        if t is None:
            assert b.state is before
            continue
        assert (t.before, t.after) == (before, b.state)
        assert (t.before, t.after) in TRANSITIONS
        # until exactly when OPEN, never in the past, never longer than the cap
        assert (t.until is not None) == (t.after is Circuit.OPEN)
        if t.until is not None:
            assert t.until - now == pytest.approx(min(max(t.until - now, 30.0), 100.0))  # in [open, max]
        if t.cause is Cause.TRIPPED:
            assert t.calls >= CONFIG.min_calls and t.failures > CONFIG.failure_ratio * t.calls
        calls, failures = b.counts(now)
        assert 0 <= failures <= calls


# ------------------------------------------------------------------------------ settings


def test_breaker_settings_from_the_environment() -> None:
    assert gateway_from_env({}).breaker == BreakerConfig()
    env = {
        "STREAM_APP_BREAKER_FAILURE_RATIO": "0.8",
        "STREAM_APP_BREAKER_WINDOW_SECONDS": "30",
        "STREAM_APP_BREAKER_MIN_CALLS": "5",
        "STREAM_APP_BREAKER_OPEN_SECONDS": "10",
        "STREAM_APP_BREAKER_MAX_OPEN_SECONDS": "120",
    }
    assert gateway_from_env(env).breaker == BreakerConfig(0.8, 30.0, 5, 10.0, 120.0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_APP_BREAKER_FAILURE_RATIO": "1.5"}, "_RATIO: must be > 0 and at most 1"),
        ({"STREAM_APP_BREAKER_FAILURE_RATIO": "0"}, "STREAM_APP_BREAKER_FAILURE_RATIO: must be > 0"),
        ({"STREAM_APP_BREAKER_FAILURE_RATIO": "half"}, "not a number"),
        ({"STREAM_APP_BREAKER_WINDOW_SECONDS": "0.5"}, "_WINDOW_SECONDS: must be at least 1"),
        ({"STREAM_APP_BREAKER_MIN_CALLS": "2.5"}, "STREAM_APP_BREAKER_MIN_CALLS: must be a whole number"),
        ({"STREAM_APP_BREAKER_MIN_CALLS": "-3"}, "STREAM_APP_BREAKER_MIN_CALLS: must be > 0"),
        ({"STREAM_APP_BREAKER_OPEN_SECONDS": "1000"}, "STREAM_APP_BREAKER_OPEN_SECONDS: must be at most"),
        ({"STREAM_APP_BREAKER_MAX_OPEN_SECONDS": "nan"}, "STREAM_APP_BREAKER_MAX_OPEN_SECONDS: must be > 0"),
    ],
)
def test_bad_breaker_settings_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        gateway_from_env(env)
