"""The gateway's rate limits as stated: a 429's wait is never shorter than asked, and pacing before one."""

from __future__ import annotations

import email.utils
import time

import orjson
import pytest

from stream_app.gateway.ratelimit import (
    DEFAULT_WINDOW,
    MAX_HEADER_WAIT,
    RatePacer,
    body_retry_after,
    retry_after_of,
)
from tests.support.gateway_data import raw


@pytest.mark.parametrize(
    ("header", "body", "expected"),
    [
        ("1", b'{"retryAfter": 3}', 3.0),  # the body asks longer: the body wins
        ("5", b'{"retryAfter": 3}', 5.0),  # the header asks longer: the header wins
        (None, b'{"retryAfter": 2.5}', 2.5),  # only the body
        ("2", b"{}", 2.0),  # only the header
        (None, b'{"retryAfter": "4"}', 4.0),  # a numeric string
        (None, b"not json", None),
        (None, b'{"retryAfter": true}', None),
        (None, b'{"retryAfter": -3}', 0.0),
        (None, b"[1]", None),
    ],
)
def test_the_longer_of_header_and_body(header: str | None, body: bytes, expected: float | None) -> None:
    assert retry_after_of(header, body) == expected


def test_the_documented_429_body() -> None:
    assert body_retry_after(raw("rate-limited-body")) == 3.0


def test_never_shorter_than_either_whatever_the_mix() -> None:
    now = time.time()
    for header_s in (0, 1, 7, 30):
        for body_s in (0, 2, 9):
            date = email.utils.formatdate(now + header_s, usegmt=True)
            for header in (str(header_s), date):
                wait = retry_after_of(header, orjson.dumps({"retryAfter": body_s}), now=now)
                assert wait is not None and wait >= body_s and wait >= header_s - 1  # HTTP dates: 1 s grain


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_pacer_goes_at_full_speed_while_plenty_remain() -> None:
    clock = Clock()
    pacer = RatePacer(clock=clock)
    assert pacer.delay() == 0.0  # nothing known yet
    pacer.observe({"x-ratelimit-limit": "100", "x-ratelimit-remaining": "50", "x-ratelimit-reset": "1"})
    assert [pacer.delay() for _ in range(40)] == [0.0] * 40


def test_pacer_spreads_the_last_tenth_over_the_rest_of_the_window() -> None:
    clock = Clock()
    pacer = RatePacer(clock=clock)
    pacer.observe({"x-ratelimit-limit": "100", "x-ratelimit-remaining": "10", "x-ratelimit-reset": "2"})
    waits = [pacer.delay() for _ in range(10)]
    assert waits == pytest.approx([i * 0.2 for i in range(10)])  # 10 left over 2 s: one every 0.2 s
    assert pacer.delay() == pytest.approx(2.0)  # none left: until the window resets


def test_pacer_with_none_left_waits_for_the_reset_then_goes_again() -> None:
    clock = Clock()
    pacer = RatePacer(clock=clock, wall=lambda: 1_700_000_000.0)
    pacer.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000003"})  # a Unix time
    assert pacer.delay() == pytest.approx(3.0)
    clock.now += 3.0
    assert pacer.delay() == 0.0  # a new window: full speed until an answer says otherwise


def test_pacer_ignores_answers_without_the_headers() -> None:
    pacer = RatePacer(clock=Clock())
    pacer.observe({"content-type": "application/json"})
    pacer.observe({"x-ratelimit-remaining": "many"})
    assert pacer.remaining is None and pacer.delay() == 0.0


def test_reset_in_epoch_milliseconds_regression() -> None:
    """``X-RateLimit-Reset`` as a Unix time in milliseconds was read as seconds: every later send of
    the process was held back for about 55,000 years."""
    pacer = RatePacer(clock=Clock(), wall=lambda: 1_700_000_000.0)
    pacer.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000003000"})
    assert pacer.delay() == pytest.approx(3.0)


@pytest.mark.parametrize("reset", ["1775731200000", "99999999", "1e300", "33000000000"])
def test_a_header_wait_is_bounded_regression(reset: str) -> None:
    """However a reset or a Retry-After is written (or misread), no wait from it passes the cap."""
    pacer = RatePacer(clock=Clock(), wall=lambda: 1_700_000_000.0)
    pacer.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    assert 0.0 <= pacer.delay() <= MAX_HEADER_WAIT
    assert retry_after_of(reset, orjson.dumps({"retryAfter": float(reset)})) == MAX_HEADER_WAIT


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ratelimit-remaining": "inf"},
        {"x-ratelimit-remaining": "1e400"},
        {"x-ratelimit-remaining": "nan"},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"},
        {"x-ratelimit-remaining": "3", "x-ratelimit-limit": "inf"},
        {"x-ratelimit-remaining": "3", "x-ratelimit-limit": "-1e400"},
    ],
)
def test_non_finite_header_numbers_are_absent_regression(headers: dict[str, str]) -> None:
    """``inf`` / ``1e400`` raised OverflowError out of observe(), so out of client.send and status:
    the dispatcher went fatal and the poller's task died. Such a number now counts as absent."""
    pacer = RatePacer(clock=Clock())
    pacer.observe(headers)
    assert pacer.limit is None
    assert pacer.delay() <= DEFAULT_WINDOW  # an unreadable reset is the default window
