"""The gateway simulator over real HTTP: the API shapes of the seed pages and the scripted behaviours."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from stream_app.contracts import Channel
from stream_app.gateway import simulator
from stream_app.gateway.errors import PortInUse, RulesError
from stream_app.gateway.serve import bind
from stream_app.gateway.simulator import load_rules, parse_rules
from stream_app.gateway.testing import running_simulator

KEY = {"X-Api-Key": "test-key"}
SMS = {"sender": "Shop", "text": "hello"}


async def _post(base: str, channel: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as http:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        sent = KEY if headers is None else headers
        return await http.post(f"/api/message-server/{channel}/send", content=content, headers=sent)


async def _status(base: str, cid: str, channel: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base) as http:
        return await http.get(
            f"/api/partner-gateway/v1/messages/status/{cid}", params={"channel": channel}, headers=KEY
        )


class FrozenMonotonic:
    """The simulator's timeline on a clock the test moves: no wall-clock race on a busy machine."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return time.time()


async def test_sms_accepted_then_delivered_with_echoed_customer_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # "ACCEPTED until the first status" on a clock that stands still until the test moves it
    clock = FrozenMonotonic()
    monkeypatch.setattr(simulator, "time", clock)
    rules = parse_rules(
        b'{"rules": [{"statuses": [{"status": "SENT", "after": 1}, {"status": "DELIVERED", "after": 1}]}]}'
    )
    async with running_simulator(rules) as (sim, base):
        r = await _post(base, "sms", {"destination": "+393401234500", "messageId": "m1:0", **SMS})
        assert r.status_code == 200
        assert r.json() == {
            "messageId": "m1:0",
            "simulation": False,
            "results": {"sms": {"accepted": True, "reasons": [], "parts": 1}},
        }
        assert (await _status(base, "m1:0", "SMS")).json()["deliveryStatus"] == "ACCEPTED"
        clock.now += 0.999
        assert (await _status(base, "m1:0", "SMS")).json()["deliveryStatus"] == "ACCEPTED"
        clock.now += 0.001
        assert (await _status(base, "m1:0", "SMS")).json()["deliveryStatus"] == "DELIVERED"
        assert sim.state.sends["m1:0"] == 1


async def test_send_answer_in_the_quick_start_list_shape() -> None:
    """``"sendAnswer": "list"``: the Quick Start guide's answer (tests/data/gateway/
    send-quickstart-list-accepted.json), which the gateway client reads like the map shape."""
    from stream_app.gateway.client import Accepted, GatewayClient, Rejected

    rules = parse_rules(
        b'{"sendAnswer": "list", "rules": [{"destinationSuffix": "01", "reject": ["INVALID_DESTINATION"]}]}'
    )
    async with running_simulator(rules) as (sim, base):
        r = await _post(base, "sms", {"destination": "+393401234500", "messageId": "m1:0", **SMS})
        answer = r.json()
        gateway_id = sim.state.messages[("m1:0", Channel.SMS)].gateway_id
        assert answer == {
            "messageId": gateway_id,
            "customerMessageId": "m1:0",
            "simulation": False,
            "results": [
                {
                    "phoneNumber": "+393401234500",
                    "channel": "sms",
                    "accepted": True,
                    "reasons": [],
                    "parts": 1,
                    "statusCode": 200,
                }
            ],
        }
        async with GatewayClient(base, "test-key") as gw:
            sent = await gw.send(Channel.SMS, {"destination": "+393401234500", "messageId": "m2:0", **SMS})
            refused = await gw.send(Channel.SMS, {"destination": "+393401234501", "messageId": "m3:0", **SMS})
        assert isinstance(sent, Accepted) and sent.provider_message_id not in ("", "m2:0")
        assert refused == Rejected(("INVALID_DESTINATION",))


