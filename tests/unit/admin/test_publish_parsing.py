"""Building requests from flags and files for ``stream-app send``: every rule and its one-line refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from stream_app.admin.errors import InvalidInput
from stream_app.admin.publish import (
    apply_contents,
    cancel_request,
    parse_chain,
    parse_records,
    parse_requests,
    request_from_flags,
)
from stream_app.contracts import CancelRequest, Channel, SendRequest, SuccessStatus

DEST = "+393401234567"
NOW = datetime(2026, 4, 9, 8, 15, tzinfo=UTC)


def refusal(call: object, *args: object, **kwargs: object) -> str:
    assert callable(call)
    with pytest.raises(InvalidInput) as info:
        call(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_chain_syntax() -> None:
    assert parse_chain("WHATSAPP:600:DELIVERED,RCS:300,SMS") == [
        {"channel": "WHATSAPP", "fallbackAfter": 600.0, "successStatus": "DELIVERED"},
        {"channel": "RCS", "fallbackAfter": 300.0},
        {"channel": "SMS"},
    ]
    assert parse_chain(" whatsapp : 0.5 : read , sms::sent , viber:-") == [
        {"channel": "whatsapp", "fallbackAfter": 0.5, "successStatus": "read"},
        {"channel": "sms", "successStatus": "sent"},
        {"channel": "viber"},
    ]


@pytest.mark.parametrize(
    ("chain", "expected"),
    [
        ("SMS,,RCS", "--chain step 1 '': expected CHANNEL[:FALLBACK_AFTER[:SUCCESS_STATUS]]"),
        ("SMS:1:SENT:x", "--chain step 0 'SMS:1:SENT:x': expected CHANNEL[:FALLBACK_AFTER[:SUCCESS_STATUS]]"),
        ("SMS:soon", "--chain step 0: fallbackAfter 'soon' is not a number of seconds"),
    ],
)
def test_bad_chain_syntax(chain: str, expected: str) -> None:
    assert refusal(parse_chain, chain) == expected


def test_contents_by_step_channel_and_default() -> None:
    steps = parse_chain("WHATSAPP,SMS,SMS,RCS")
    apply_contents(steps, ['{"d": 1}', 'sms={"s": 1}', '2={"i": 2}'])
    assert [s.get("content") for s in steps] == [{"d": 1}, {"s": 1}, {"i": 2}, {"d": 1}]


def test_contents_without_default_leave_other_steps_empty() -> None:
    steps = parse_chain("WHATSAPP,SMS")
    apply_contents(steps, ['SMS={"text": "a=b"}'])
    assert steps == [{"channel": "WHATSAPP"}, {"channel": "SMS", "content": {"text": "a=b"}}]


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (["VIBER={}"], "--content-json VIBER=: no step of the chain uses channel VIBER"),
        (["5={}"], "--content-json 5=: the chain has no step 5"),
        (["[1]"], "--content-json: must be a JSON object"),
        (
            ["SMS=nope"],
            "--content-json SMS=: not valid JSON: invalid literal, expected 'null': line 1 column 1 (char 0)",
        ),
    ],
)
def test_bad_contents(contents: list[str], expected: str) -> None:
    assert refusal(apply_contents, parse_chain("SMS"), contents) == expected


def test_request_from_flags() -> None:
    req = request_from_flags(
        message_id="m-1",
        destination=DEST,
        chain="WhatsApp:600,sms",
        contents=['SMS={"text": "hi"}'],
        ttl=3600,
        tenant="t",
        campaign_id="c",
        simulation=True,
        metadata_json='{"k": "v"}',
        now=NOW,
    )
    assert req.message_id == "m-1" and req.destination == DEST
    assert [s.channel for s in req.channels] == [Channel.WHATSAPP, Channel.SMS]
    assert req.channels[0].fallback_after == 600 and req.channels[0].success_status is SuccessStatus.DELIVERED
    assert req.channels[1].content == {"text": "hi"}
    assert (req.ttl, req.tenant, req.campaign_id, req.simulation, req.metadata) == (
        3600,
        "t",
        "c",
        True,
        {"k": "v"},
    )
    assert req.requested_at == NOW


def test_request_from_flags_makes_a_message_id() -> None:
    a = request_from_flags(message_id=None, destination=DEST, chain="SMS")
    b = request_from_flags(message_id=None, destination=DEST, chain="SMS")
    assert a.message_id.startswith("cli-") and a.message_id != b.message_id


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"destination": None, "chain": None},
            "--destination and --chain required (or give the request with --file)",
        ),
        ({"chain": None}, "--chain required (or give the request with --file)"),
        ({"destination": "0039340"}, "request: destination: must be E.164, '+' then 8 to 15 digits"),
        (
            {"chain": "FAX"},
            "request: channels.0.channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'",
        ),
        (
            {"chain": ",".join(["SMS"] * 9)},
            "request: channels: List should have at most 8 items after validation, not 9",
        ),
        ({"chain": "SMS:0"}, "request: channels.0.fallbackAfter: Input should be greater than 0"),
        ({"ttl": 5, "expires_at": "2026-04-09T11:00:00Z"}, "request: ttl: give ttl or expiresAt, not both"),
        ({"expires_at": "2026-04-09T11:00:00"}, "request: expiresAt: Input should have timezone info"),
        ({"metadata_json": "[]"}, "--metadata-json: must be a JSON object"),
    ],
)
def test_request_from_flags_refusals(kwargs: dict[str, object], expected: str) -> None:
    base: dict[str, object] = {"message_id": "m", "destination": DEST, "chain": "SMS"}
    assert refusal(request_from_flags, **{**base, **kwargs}) == expected


def test_cancel_request() -> None:
    assert cancel_request("m-1", "paid") == CancelRequest(type="cancel", message_id="m-1", reason="paid")
    assert cancel_request("m-1").reason is None
    assert refusal(cancel_request, "") == "cancel: messageId: String should have at least 1 character"


def body(message_id: str) -> dict[str, object]:
    return {"messageId": message_id, "destination": DEST, "channels": [{"channel": "SMS"}]}


def test_parse_one_object_an_array_and_json_lines() -> None:
    one = parse_requests(orjson.dumps(body("a")))
    many = parse_requests(orjson.dumps([body("a"), {"type": "cancel", "messageId": "b"}]))
    lines = parse_requests(b"\n".join(orjson.dumps(body(m)) for m in "abc") + b"\n\n")
    assert [r.message_id for r in one] == ["a"]
    assert [type(r) for r in many] == [SendRequest, CancelRequest]
    assert [r.message_id for r in lines] == ["a", "b", "c"]


def test_records_keep_the_json_as_written() -> None:
    written = {**body("a"), "channels": [{"channel": "whatsapp"}], "newField": {"x": 1}}
    [prepared] = parse_records(orjson.dumps(written, option=orjson.OPT_INDENT_2))
    assert prepared.value == orjson.dumps(written)
    assert isinstance(prepared.request, SendRequest)
    assert prepared.request.channels[0].channel is Channel.WHATSAPP


def test_pretty_printed_object_is_one_request() -> None:
    text = orjson.dumps(body("a"), option=orjson.OPT_INDENT_2)
    assert [r.message_id for r in parse_requests(text)] == ["a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"", "req.json: empty, expected a JSON request object"),
        (b"[]", "req.json: empty array, expected at least one request"),
        (
            b"{nope",
            "req.json: not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
        ),
        (b'{"messageId": "a"}', "req.json: destination: required; channels: required"),
        (b"[1]", "req.json item 0: record: must be a JSON object"),
        (
            orjson.dumps(body("a")) + b"\n" + orjson.dumps({**body("b"), "destination": "x"}),
            "req.json line 2: destination: must be E.164, '+' then 8 to 15 digits",
        ),
        (
            orjson.dumps(body("a")) + b"\n{oops",
            "req.json line 2: not valid JSON: unexpected character, expected a string key: "
            "line 1 column 2 (char 1)",
        ),
    ],
    ids=["empty", "empty-array", "not-json", "missing", "not-object", "bad-line", "broken-line"],
)
def test_parse_refusals_name_the_record(text: bytes, expected: str) -> None:
    assert refusal(parse_requests, text, "req.json") == expected


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"chain": "WHATSAPP:nan,SMS"}, "--chain step 0: fallbackAfter 'nan' is not a number of seconds"),
        ({"chain": "SMS:inf"}, "--chain step 0: fallbackAfter 'inf' is not a number of seconds"),
        ({"ttl": float("nan")}, "--ttl: must be a number of seconds, got nan"),
        ({"ttl": float("inf")}, "--ttl: must be a number of seconds, got inf"),
    ],
)
def test_nan_or_inf_was_sent_as_absent_regression(kwargs: dict[str, object], expected: str) -> None:
    """orjson writes nan/inf as null, which the contract reads as "no ttl" / "no fallbackAfter": the
    request was sent (exit 0) with the value silently dropped."""
    base: dict[str, object] = {"message_id": "m", "destination": DEST, "chain": "SMS"}
    assert refusal(request_from_flags, **{**base, **kwargs}) == expected
