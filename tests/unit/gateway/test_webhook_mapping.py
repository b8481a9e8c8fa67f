"""DLR bodies -> DeliveryStatus: the customer message id split and every field rule."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from stream_app.contracts import Channel, Status
from stream_app.gateway.signing import sign, verify
from stream_app.gateway.webhook import Dlr, split_customer_id, to_status


@pytest.mark.parametrize(
    ("customer_id", "expected"),
    [
        ("txn-1:2", ("txn-1", 2)),
        ("a:b:0", ("a:b", 0)),
        ("plain", ("plain", None)),
        ("m:9", ("m:9", None)),  # attempts are 0..7: not a commandId of ours
        ("m:", ("m:", None)),
        (":3", (":3", None)),
        ("m:x1", ("m:x1", None)),
    ],
)
def test_split_customer_id(customer_id: str, expected: tuple[str, int | None]) -> None:
    assert split_customer_id(customer_id) == expected


def test_dlr_to_status_keeps_code_reasons_provider_and_time() -> None:
    body = {
        "customerMessageId": "txn-1:1",
        "channel": "rcs",
        "deliveryStatus": "error",
        "statusCode": 6,
        "reasons": ["AGENT_NOT_REACHABLE"],
        "messageId": "c9a4",
        "eventDate": "2026-04-09T10:15:04+02:00",
        "somethingNew": 1,
    }
    status = to_status(Dlr.model_validate_json(orjson.dumps(body)))
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "txn-1",
        1,
        Channel.RCS,
        Status.ERROR,
    )
    assert (status.status_code, status.reasons, status.provider_message_id) == (
        6,
        ["AGENT_NOT_REACHABLE"],
        "c9a4",
    )
    assert status.occurred_at is not None and status.occurred_at.isoformat() == "2026-04-09T10:15:04+02:00"


SENT = {"customerMessageId": "m:0", "channel": "SMS", "deliveryStatus": "SENT"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "SMS", "deliveryStatus": "SENT"}, "customerMessageId"),
        ({"customerMessageId": "m:0", "channel": "FAX", "deliveryStatus": "SENT"}, "channel"),
        ({"customerMessageId": "m:0", "channel": "SMS", "deliveryStatus": "LOST"}, "status"),
        ({"customerMessageId": "m:0", "channel": "SMS"}, "deliveryStatus"),
        (
            {
                "customerMessageId": "m:0",
                "channel": "SMS",
                "deliveryStatus": "SENT",
                "eventDate": "yesterday",
            },
            "eventDate",
        ),
        (
            {"customerMessageId": "m:0", "channel": "SMS", "deliveryStatus": "SENT", "statusCode": "six"},
            "statusCode",
        ),
        ({"customerMessageId": "x" * 250, "channel": "SMS", "deliveryStatus": "SENT"}, "messageId"),
    ],
)
def test_bad_dlrs_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        to_status(Dlr.model_validate_json(orjson.dumps(body)))
    assert field in str(err.value)


def test_signature_round_trip_and_tampering() -> None:
    sig = sign(b"k", b"body")
    assert sig.startswith("sha256=") and verify(b"k", b"body", sig)
    assert not verify(b"k", b"body!", sig)
    assert not verify(b"other", b"body", sig)
    assert not verify(b"k", b"body", None)
    assert not verify(b"k", b"body", sig.removeprefix("sha256="))