async def test_missing_or_wrong_api_key_is_401() -> None:
    async with running_simulator() as (_, base):
        body = {"destination": "+393401234500", **SMS}
        assert (await _post(base, "sms", body, headers={})).status_code == 401
        assert (await _post(base, "sms", body, headers={"X-Api-Key": "nope"})).status_code == 401
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.get("/api/partner-gateway/v1/messages/status/x?channel=SMS")
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("channel", "body", "reason"),
    [
        ("sms", b"{not json", "not valid JSON"),
        ("sms", b"[1, 2]", "must be a JSON object"),
        ("sms", {"sender": "S", "text": "t"}, "destination: required"),
        ("sms", {"destination": "3934", "sender": "S", "text": "t"}, "destination: must be E.164"),
        ("sms", {"destination": 5, "sender": "S", "text": "t"}, "destination"),
        ("sms", {"destination": "+393401234500", "text": "t"}, "sender: required"),
        ("sms", {"destination": "+393401234500", "sender": "S"}, "text: required"),
        ("whatsapp", {"destination": "+393401234500"}, "template: required"),
        ("rcs", {"destination": "+393401234500", "templateId": 1}, "agentId: required"),
        ("sms", {"destination": "+393401234500", "messageId": "", **SMS}, "messageId"),
        ("sms", {"destination": "+393401234500", "simulation": "maybe", **SMS}, "simulation"),
    ],
)
async def test_malformed_bodies_are_400_never_5xx(channel: str, body: Any, reason: str) -> None:
    async with running_simulator() as (sim, base):
        r = await _post(base, channel, body)
        assert r.status_code == 400, r.text
        assert reason in r.json()["error"]
        assert sum(sim.state.sends.values()) == 0


async def test_oversized_body_is_413_and_unknown_channel_404() -> None:
    async with running_simulator() as (_, base):
        big = orjson.dumps({"destination": "+393401234500", "sender": "S", "text": "x" * (2 << 20)})
        assert (await _post(base, "sms", big)).status_code == 413
        assert (await _post(base, "fax", {"destination": "+393401234500"})).status_code == 404


async def test_default_rules_reject_whatsapp_for_suffix_01_and_rcs_agent_not_reachable() -> None:
    async with running_simulator() as (_, base):
        r = await _post(base, "whatsapp", {"destination": "+393401234501", "template": {"id": 1}})
        no_wa = {"accepted": False, "reasons": ["RECIPIENT_NOT_ON_WHATSAPP"]}
        assert r.json()["results"]["whatsapp"] == no_wa
        r = await _post(base, "rcs", {"destination": "+393401234504", "agentId": 1, "templateId": 2})
        assert r.json()["results"]["rcs"]["reasons"] == ["AGENT_NOT_REACHABLE"]
        r = await _post(base, "sms", {"destination": "+393401234509", **SMS})
        assert r.json()["results"]["sms"] == {"accepted": False, "reasons": ["INVALID_DESTINATION"]}
        r = await _post(base, "sms", {"destination": "+393401234504", **SMS})
        assert r.json()["results"]["sms"]["parts"] == 2


async def test_error_and_expired_carry_status_codes_6_and_8() -> None:
    async with running_simulator(time_scale=0.02) as (_, base):
        for dest, cid in (("+393401234503", "e:0"), ("+393401234506", "x:0")):
            body = {"destination": dest, "messageId": cid, "template": {"id": 1}}
            assert (await _post(base, "whatsapp", body)).status_code == 200
        await asyncio.sleep(0.05)
        err = (await _status(base, "e:0", "WHATSAPP")).json()
        exp = (await _status(base, "x:0", "WHATSAPP")).json()
        assert (err["deliveryStatus"], err["statusCode"]) == ("ERROR", 6)
        assert (exp["deliveryStatus"], exp["statusCode"]) == ("EXPIRED", 8)
        assert (await _status(base, "e:0", "SMS")).status_code == 404
        assert (await _status(base, "e:0", "FAX")).status_code == 400


async def test_stuck_in_sent_and_read_after_n_seconds() -> None:
    async with running_simulator(time_scale=0.02) as (_, base):
        for dest, cid in (("+393401234502", "s:0"), ("+393401234505", "r:0")):
            await _post(base, "whatsapp", {"destination": dest, "messageId": cid, "template": {"id": 1}})
        await asyncio.sleep(0.1)
        assert (await _status(base, "s:0", "WHATSAPP")).json()["deliveryStatus"] == "SENT"
        read = (await _status(base, "r:0", "WHATSAPP")).json()
        assert read["deliveryStatus"] == "READ" and read["readDate"]


