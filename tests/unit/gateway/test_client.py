"""The httpx gateway client against the simulator over real HTTP: every answer maps to a typed result."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from typing import Any

import httpx
import pytest

from stream_app.contracts import Channel, RetryCommand, decode_command
from stream_app.gateway.client import (
    Accepted,
    Found,
    GatewayClient,
    NotFound,
    Permanent,
    RateLimited,
    Rejected,
    Transient,
    build_body,
    parse_retry_after,
)
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import free_port, running_simulator

SMS = {"sender": "Shop", "text": "hello", "destination": "+393401234500"}


def _command(**over: object) -> RetryCommand:
    base = {
        "commandId": "m-1:2",
        "messageId": "m-1",
        "attempt": 2,
        "channel": "SMS",
        "destination": "+393401234567",
        "content": {"sender": "BancaAdri", "text": "Gentile Giulia"},
        "reason": "FAILED",
        "issuedAt": "2026-04-09T08:15:01Z",
    }
    base.update(over)
    import orjson

    return decode_command(orjson.dumps(base))


def test_body_is_content_plus_destination_and_command_id_as_customer_id() -> None:
    assert build_body(_command()) == {
        "sender": "BancaAdri",
        "text": "Gentile Giulia",
        "destination": "+393401234567",
        "messageId": "m-1:2",
    }
    assert build_body(_command(simulation=True))["simulation"] is True


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    later = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


async def test_accepted_rejected_and_status_found() -> None:
    async with running_simulator(time_scale=0.2) as (_, base), GatewayClient(base, "test-key") as gw:
        assert await gw.send(Channel.SMS, {**SMS, "messageId": "a:0"}) == Accepted("a:0", 1)
        wa = {"destination": "+393401234501", "template": {"id": 1}, "messageId": "a:1"}
        assert await gw.send(Channel.WHATSAPP, wa) == Rejected(("RECIPIENT_NOT_ON_WHATSAPP",))

        async def delivered() -> Found:
            for _ in range(200):  # the scripted DELIVERED is due 0.2 s (scaled) after the send
                found = await gw.status("a:0", Channel.SMS)
                if isinstance(found, Found) and found.status == "DELIVERED":
                    return found
                await asyncio.sleep(0.05)
            raise AssertionError(f"a:0 never DELIVERED: last {found}")

        assert (await delivered()).occurred_at
        assert await gw.status("a:0", Channel.RCS) == NotFound()
        assert await gw.status("never:0", Channel.SMS) == NotFound()


async def test_http_failures_map_to_typed_results() -> None:
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "1", "rateLimit": 1, "retryAfter": 4},'
        b' {"destinationSuffix": "2", "fail": 1},'
        b' {"destinationSuffix": "3", "unapprovedTemplate": true}]}'
    )
    async with running_simulator(rules) as (_, base), GatewayClient(base, "test-key") as gw:
        assert await gw.send(Channel.SMS, {**SMS, "destination": "+393401234501"}) == RateLimited(4.0)
        five = await gw.send(Channel.SMS, {**SMS, "destination": "+393401234502"})
        assert isinstance(five, Transient) and five.maybe_sent and "500" in five.error
        wa = {"destination": "+393401234503", "template": {"id": 9}}
        assert await gw.send(Channel.WHATSAPP, wa) == Rejected(("Template not approved or not found",), 422)
        bad = await gw.send(Channel.SMS, {"destination": "nope"})
        assert isinstance(bad, Permanent) and bad.status == 400 and "destination" in bad.reason
    async with running_simulator() as (_, base), GatewayClient(base, "wrong-key") as gw:
        assert await gw.send(Channel.SMS, SMS) == Permanent(401, "invalid API key")


async def test_slow_answer_is_a_timeout_that_may_have_sent() -> None:
    rules = parse_rules(b'{"rules": [{"delay": 1.0}]}')
    async with running_simulator(rules) as (sim, base), GatewayClient(base, "test-key", timeout=0.2) as gw:
        result = await gw.send(Channel.SMS, {**SMS, "messageId": "slow:0"})
        assert isinstance(result, Transient) and result.maybe_sent and "Timeout" in result.error
        assert sim.state.sends["slow:0"] == 1  # the gateway did send: only the answer was lost


async def test_nothing_listening_is_transient_and_never_sent() -> None:
    async with GatewayClient(f"http://127.0.0.1:{free_port()}", "k", timeout=1) as gw:
        result = await gw.send(Channel.SMS, SMS)
        assert isinstance(result, Transient) and not result.maybe_sent
        status = await gw.status("x:0", Channel.SMS)
        assert isinstance(status, Transient)


async def test_api_key_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_simulator(api_key="s3cret-key") as (_, base), GatewayClient(base, "s3cret-key") as gw:
        assert isinstance(await gw.send(Channel.SMS, SMS), Accepted)
    assert "s3cret-key" not in caplog.text


async def test_a_429_waits_the_longer_of_header_and_body() -> None:
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "1", "rateLimit": 1, "retryAfter": 1, "retryAfterBody": 3},'
        b' {"destinationSuffix": "2", "rateLimit": 1, "retryAfter": null, "retryAfterBody": 2.5},'
        b' {"destinationSuffix": "3", "rateLimit": 1, "retryAfter": 4, "retryAfterBody": 0.5}]}'
    )
    async with running_simulator(rules) as (_, base), GatewayClient(base, "test-key") as gw:
        assert await gw.send(Channel.SMS, {**SMS, "destination": "+393401234501"}) == RateLimited(3.0)
        assert await gw.send(Channel.SMS, {**SMS, "destination": "+393401234502"}) == RateLimited(2.5)
        assert await gw.send(Channel.SMS, {**SMS, "destination": "+393401234503"}) == RateLimited(4.0)


async def test_rate_limit_headers_slow_the_client_down_before_a_429() -> None:
    """5 calls a second announced in X-RateLimit-*: 12 calls in a row get no 429, they take longer."""
    rules = parse_rules(b'{"rules": [], "limit": {"requests": 5, "windowSeconds": 0.5}}')
    async with running_simulator(rules) as (sim, base), GatewayClient(base, "test-key") as gw:
        started = time.monotonic()
        results = [await gw.send(Channel.SMS, {**SMS, "messageId": f"p{i}:0"}) for i in range(12)]
        elapsed = time.monotonic() - started
    assert all(isinstance(r, Accepted) for r in results), results
    assert sim.state.rate_limited == 0
    assert elapsed >= 0.9  # three windows of 0.5 s were needed: the client waited for two resets


async def test_a_spent_window_longer_than_the_pacing_cap_is_handed_back_without_a_call() -> None:
    rules = parse_rules(b'{"rules": [], "limit": {"requests": 2, "windowSeconds": 30}}')
    async with running_simulator(rules) as (sim, base), GatewayClient(base, "test-key") as gw:
        for i in range(2):
            assert isinstance(await gw.send(Channel.SMS, {**SMS, "messageId": f"h{i}:0"}), Accepted)
        held = await gw.send(Channel.SMS, {**SMS, "messageId": "h2:0"})
        assert isinstance(held, RateLimited) and held.held_back and held.retry_after is not None
        assert 25 < held.retry_after <= 30
        assert "h2:0" not in sim.state.calls  # nothing was sent: the gateway never saw it
        status = await gw.status("h0:0", Channel.SMS)
        assert isinstance(status, RateLimited) and status.held_back  # the status endpoint shares the window


def _mock(handler: Any, timeout: float = 10.0) -> GatewayClient:
    return GatewayClient("http://gw", "k", timeout=timeout, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        (5, ("NOT_ACCEPTED",)),
        ("BAD", ("BAD",)),
        (["A", 7, None, "B"], ("A", "B")),
        ({"x": 1}, ("NOT_ACCEPTED",)),
    ],
)
async def test_reasons_not_a_list_of_strings_regression(reasons: Any, expected: tuple[str, ...]) -> None:
    """``reasons: 5`` raised TypeError out of send (the dispatcher went fatal), and ``"BAD"`` was
    published as ["B", "A", "D"]: a lone string is one reason, non-strings are dropped."""
    answer = {"messageId": "a:0", "results": {"sms": {"accepted": False, "reasons": reasons}}}
    async with _mock(lambda request: httpx.Response(200, json=answer)) as gw:
        assert await gw.send(Channel.SMS, {"messageId": "a:0"}) == Rejected(expected)
    status = {"deliveryStatus": "ERROR", "reasons": reasons}
    async with _mock(lambda request: httpx.Response(200, json=status)) as gw:
        found = await gw.status("a:0", Channel.SMS)
        assert isinstance(found, Found) and found.reasons == tuple(r for r in expected if r != "NOT_ACCEPTED")


@pytest.mark.parametrize("code", [201, 202, 203])
async def test_any_2xx_send_answer_is_read_not_rejected_regression(code: int) -> None:
    """A 202 was REJECTED HTTP_202 (and then the processor fell back: a second message). The
    gateway's guide says 2XX is "accepted by the server", so any 2xx is read as an answer; one
    without a readable body may have sent."""
    answer = {"messageId": "prov-1", "results": {"sms": {"accepted": True}}}
    async with _mock(lambda request: httpx.Response(code, json=answer)) as gw:
        assert await gw.send(Channel.SMS, {"messageId": "a:0"}) == Accepted("prov-1")
    async with _mock(lambda request: httpx.Response(code)) as gw:
        empty = await gw.send(Channel.SMS, {"messageId": "a:0"})
        assert isinstance(empty, Transient) and empty.maybe_sent


async def test_a_trickled_answer_outlives_the_timeout_regression() -> None:
    """httpx's timeout is per read: an answer trickled slowly held a call for far longer than
    STREAM_APP_GATEWAY_TIMEOUT_SECONDS. Here the body never ends; the call still ends at the total,
    as a call that may have sent."""
    never = asyncio.Event()

    async def trickle() -> Any:
        yield b'{"messageId": '
        await never.wait()  # the rest never comes
        yield b"}"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=trickle())

    async with _mock(handler, timeout=0.05) as gw:
        result = await asyncio.wait_for(gw.send(Channel.SMS, {"messageId": "a:0"}), 30)
        assert isinstance(result, Transient) and result.maybe_sent
        status = await asyncio.wait_for(gw.status("a:0", Channel.SMS), 30)
        assert isinstance(status, Transient) and status.maybe_sent


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([{"channel": "sms", "accepted": True, "statusCode": 200}], Accepted("gw-1")),
        (
            [{"channel": "SMS", "accepted": False, "reasons": ["INVALID_DESTINATION"]}],
            Rejected(("INVALID_DESTINATION",)),
        ),
        ([{"channel": "rcs", "accepted": True}, {"channel": "sms", "accepted": True}], Accepted("gw-1")),
        ({"sms": {"accepted": True}, "rcs": None}, Accepted("gw-1")),
    ],
)
async def test_results_as_a_list_or_a_map_are_read(results: Any, expected: Any) -> None:
    """Both documented shapes of a send answer's ``results``: the Quick Start guide's list (each names
    its ``channel``) and seed page 001's map keyed by channel."""
    answer = {"messageId": "gw-1", "customerMessageId": "a:0", "results": results}
    async with _mock(lambda request: httpx.Response(200, json=answer)) as gw:
        assert await gw.send(Channel.SMS, {"messageId": "a:0"}) == expected


