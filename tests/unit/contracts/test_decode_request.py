"""Decode rules of ``send-requests`` records (SendRequest and CancelRequest).

Every bad input asserts the exact one-line reason, because that line is what an upstream team reads in
the ``__error.reason`` header of the dead-letter record: it must name the field and the rule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from stream_app.contracts import (
    CancelRequest,
    Channel,
    InvalidRecord,
    SendRequest,
    SuccessStatus,
    decode_request,
)

DEST = "+393401234567"


def send(**overrides: Any) -> dict[str, Any]:
    """A valid SendRequest body (the CONTRACT.md example, trimmed), with fields replaced or removed."""
    body: dict[str, Any] = {
        "messageId": "txn-notifica-20260409-001",
        "tenant": "banca-adriatica",
        "destination": DEST,
        "channels": [
            {"channel": "WHATSAPP", "fallbackAfter": 600, "successStatus": "DELIVERED", "content": {"a": 1}},
            {"channel": "RCS", "fallbackAfter": 300},
            {"channel": "SMS", "content": {"sender": "BancaAdri", "text": "Gentile Giulia"}},
        ],
        "requestedAt": "2026-04-09T10:15:00+02:00",
    }
    for key, value in overrides.items():
        if value is _DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


_DROP = object()


def raw(body: Any) -> bytes:
    return orjson.dumps(body)


def reason(data: bytes) -> str:
    with pytest.raises(InvalidRecord) as info:
        decode_request(data)
    return info.value.reason


# ------------------------------------------------------------------------------------------ good input


def test_contract_example_decodes_to_a_send_request() -> None:
    req = decode_request(raw(send()))
    assert isinstance(req, SendRequest)
    assert req.message_id == "txn-notifica-20260409-001"
    assert [s.channel for s in req.channels] == [Channel.WHATSAPP, Channel.RCS, Channel.SMS]
    assert req.channels[0].fallback_after == 600
    assert req.channels[1].fallback_after == 300
    assert req.channels[2].fallback_after is None
    assert req.channels[2].content == {"sender": "BancaAdri", "text": "Gentile Giulia"}


def test_type_is_optional_on_a_send_and_schema_version_defaults_to_1() -> None:
    req = decode_request(raw(send()))
    assert isinstance(req, SendRequest)
    assert req.type == "send"
    assert req.schema_version == 1


def test_success_status_defaults_to_delivered() -> None:
    req = decode_request(raw(send(channels=[{"channel": "SMS"}])))
    assert isinstance(req, SendRequest)
    assert req.channels[0].success_status is SuccessStatus.DELIVERED


@pytest.mark.parametrize("spelling", ["WhatsApp", "whatsapp", "WHATSAPP", " whatsApp "])
def test_channel_names_are_case_insensitive(spelling: str) -> None:
    req = decode_request(raw(send(channels=[{"channel": spelling}])))
    assert isinstance(req, SendRequest)
    assert req.channels[0].channel is Channel.WHATSAPP


@pytest.mark.parametrize(
    ("spelling", "level"), [("read", "READ"), ("Sent", "SENT"), ("accepted", "ACCEPTED")]
)
def test_success_status_is_case_insensitive(spelling: str, level: str) -> None:
    req = decode_request(raw(send(channels=[{"channel": "viber", "successStatus": spelling}])))
    assert isinstance(req, SendRequest)
    assert req.channels[0].success_status == SuccessStatus(level)


def test_canonical_upper_case_on_output() -> None:
    req = decode_request(raw(send(channels=[{"channel": "whatsApp", "successStatus": "read"}])))
    out = orjson.loads(req.model_dump_json(by_alias=True))
    assert out["channels"][0]["channel"] == "WHATSAPP"
    assert out["channels"][0]["successStatus"] == "READ"


@pytest.mark.parametrize("destination", ["+39340123", "+393401234567", "+123456789012345"])
def test_e164_destinations_of_8_to_15_digits_are_accepted(destination: str) -> None:
    req = decode_request(raw(send(destination=destination)))
    assert isinstance(req, SendRequest)
    assert req.destination == destination


@pytest.mark.parametrize("steps", [1, 8])
def test_chains_of_1_to_8_steps_are_accepted(steps: int) -> None:
    req = decode_request(raw(send(channels=[{"channel": "SMS"}] * steps)))
    assert isinstance(req, SendRequest)
    assert len(req.channels) == steps


def test_a_channel_may_appear_more_than_once() -> None:
    chain = [{"channel": "SMS", "content": {"sender": "A"}}, {"channel": "sms", "content": {"sender": "B"}}]
    req = decode_request(raw(send(channels=chain)))
    assert isinstance(req, SendRequest)
    assert [s.content["sender"] for s in req.channels] == ["A", "B"]


def test_fractional_fallback_after_is_accepted() -> None:
    req = decode_request(raw(send(channels=[{"channel": "SMS", "fallbackAfter": 0.25}])))
    assert isinstance(req, SendRequest)
    assert req.channels[0].fallback_after == 0.25


def test_ttl_alone_and_expires_at_alone_are_accepted() -> None:
    with_ttl = decode_request(raw(send(ttl=3600)))
    with_expiry = decode_request(raw(send(expiresAt="2026-04-09T11:15:00+02:00")))
    assert isinstance(with_ttl, SendRequest) and isinstance(with_expiry, SendRequest)
    assert with_ttl.ttl == 3600 and with_ttl.expires_at is None
    assert with_expiry.ttl is None
    assert with_expiry.expires_at == datetime(2026, 4, 9, 9, 15, tzinfo=UTC)


def test_unknown_fields_are_ignored_at_every_level() -> None:
    body = send(futureField={"x": 1})
    body["channels"][0]["priority"] = "high"
    body["initialAttempt"] = {"sentAt": "2026-04-09T10:15:00Z", "extra": True}
    req = decode_request(raw(body))
    assert isinstance(req, SendRequest)
    assert "futureField" not in req.model_dump(by_alias=True)
    assert req.initial_attempt is not None


def test_timestamps_keep_their_instant_whatever_the_offset() -> None:
    req = decode_request(raw(send(requestedAt="2026-04-09T10:15:00+02:00")))
    assert isinstance(req, SendRequest)
    assert req.requested_at == datetime(2026, 4, 9, 8, 15, tzinfo=UTC)
    assert req.requested_at is not None
    assert req.requested_at.utcoffset() == timedelta(hours=2)
    assert req.requested_at.tzinfo == timezone(timedelta(hours=2))


def test_initial_attempt_is_read() -> None:
    req = decode_request(
        raw(send(initialAttempt={"providerMessageId": "wa-1", "sentAt": "2026-04-09T10:15:00+02:00"}))
    )
    assert isinstance(req, SendRequest)
    assert req.initial_attempt is not None
    assert req.initial_attempt.provider_message_id == "wa-1"
    assert req.initial_attempt.sent_at == datetime(2026, 4, 9, 8, 15, tzinfo=UTC)


def test_explicit_schema_version_1_is_accepted() -> None:
    assert isinstance(decode_request(raw(send(schemaVersion=1))), SendRequest)


@pytest.mark.parametrize("spelling", ["send", "Send", "SEND"])
def test_type_send_is_case_insensitive(spelling: str) -> None:
    assert isinstance(decode_request(raw(send(type=spelling))), SendRequest)


# -------------------------------------------------------------------------------------------- cancels


@pytest.mark.parametrize("spelling", ["cancel", "Cancel", "CANCEL"])
def test_cancel_request_decodes(spelling: str) -> None:
    req = decode_request(raw({"type": spelling, "messageId": "m-1", "reason": "paid"}))
    assert req == CancelRequest(type="cancel", message_id="m-1", reason="paid")


def test_cancel_reason_is_optional_and_unknown_fields_ignored() -> None:
    req = decode_request(raw({"type": "cancel", "messageId": "m-1", "by": "ops"}))
    assert isinstance(req, CancelRequest)
    assert req.reason is None


def test_cancel_without_message_id() -> None:
    assert reason(raw({"type": "cancel"})) == "messageId: required"


def test_cancel_with_unknown_schema_version() -> None:
    assert reason(raw({"type": "cancel", "messageId": "m", "schemaVersion": 2})) == (
        "schemaVersion: unsupported version 2; this processor reads version 1"
    )


# ------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{nope", "not valid JSON: key must be a string at line 1 column 2"),
        (b"", "not valid JSON: EOF while parsing a value at line 1 column 0"),
        (b'{"messageId": "m",', "not valid JSON: EOF while parsing a value at line 1 column 18"),
    ],
    ids=["garbage", "empty", "truncated"],
)
def test_not_json(data: bytes, expected: str) -> None:
    assert reason(data) == expected


@pytest.mark.parametrize("data", [b"[1, 2]", b'"send"', b"null", b"42", b"true"])
def test_not_an_object(data: bytes) -> None:
    assert reason(data) == "record: must be a JSON object"


@pytest.mark.parametrize("field", ["messageId", "destination", "channels"])
def test_missing_required_field(field: str) -> None:
    assert reason(raw(send(**{field: _DROP}))) == f"{field}: required"


def test_missing_channel_of_a_step() -> None:
    assert reason(raw(send(channels=[{"fallbackAfter": 5}]))) == "channels.0.channel: required"


@pytest.mark.parametrize(
    "destination", ["3401234567", "+1234567", "+1234567890123456", "+39 340 1234567", "+39abc45678"]
)
def test_destination_not_e164(destination: str) -> None:
    assert reason(raw(send(destination=destination))) == "destination: must be E.164, '+' then 8 to 15 digits"


def test_empty_chain() -> None:
    assert (
        reason(raw(send(channels=[]))) == "channels: List should have at least 1 item after validation, not 0"
    )


def test_chain_of_nine_steps() -> None:
    assert reason(raw(send(channels=[{"channel": "SMS"}] * 9))) == (
        "channels: List should have at most 8 items after validation, not 9"
    )


def test_unknown_channel() -> None:
    assert reason(raw(send(channels=[{"channel": "SMS"}, {"channel": "FAX"}]))) == (
        "channels.1.channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'"
    )


@pytest.mark.parametrize("level", ["ERROR", "rejected", "EXPIRED", "bogus"])
def test_success_status_must_be_a_progress_status(level: str) -> None:
    assert reason(raw(send(channels=[{"channel": "SMS", "successStatus": level}]))) == (
        "channels.0.successStatus: Input should be 'ACCEPTED', 'SENT', 'DELIVERED' or 'READ'"
    )


@pytest.mark.parametrize("value", [0, -5])
def test_fallback_after_must_be_positive(value: int) -> None:
    assert reason(raw(send(channels=[{"channel": "SMS", "fallbackAfter": value}]))) == (
        "channels.0.fallbackAfter: Input should be greater than 0"
    )


def test_ttl_and_expires_at_together() -> None:
    assert reason(raw(send(ttl=10, expiresAt="2026-04-09T11:15:00+02:00"))) == (
        "ttl: give ttl or expiresAt, not both"
    )


def test_ttl_must_be_positive() -> None:
    assert reason(raw(send(ttl=-1))) == "ttl: Input should be greater than 0"


@pytest.mark.parametrize("field", ["requestedAt", "expiresAt"])
def test_timestamp_without_offset(field: str) -> None:
    assert reason(raw(send(**{field: "2026-04-09T10:15:00"}))) == f"{field}: Input should have timezone info"


def test_initial_attempt_sent_at_without_offset() -> None:
    body = send(initialAttempt={"sentAt": "2026-04-09T10:15:00"})
    assert reason(raw(body)) == "initialAttempt.sentAt: Input should have timezone info"


def test_initial_attempt_without_sent_at() -> None:
    assert reason(raw(send(initialAttempt={"providerMessageId": "x"}))) == "initialAttempt.sentAt: required"


def test_timestamp_that_is_not_a_date() -> None:
    assert reason(raw(send(requestedAt="yesterday"))) == (
        "requestedAt: Input should be a valid datetime or date, input is too short"
    )


@pytest.mark.parametrize("version", [0, 2])
def test_unsupported_schema_version(version: int) -> None:
    assert reason(raw(send(schemaVersion=version))) == (
        f"schemaVersion: unsupported version {version}; this processor reads version 1"
    )


@pytest.mark.parametrize("kind", ["blah", 5, None])
def test_unknown_type(kind: Any) -> None:
    assert reason(raw(send(type=kind))) == "type: must be 'send' or 'cancel'"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"destination": 393401234567}, "destination: Input should be a valid string"),
        ({"messageId": 5}, "messageId: Input should be a valid string"),
        ({"channels": {"channel": "SMS"}}, "channels: Input should be a valid array"),
        ({"channels": ["SMS"]}, "channels.0: Input should be an object"),
        ({"channels": [{"channel": "SMS", "content": [1]}]}, "channels.0.content: Input should be an object"),
        (
            {"channels": [{"channel": "SMS", "fallbackAfter": "soon"}]},
            "channels.0.fallbackAfter: Input should be a valid number, unable to parse string as a number",
        ),
        ({"metadata": [1]}, "metadata: Input should be an object"),
        ({"simulation": "maybe"}, "simulation: Input should be a valid boolean, unable to interpret input"),
        ({"ttl": "an hour"}, "ttl: Input should be a valid number, unable to parse string as a number"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else "",
)
def test_wrong_type(overrides: dict[str, Any], expected: str) -> None:
    assert reason(raw(send(**overrides))) == expected


def test_message_id_length() -> None:
    assert reason(raw(send(messageId=""))) == "messageId: String should have at least 1 character"
    assert reason(raw(send(messageId="x" * 201))) == "messageId: String should have at most 200 characters"


def test_several_errors_are_joined_on_one_line() -> None:
    body = {"destination": "1", "channels": [{"channel": "X"}]}
    assert reason(raw(body)) == (
        "messageId: required; destination: must be E.164, '+' then 8 to 15 digits; "
        "channels.0.channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'"
    )


def test_more_than_three_errors_are_counted_not_listed() -> None:
    body = {"destination": "1", "channels": [{"channel": "X"}, {"channel": "Y"}, {"channel": "Z"}]}
    assert reason(raw(body)) == (
        "messageId: required; destination: must be E.164, '+' then 8 to 15 digits; "
        "channels.0.channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'; and 2 more"
    )


@pytest.mark.parametrize(
    "data",
    [
        b"{nope",
        b"[]",
        raw(send(destination="x\ny")),
        raw({"destination": "1", "channels": [{"channel": "X"}] * 9}),
    ],
)
def test_every_reason_is_one_line(data: bytes) -> None:
    text = reason(data)
    assert text and "\n" not in text and "\r" not in text


# ------------------------------------------------------------------- the SendRequest fast path agrees


@pytest.mark.parametrize("kind", [" send", "send ", "\tSEND\n"])
def test_type_send_with_spaces_is_still_an_unknown_type(kind: str) -> None:
    # SendRequest's own type rule strips spaces; the union's discriminator does not, and it decides.
    assert reason(raw(send(type=kind))) == "type: must be 'send' or 'cancel'"


def test_type_key_spelled_with_an_escape_is_the_type() -> None:
    data = raw(send(type=" send")).replace(b'"type"', b'"t\\u0079pe"')
    assert reason(data) == "type: must be 'send' or 'cancel'"
    data = raw(send(type="Send")).replace(b'"type"', b'"t\\u0079pe"')
    assert isinstance(decode_request(data), SendRequest)


def test_a_type_inside_metadata_or_content_is_not_the_records_type() -> None:
    req = decode_request(raw(send(metadata={"type": "cancel"})))
    assert isinstance(req, SendRequest)
    assert req.metadata == {"type": "cancel"}


@pytest.mark.parametrize(
    "body",
    [
        send(),
        send(type="SEND", metadata={"note": "\u00e8 \\u"}),
        send(type=" send"),
        send(destination="12"),
        {"type": "cancel", "messageId": "m-1"},
        {"type": "Cancel"},
        [1, 2],
    ],
)
def test_decode_request_equals_the_union_alone(body: Any) -> None:
    from stream_app.contracts.codec import _REQUEST, _decode  # the one decoder before the fast path

    data = raw(body)
    try:
        expected: Any = _decode(_REQUEST, data)
    except InvalidRecord as exc:
        assert reason(data) == exc.reason
    else:
        got = decode_request(data)
        assert type(got) is type(expected)
        assert got == expected
        assert got.model_fields_set == expected.model_fields_set


@pytest.mark.parametrize("destination", ["+393401234567\n", "+393401234567\r\n", "\n+393401234567"])
def test_destination_with_a_newline_is_not_e164(destination: str) -> None:
    """Regression (issue 9): ``$`` matched before a trailing newline: ``"+39...\\n"`` reached the gateway."""
    assert reason(raw(send(destination=destination))) == "destination: must be E.164, '+' then 8 to 15 digits"


@pytest.mark.parametrize("value", [1712650000, 1712650000.5, "1712650000", "1712650000.5"])
@pytest.mark.parametrize("field", ["requestedAt", "expiresAt"])
def test_epoch_numbers_are_not_rfc3339_timestamps(field: str, value: Any) -> None:
    """Regression (issue 9): pydantic reads a number (or a string of digits) as Unix time; CONTRACT.md
    says RFC 3339, and a producer sending epoch seconds (or milliseconds) should hear so, not have its
    timestamps guessed."""
    assert reason(raw(send(**{field: value}))) == (
        f"{field}: must be an RFC 3339 timestamp with an offset, e.g. 2026-04-09T10:15:00+02:00"
    )


def test_initial_attempt_sent_at_as_epoch_number_is_refused() -> None:
    body = send(initialAttempt={"sentAt": 1712650000})
    assert reason(raw(body)).startswith("initialAttempt.sentAt: must be an RFC 3339 timestamp")


@pytest.mark.parametrize(
    "value", ["2026-04-09T10:15:00Z", "2026-04-09T10:15:00.123+02:00", "2026-04-09t10:15:00z"]
)
def test_rfc3339_timestamps_still_decode(value: str) -> None:
    assert decode_request(raw(send(requestedAt=value))).requested_at is not None


@pytest.mark.parametrize("keys", [("fallbackSms",), ("fallbackRcs", "fallbackSms")])
def test_content_that_starts_the_gateways_own_chain_is_refused(keys: tuple[str, ...]) -> None:
    """Issue 9, item 4 (UC-005): the gateway would send RCS/SMS itself, then our chain again."""
    content = {"template": {"id": 1}} | {k: {"sender": "S", "text": "t"} for k in keys}
    body = send(
        channels=[{"channel": "WHATSAPP", "content": content}, {"channel": "SMS", "content": {"text": "t"}}]
    )
    why = reason(raw(body))
    assert why.startswith(f"channels.0.content: {' and '.join(keys)} would make the gateway run its own")
    assert "list RCS and SMS as steps of channels instead" in why


@pytest.mark.parametrize(
    ("data", "sent"),
    [
        # The last of two "type" keys is the one the parser keeps, in the fast path as in the union.
        (
            b'{"type":"send","type":" send","messageId":"m","destination":"+393401234567",'
            b'"channels":[{"channel":"SMS"}]}',
            False,
        ),
        (
            b'{"type":" send","type":"send","messageId":"m","destination":"+393401234567",'
            b'"channels":[{"channel":"SMS"}]}',
            True,
        ),
        (
            b'{"t\\u0079pe":" send","messageId":"m","destination":"+393401234567",'
            b'"channels":[{"channel":"SMS"}]}',
            False,
        ),
    ],
)
def test_the_fast_path_reads_the_type_the_union_reads(data: bytes, sent: bool) -> None:
    from stream_app.contracts.codec import _REQUEST, _decode

    if sent:
        assert decode_request(data) == _decode(_REQUEST, data)
    else:
        with pytest.raises(InvalidRecord, match="type: must be 'send' or 'cancel'"):
            _decode(_REQUEST, data)
        assert reason(data) == "type: must be 'send' or 'cancel'"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"requestedAt": "9000-01-01T00:00:00Z"},
            "requestedAt: Input should be less than 9000-01-01T00:00:00Z",
        ),
        ({"expiresAt": "9999-12-31T23:59:59Z", "requestedAt": _DROP}, "expiresAt: Input should be less than"),
        (
            {"initialAttempt": {"sentAt": "9999-12-31T23:59:59-23:59"}},
            "initialAttempt.sentAt: Input should be less than 9000-01-01T00:00:00Z",
        ),
        (
            {"requestedAt": "0001-01-01T00:00:00+00:01"},
            "requestedAt: Input should be greater than or equal to",
        ),
    ],
)
def test_an_instant_outside_what_the_core_can_write_back_is_refused_regression(
    overrides: dict[str, Any], expected: str
) -> None:
    # Accepted before, such a request issued its commands and then never got its outcome: building
    # the outcome's times failed on every try (an initialAttempt.sentAt in year 9999).
    assert reason(raw(send(**overrides))).startswith(expected)