async def test_scripted_429_burst_then_500_then_success() -> None:
    rules = parse_rules(b'{"rules": [{"rateLimit": 2, "retryAfter": 3, "fail": 1}]}')
    async with running_simulator(rules) as (sim, base):
        body = {"destination": "+393401234500", "messageId": "b:0", **SMS}
        codes = [(await _post(base, "sms", body)).status_code for _ in range(4)]
        assert codes == [429, 429, 500, 200]
        r = await _post(base, "sms", {**body, "messageId": "b:1"})
        assert r.status_code == 200
        assert sim.state.sends == {"b:0": 1, "b:1": 1}
        assert sim.state.calls["b:0"] == 4


async def test_retry_after_header_and_unapproved_template_422() -> None:
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "1", "rateLimit": 1, "retryAfter": 3},'
        b' {"destinationSuffix": "2", "unapprovedTemplate": true}]}'
    )
    async with running_simulator(rules) as (_, base):
        r = await _post(base, "sms", {"destination": "+393401234501", **SMS})
        assert (r.status_code, r.headers["retry-after"]) == (429, "3")
        r = await _post(base, "whatsapp", {"destination": "+393401234502", "template": {"id": 9}})
        assert r.status_code == 422 and "Template not approved" in r.json()["error"]


async def test_simulation_flag_sends_nothing() -> None:
    async with running_simulator() as (sim, base):
        body = {"destination": "+393401234500", "messageId": "d:0", "simulation": True, **SMS}
        r = await _post(base, "sms", body)
        assert r.json()["simulation"] is True and r.json()["results"]["sms"]["accepted"] is True
        assert sim.state.sends == {}


async def test_rules_put_and_sends_endpoint() -> None:
    async with running_simulator() as (_, base), httpx.AsyncClient(base_url=base) as http:
        bad = await http.put("/_sim/rules", content=b'{"rules": [{"fail": -1}]}')
        assert bad.status_code == 400 and "fail" in bad.json()["error"]
        ok = await http.put("/_sim/rules", content=b'{"rules": [{"reject": ["NOPE"]}]}')
        assert ok.status_code == 200
        r = await _post(base, "sms", {"destination": "+393401234500", "messageId": "p:0", **SMS})
        assert r.json()["results"]["sms"]["reasons"] == ["NOPE"]
        assert (await http.get("/_sim/sends")).json()["sends"] == {"p:0": 1}


def test_rules_file_errors_name_the_file_and_field(tmp_path: Any) -> None:
    bad = tmp_path / "rules.json"
    bad.write_text('{"rules": [{"channel": "FAX"}]}')
    with pytest.raises(RulesError, match=r"rules.json: rules.0.channel"):
        load_rules(bad)
    bad.write_text("{oops")
    with pytest.raises(RulesError, match="not valid JSON"):
        load_rules(bad)
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.json")
    assert len(load_rules(None).rules) > 10


def test_taken_port_is_a_one_line_error() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{port}"):
            bind("127.0.0.1", port)
    finally:
        sock.close()


async def test_received_unknown_and_delivered_code_3_on_the_status_endpoint() -> None:
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "1", "statuses": [{"status": "RECEIVED", "after": 0}]},'
        b' {"destinationSuffix": "2", "statuses": [{"status": "UNKNOWN", "after": 0}]},'
        b' {"destinationSuffix": "3", "statuses": [{"status": "DELIVERED", "after": 0},'
        b' {"status": "INBOUND", "after": 0}]}]}'
    )
    async with running_simulator(rules) as (_, base):
        for suffix in "123":
            await _post(
                base, "sms", {**SMS, "destination": f"+39340123450{suffix}", "messageId": f"s{suffix}:0"}
            )
        answers = [(await _status(base, f"s{n}:0", "SMS")).json() for n in "123"]
    assert [a["deliveryStatus"] for a in answers] == [
        "RECEIVED",
        "UNKNOWN",
        "DELIVERED",
    ]  # a reply is no status
    assert answers[2]["statusCode"] == 3 and "statusCode" not in answers[0]


