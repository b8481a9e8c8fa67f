"""Decode rules of ``delivery-status`` records, each bad input with its exact one-line reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stream_app.contracts import Channel, DeliveryStatus, InvalidRecord, Status, decode_status


def status(**overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "messageId": "txn-notifica-20260409-001",
        "attempt": 1,
        "channel": "RCS",
        "status": "ERROR",
        "statusCode": 6,
        "reasons": ["AGENT_NOT_REACHABLE"],
        "providerMessageId": "c9a4b32d",
        "occurredAt": "2026-04-09T10:15:04+02:00",
    }
    for key, value in overrides.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return orjson.dumps(body)


def reason(data: bytes) -> str:
    with pytest.raises(InvalidRecord) as info:
        decode_status(data)
    return info.value.reason


def test_contract_example_decodes() -> None:
    st = decode_status(status())
    assert st == DeliveryStatus(
        message_id="txn-notifica-20260409-001",
        attempt=1,
        channel=Channel.RCS,
        status=Status.ERROR,
        status_code=6,
        reasons=["AGENT_NOT_REACHABLE"],
        provider_message_id="c9a4b32d",
        occurred_at=datetime(2026, 4, 9, 8, 15, 4, tzinfo=UTC),
    )


def test_attempt_is_optional() -> None:
    assert decode_status(status(attempt=None)).attempt is None


def test_only_message_id_channel_and_status_are_required() -> None:
    st = decode_status(orjson.dumps({"messageId": "m", "channel": "sms", "status": "sent"}))
    assert (st.channel, st.status, st.reasons, st.occurred_at) == (Channel.SMS, Status.SENT, [], None)


@pytest.mark.parametrize(
    ("channel", "value", "expected"),
    [
        ("WhatsApp", "Delivered", (Channel.WHATSAPP, Status.DELIVERED)),
        ("viber", "read", (Channel.VIBER, Status.READ)),
    ],
)
def test_channel_and_status_are_case_insensitive(
    channel: str, value: str, expected: tuple[Channel, Status]
) -> None:
    st = decode_status(status(channel=channel, status=value))
    assert (st.channel, st.status) == expected


@pytest.mark.parametrize("value", ["ACCEPTED", "SENT", "DELIVERED", "READ", "REJECTED", "ERROR", "EXPIRED"])
def test_every_status_of_the_contract_is_read(value: str) -> None:
    assert decode_status(status(status=value.lower())).status == Status(value)


def test_unknown_fields_are_ignored() -> None:
    st = decode_status(status(price=0.05, gateway={"x": 1}))
    assert st.message_id == "txn-notifica-20260409-001"


def test_canonical_upper_case_out() -> None:
    out = orjson.loads(decode_status(status(channel="rcs", status="error")).model_dump_json(by_alias=True))
    assert (out["channel"], out["status"]) == ("RCS", "ERROR")


@pytest.mark.parametrize("field", ["messageId", "channel", "status"])
def test_missing_required_field(field: str) -> None:
    assert reason(status(**{field: None})) == f"{field}: required"


def test_unknown_status() -> None:
    assert reason(status(status="LOST")) == (
        "status: Input should be 'ACCEPTED', 'SENT', 'DELIVERED', 'READ', 'REJECTED', 'ERROR' or 'EXPIRED'"
    )


def test_unknown_channel() -> None:
    assert reason(status(channel="PIGEON")) == "channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'"


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (-1, "attempt: Input should be greater than or equal to 0"),
        (8, "attempt: Input should be less than 8"),
        (1.5, "attempt: Input should be a valid integer, got a number with a fractional part"),
        ("first", "attempt: Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_attempt_out_of_range_or_not_an_integer(attempt: Any, expected: str) -> None:
    assert reason(status(attempt=attempt)) == expected


def test_occurred_at_without_offset() -> None:
    assert reason(status(occurredAt="2026-04-09T10:15:04")) == "occurredAt: Input should have timezone info"


@pytest.mark.parametrize("value", [1712650000, "1712650000"])
def test_occurred_at_as_an_epoch_number_is_refused(value: Any) -> None:
    """Regression (issue 9): Unix time is not the contract's RFC 3339."""
    assert reason(status(occurredAt=value)).startswith("occurredAt: must be an RFC 3339 timestamp")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"reasons": "AGENT_NOT_REACHABLE"}, "reasons: Input should be a valid array"),
        (
            {"statusCode": "six"},
            "statusCode: Input should be a valid integer, unable to parse string as an integer",
        ),
        ({"messageId": 7}, "messageId: Input should be a valid string"),
    ],
    ids=["reasons", "statusCode", "messageId"],
)
def test_wrong_type(overrides: dict[str, Any], expected: str) -> None:
    assert reason(status(**overrides)) == expected


def test_unsupported_schema_version() -> None:
    assert (
        reason(status(schemaVersion=3))
        == "schemaVersion: unsupported version 3; this processor reads version 1"
    )


def test_not_json() -> None:
    assert reason(b"nope") == "not valid JSON: expected ident at line 1 column 2"


@pytest.mark.parametrize("data", [b"[]", b'"DELIVERED"', b"null"])
def test_not_an_object(data: bytes) -> None:
    assert reason(data) == "record: must be a JSON object"


def test_an_instant_outside_what_the_core_can_write_back_is_refused_regression() -> None:
    # Year 9999 in UTC was accepted, and the flow it ended could not build its outcome's times.
    assert reason(status(occurredAt="9999-12-31T23:59:59-23:59")) == (
        "occurredAt: Input should be less than 9000-01-01T00:00:00Z"
    )
    assert reason(status(occurredAt="0001-01-01T00:00:00+01:00")) == (
        "occurredAt: Input should be greater than or equal to 0001-01-01T00:00:00Z"
    )


def test_the_zero_time_some_gateways_send_still_reads() -> None:
    # Go writes an unset time as 0001-01-01T00:00:00Z: a status carrying it is not lost.
    assert decode_status(status(occurredAt="0001-01-01T00:00:00Z")).occurred_at == datetime(
        1, 1, 1, tzinfo=UTC
    )
    assert decode_status(status(occurredAt="8999-12-31T23:59:59.999Z")).occurred_at is not None