@pytest.mark.parametrize("results", [[{"channel": "whatsapp", "accepted": True}], [], [7], "sms", None])
async def test_results_without_the_channel_may_have_sent(results: Any) -> None:
    """Results that say nothing of the channel called: the send may have happened (the dispatcher
    asks the status endpoint before any resend), never a rejection that would fall back."""
    answer = {"messageId": "gw-1", "results": results}
    async with _mock(lambda request: httpx.Response(200, json=answer)) as gw:
        outcome = await gw.send(Channel.SMS, {"messageId": "a:0"})
        assert isinstance(outcome, Transient) and outcome.maybe_sent


async def test_a_connect_that_times_out_at_the_timeout_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx's connect timeout (the configured timeout) starts a moment after the whole-call bound;
    the bound must be longer, or it beats a connect that timed out and a call that never reached
    the gateway counts as "maybe sent" (a status look-up more, or SEND_OUTCOME_UNKNOWN when that
    fails too). Checked on the bound given, not on a race of real timers."""
    from stream_app.gateway import client as client_module

    bounds: list[float | None] = []
    real_timeout = asyncio.timeout

    def recorded(delay: float | None) -> asyncio.Timeout:
        bounds.append(delay)
        return real_timeout(delay)

    monkeypatch.setattr(client_module.asyncio, "timeout", recorded)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("connect timed out", request=request)

    async with _mock(handler, timeout=0.2) as gw:
        result = await gw.send(Channel.SMS, {"messageId": "a:0"})
        connect = gw._http.timeout.connect
    assert isinstance(result, Transient) and not result.maybe_sent, result
    assert connect == 0.2 and bounds and all(b is not None and b > connect for b in bounds), bounds