async def test_rate_limit_window_headers_and_retry_after_in_the_body() -> None:
    rules = parse_rules(b'{"rules": [], "limit": {"requests": 2, "windowSeconds": 5}}')
    async with running_simulator(rules) as (sim, base):
        answers = [await _post(base, "sms", {**SMS, "destination": "+393401234500"}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "2" for a in answers)
    assert 0 < float(answers[2].headers["X-RateLimit-Reset"]) <= 5
    wait = answers[2].json()["retryAfter"]
    assert 0 < wait <= 5 and float(answers[2].headers["Retry-After"]) == wait
    assert sim.state.rate_limited == 1


def _sim_message(sim: Any, cid: str) -> Any:
    return next(m for (c, _), m in sim.state.messages.items() if c == cid)


@pytest.mark.parametrize("style", ["status", "events", "legacy"])
async def test_callback_styles_follow_the_documented_shapes(style: str) -> None:
    rules = parse_rules(
        b'{"rules": [{"statuses": [{"status": "SENT", "after": 0}, {"status": "DELIVERED", "after": 0},'
        b' {"status": "READ", "after": 0}, {"status": "ERROR", "after": 0, "reasons": ["X"]},'
        b' {"status": "INBOUND", "after": 0}]}]}'
    )
    async with running_simulator(rules) as (sim, base):
        body = {"destination": "+393401234500", "messageId": "c:0", "template": {"id": 1}}
        await _post(base, "whatsapp", body)
        sim.webhook_style = style
        msg = _sim_message(sim, "c:0")
        shapes = {step.status: sim._callback(msg, step, msg.accepted_at) for step in msg.steps}
    if style == "events":
        assert shapes["SENT"] is None  # no documented event for SENT
        assert shapes["DELIVERED"] is not None and shapes["DELIVERED"]["eventType"] == "DELIVERY"
        assert shapes["DELIVERED"]["statusCode"] == 3 and shapes["DELIVERED"]["customerMessageId"] == "c:0"
        assert shapes["READ"] is not None and "customerMessageId" not in shapes["READ"]
        assert shapes["READ"]["messageId"] == msg.gateway_id != "c:0"
        assert shapes["ERROR"] is not None and shapes["ERROR"]["statusCode"] == 6
        assert shapes["INBOUND"] is not None and shapes["INBOUND"]["eventType"] == "INBOUND"
    elif style == "legacy":
        assert shapes["SENT"] is not None and shapes["SENT"]["status"] == "SENT"
        assert shapes["SENT"]["channel"] == "whatsapp" and shapes["SENT"]["error"] is None
        assert shapes["ERROR"] is not None and shapes["ERROR"]["error"] == "X"
        assert shapes["INBOUND"] is None
    else:
        assert shapes["SENT"] is not None and shapes["SENT"]["customerMessageId"] == "c:0"
        assert shapes["INBOUND"] is None


def test_new_rule_fields_are_checked() -> None:
    with pytest.raises(RulesError, match=r"limit\.requests"):
        parse_rules(b'{"rules": [], "limit": {"requests": 0, "windowSeconds": 1}}')
    with pytest.raises(RulesError, match=r"rules\.0\.statuses\.0\.status"):
        parse_rules(b'{"rules": [{"statuses": [{"status": "LOST", "after": 0}]}]}')
    assert parse_rules(b'{"rules": [{"retryAfter": null, "retryAfterBody": 2}]}').rules[0].retry_after is None


async def test_a_channel_outage_fails_its_sends_and_status_calls_until_it_recovers() -> None:
    wa = {"destination": "+393401234500", "phoneNumberId": 5, "template": {"id": 42}}
    async with running_simulator() as (sim, base), httpx.AsyncClient(base_url=base) as http:
        assert (await _post(base, "whatsapp", {**wa, "messageId": "before:0"})).status_code == 200
        down = await http.put("/_sim/outages/WhatsApp", content=b'{"status": 500}')
        assert down.json() == {"channel": "WHATSAPP", "down": True, "status": 500, "delay": 0.0}
        r = await _post(base, "whatsapp", {**wa, "messageId": "during:0"})
        assert (r.status_code, r.json()["error"]) == (500, "WHATSAPP unavailable (simulated outage)")
        assert (await _status(base, "before:0", "WHATSAPP")).status_code == 500
        # only that channel: SMS sends and looks up as before
        assert (
            await _post(base, "sms", {"destination": "+393401234500", "messageId": "s:0", **SMS})
        ).is_success
        assert (await _status(base, "s:0", "SMS")).status_code == 200
        listed = (await http.get("/_sim/outages")).json()
        assert listed == {"outages": {"WHATSAPP": {"status": 500, "delay": 0.0, "calls": 2}}}
        recovered = await http.delete("/_sim/outages/whatsapp")
        assert recovered.json() == {"channel": "WHATSAPP", "down": False}
        assert (await _post(base, "whatsapp", {**wa, "messageId": "after:0"})).status_code == 200
        assert (await http.get("/_sim/outages")).json() == {"outages": {}}
    # nothing was sent during the outage
    assert set(sim.state.sends) == {"before:0", "s:0", "after:0"}


async def test_outage_requests_are_checked() -> None:
    async with running_simulator() as (_, base), httpx.AsyncClient(base_url=base) as http:
        assert (await http.put("/_sim/outages/fax")).status_code == 404
        bad = await http.put("/_sim/outages/sms", content=b'{"status": 404}')
        assert bad.status_code == 400 and "status" in bad.json()["error"]
        assert (await http.put("/_sim/outages/sms", content=b"{oops")).status_code == 400
        default = await http.put("/_sim/outages/sms")
        assert default.json()["status"] == 503


async def test_a_slow_outage_is_a_timeout_for_a_shorter_client_timeout() -> None:
    from stream_app.contracts import Channel
    from stream_app.gateway.breaker import CallOutcome, classify
    from stream_app.gateway.client import GatewayClient, Transient

    async with running_simulator() as (sim, base):
        sim.fail_channel(Channel.RCS, status=503, delay=2.0)
        async with GatewayClient(base, "test-key", timeout=0.2) as gw:
            body = {"destination": "+393401234500", "messageId": "slow:0", "agentId": 1, "templateId": 10}
            result = await gw.send(Channel.RCS, body)
            assert isinstance(result, Transient) and "Timeout" in result.error
            assert classify(result) is CallOutcome.FAILURE
            sim.recover_channel(Channel.RCS)
            assert classify(await gw.send(Channel.RCS, body)) is CallOutcome.SUCCESS


def test_gateway_sim_down_names_the_bad_channel(capsys: pytest.CaptureFixture[str]) -> None:
    from stream_app.cli import main

    assert main(["gateway-sim", "--port", "0", "--down", "FAX"]) == 2
    assert capsys.readouterr().err.strip() == (
        "stream-app: error: --down: channels are WHATSAPP, RCS, SMS, VIBER, got FAX"
    )


_PAST_64_BITS = b"100000000000000000000000000000"


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        (
            b'{"rules": [{"statuses": [{"status": "ERROR", "after": 0, "statusCode": '
            + _PAST_64_BITS
            + b"}]}]}",
            "statusCode",
        ),
        (b'{"rules": [{"parts": ' + _PAST_64_BITS + b"}]}", "parts"),
        (b'{"rules": [{"rateLimit": 1, "retryAfter": Infinity}]}', "retryAfter"),
        (b'{"rules": [{"rateLimit": 1, "retryAfterBody": Infinity}]}', "retryAfterBody"),
    ],
    ids=["statusCode", "parts", "retryAfter", "retryAfterBody"],
)
async def test_rules_the_simulator_cannot_answer_with_are_400_not_a_later_500_regression(
    rules: bytes, field: str
) -> None:
    """PUT /_sim/rules took a statusCode or parts past 64 bits (and an infinite retryAfter): the
    rules were stored, then the status endpoint (statusCode) or the send (parts, after recording the
    send) answered 500 because orjson cannot write such an int, and the header said
    ``Retry-After: inf``. Such rules are refused on arrival with a 400 naming the field."""
    async with running_simulator(load_rules(None)) as (_, base):
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.put("/_sim/rules", content=rules)
        assert r.status_code == 400 and field in r.json()["error"]
        r = await _post(base, "sms", {"destination": "+393401234500", "messageId": "m:0", **SMS})
        assert r.status_code == 200
        assert (await _status(base, "m:0", "SMS")).status_code == 200


async def _chunks(data: bytes, size: int = 64 * 1024):  # type: ignore[no-untyped-def]
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_control_endpoints_refuse_huge_bodies_with_413_regression() -> None:
    """PUT /_sim/rules and PUT /_sim/outages/{channel} read any body whole, with no limit: 2 MiB of
    valid rules were taken (200), and a body without Content-Length (chunked) of any size was held
    in memory before anything looked at it. They now stop reading past the send endpoint's 1 MiB
    (413), and so does the send endpoint for a chunked body, which it used to read whole first."""
    padding = [{"destinationSuffix": str(i), "reject": ["X" * 64]} for i in range(20_000)]
    huge_rules = orjson.dumps({"rules": padding})
    assert len(huge_rules) > simulator.MAX_BODY
    huge_outage = b'{"status": 503, "delay": 0' + b" " * (2 << 20) + b"}"
    huge_send = orjson.dumps({"destination": "+393401234500", "sender": "S", "text": "x" * (2 << 20)})
    async with running_simulator() as (sim, base), httpx.AsyncClient(base_url=base) as http:
        before = len(sim.state.rules.rules)
        r = await http.put("/_sim/rules", content=huge_rules)
        assert r.status_code == 413 and len(sim.state.rules.rules) == before
        r = await http.put("/_sim/rules", content=_chunks(huge_rules))
        assert r.status_code == 413 and len(sim.state.rules.rules) == before
        r = await http.put("/_sim/outages/sms", content=_chunks(huge_outage))
        assert r.status_code == 413 and not sim.state.outages
        r = await http.post("/api/message-server/sms/send", content=_chunks(huge_send), headers=KEY)
        assert r.status_code == 413 and not sim.state.sends


async def test_sms_universal_callbacks_speak_the_documented_shape_regression() -> None:
    """The SMS Universal API documents its own callback (Qlara, "AgileTelecom SMS Universal API",
    "Webhook — Delivery notifications", tests/data/gateway/webhook-sms-universal-delivery.json):
    ``eventType`` always DELIVERY, ``statusCode`` 3 or 6, ``statusDescription``, ``price``,
    ``numPart``/``totalParts`` and only ``messageId``. No webhook style of the simulator spoke it.
    ``--webhook-style universal`` pushes SMS statuses in exactly its fields, one callback per part,
    with ``messageId`` the id the send answer gave (seed page 000 polls the status with it);
    other channels, which that API does not cover, get the webhook guide's events."""
    from tests.support.gateway_data import payload

    documented = set(payload("webhook-sms-universal-delivery"))
    rules = parse_rules(
        b'{"rules": [{"parts": 2, "statuses": [{"status": "SENT", "after": 0},'
        b' {"status": "DELIVERED", "after": 0}, {"status": "ERROR", "after": 0}]}]}'
    )
    async with running_simulator(rules, webhook_style="universal") as (sim, base):
        await _post(base, "sms", {"destination": "+393401234500", "messageId": "u:0", **SMS})
        await _post(
            base, "whatsapp", {"destination": "+393401234500", "messageId": "w:0", "template": {"id": 1}}
        )
        sms, wa = _sim_message(sim, "u:0"), _sim_message(sim, "w:0")
        calls = {step.status: sim._callbacks(sms, step, sms.accepted_at) for step in sms.steps}
        wa_delivered = sim._callbacks(wa, wa.steps[1], wa.accepted_at)
    assert calls["SENT"] == []  # the API's eventType is always DELIVERY: no SENT callback
    delivered = calls["DELIVERED"]
    assert [set(c) for c in delivered] == [documented, documented]
    assert [(c["numPart"], c["totalParts"]) for c in delivered] == [(1, 2), (2, 2)]
    assert {(c["eventType"], c["channel"], c["messageId"], c["statusCode"]) for c in delivered} == {
        ("DELIVERY", "SMS", "u:0", 3)
    }
    assert {(c["statusCode"], c["statusDescription"]) for c in calls["ERROR"]} == {(6, "Not Delivered")}
    assert [c["eventType"] for c in wa_delivered] == ["DELIVERY"] and "customerMessageId" in wa_delivered[0]
