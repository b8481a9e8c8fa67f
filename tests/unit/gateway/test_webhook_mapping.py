"""Callback bodies -> DeliveryStatus: every documented shape, the customer id split, every field rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stream_app.config import Settings
from stream_app.contracts import Channel, DeliveryStatus, Status
from stream_app.gateway.errors import UnknownGatewayShape
from stream_app.gateway.providers import Attempt, ProviderIndex
from stream_app.gateway.shapes import Ignored, Mapped
from stream_app.gateway.signing import sign, verify
from stream_app.gateway.webhook import WebhookReceiver, interpret, split_customer_id, to_status
from tests.support.gateway_data import raw


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


def _status(body: bytes, where: Attempt | None = None):  # type: ignore[no-untyped-def]
    cb, said = interpret(body)
    assert isinstance(said, Mapped)
    return to_status(cb, said, where)


def test_status_answer_shape_keeps_code_reasons_provider_time_and_gateway_word() -> None:
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
    status = _status(orjson.dumps(body))
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "txn-1",
        1,
        Channel.RCS,
        Status.ERROR,
    )
    assert (status.status_code, status.reasons, status.provider_message_id, status.gateway_status) == (
        6,
        ["AGENT_NOT_REACHABLE"],
        "c9a4",
        "ERROR",
    )
    assert status.occurred_at is not None and status.occurred_at.isoformat() == "2026-04-09T10:15:04+02:00"


def test_documented_delivery_event() -> None:
    status = _status(raw("webhook-delivery-event", customerMessageId="txn-9:0"))
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "txn-9",
        0,
        Channel.SMS,
        Status.DELIVERED,
    )
    assert (status.status_code, status.gateway_status) == (3, "DELIVERY")
    assert status.provider_message_id == "e76614d1-4ac1-4d94-89f0-d07f1b5a190c"
    assert status.reasons == []  # "Message delivered" describes a success: no reason to keep


def test_documented_delivery_event_with_an_error_code_keeps_the_description_as_reason() -> None:
    status = _status(raw("webhook-delivery-event", customerMessageId="t:0", statusCode=6, description="Bad"))
    assert (status.status, status.reasons) == (Status.ERROR, ["Bad"])


def test_documented_read_event_is_placed_by_the_index_answer() -> None:
    where = Attempt("txn-9", 2, Channel.WHATSAPP)
    status = _status(raw("webhook-read-event"), where)
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "txn-9",
        2,
        Channel.WHATSAPP,
        Status.READ,
    )
    assert status.occurred_at is not None and status.occurred_at.isoformat() == "2026-04-09T10:31:15+00:00"


def test_documented_read_event_without_the_index_names_what_is_missing() -> None:
    with pytest.raises(UnknownGatewayShape, match="customerMessageId: required"):
        _status(raw("webhook-read-event"))


def test_documented_inbound_event_is_no_status() -> None:
    _, said = interpret(raw("webhook-inbound-event"))
    assert said == Ignored("eventType INBOUND")


def test_documented_legacy_shape_lower_case_channel_and_error() -> None:
    status = _status(raw("webhook-legacy-status", customerMessageId="l-1:1"))
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "l-1",
        1,
        Channel.SMS,
        Status.DELIVERED,
    )
    failed = _status(raw("webhook-legacy-status", customerMessageId="l:0", status="ERROR", error="NO_ROUTE"))
    assert (failed.status, failed.reasons, failed.gateway_status) == (Status.ERROR, ["NO_ROUTE"], "ERROR")


@pytest.mark.parametrize(("word", "status"), [("RECEIVED", Status.SENT), ("SENT", Status.SENT)])
def test_received_is_sent_with_its_word_kept(word: str, status: Status) -> None:
    got = _status(raw("webhook-legacy-status", customerMessageId="r:0", status=word))
    assert (got.status, got.gateway_status) == (status, word)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "SMS", "deliveryStatus": "SENT"}, "customerMessageId"),
        ({"customerMessageId": "m:0", "channel": "FAX", "deliveryStatus": "SENT"}, "channel"),
        ({"customerMessageId": "m:0", "channel": "SMS", "deliveryStatus": "LOST"}, "status"),
        ({"customerMessageId": "m:0", "channel": "SMS"}, "deliveryStatus"),
        ({"customerMessageId": "m:0", "deliveryStatus": "SENT"}, "channel: required"),
        ({"customerMessageId": "m:0", "channel": "SMS", "eventType": "CLICK"}, "eventType"),
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
            {"customerMessageId": "m:0", "channel": "SMS", "status": "SENT", "timestamp": 1712650000},
            "timestamp: must be an RFC 3339 timestamp",
        ),
        (
            {"customerMessageId": "m:0", "channel": "SMS", "deliveryStatus": "SENT", "statusCode": "six"},
            "statusCode",
        ),
        ({"customerMessageId": "x" * 250, "channel": "SMS", "deliveryStatus": "SENT"}, "messageId"),
    ],
)
def test_bad_callbacks_name_the_field_in_one_line(body: dict[str, object], field: str) -> None:
    with pytest.raises(UnknownGatewayShape) as err:
        _status(orjson.dumps(body))
    assert field in err.value.reason and "\n" not in err.value.reason


def test_signature_round_trip_and_tampering() -> None:
    sig = sign(b"k", b"body")
    assert sig.startswith("sha256=") and verify(b"k", b"body", sig)
    assert not verify(b"k", b"body!", sig)
    assert not verify(b"other", b"body", sig)
    assert not verify(b"k", b"body", None)
    assert not verify(b"k", b"body", sig.removeprefix("sha256="))


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: Any = None, headers: Any = None
    ) -> None:
        orjson.loads(value or b"null")  # what the broker gets must be JSON, as encode() makes it
        self.sent.append((topic, value))


_BIG = b"100000000000000000000000000000"


@pytest.mark.parametrize(
    "body",
    [
        b'{"customerMessageId":"m:0","channel":"SMS","deliveryStatus":"DELIVERED","statusCode":'
        + _BIG
        + b"}",
        b'{"eventType":"DELIVERY","customerMessageId":"m:0","channel":"SMS","statusCode":18446744073709551619}',
    ],
)
async def test_status_code_past_64_bits_was_a_500_regression(tmp_path: Path, body: bytes) -> None:
    """A statusCode past 64 bits passed the edge and failed in encoding: a 500, so the gateway
    retried it for ever and it was never dead-lettered. It is refused at the edge: 400 + dead letter."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    producer = _Producer()
    rx = WebhookReceiver(settings, producer, b"k")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=rx.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://rx") as c:
        resp = await c.post("/dlr", content=body, headers={"X-Signature": sign(b"k", body)})
    assert resp.status_code == 400 and "statusCode" in resp.json()["error"]
    assert [t for t, _ in producer.sent] == [settings.topics.dead_letters]


async def test_a_held_body_that_could_not_be_published_killed_the_resolver_regression(tmp_path: Path) -> None:
    """A held READ with a statusCode past 64 bits (held before the edge refused such a code) raised
    TypeError out of resolve_held and ended the resolver silently, leaving it first in the store for
    ever. The bound on statusCode refuses it when it is read again (interpret), so it is dead-lettered
    with its reason, and the next held callback is still published."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    producer = _Producer()
    index = ProviderIndex.open(tmp_path / "idx")
    rx = WebhookReceiver(settings, producer, b"k", index=index)  # type: ignore[arg-type]
    bad = b'{"eventType":"READ","messageId":"prov-1","channel":"SMS","statusCode":' + _BIG + b"}"
    good = b'{"eventType":"READ","messageId":"prov-1","channel":"SMS"}'
    index.hold("prov-1", bad, 1)
    index.hold("prov-1", good, 2)
    accepted = DeliveryStatus(
        message_id="m", attempt=0, channel=Channel.SMS, status=Status.ACCEPTED, provider_message_id="prov-1"
    )
    index.learn([(accepted, 1)], {0: 1})
    try:
        assert await rx.resolve_held() == 2
        assert index.held_count == 0
        assert [t for t, _ in producer.sent] == [
            settings.topics.dead_letters,
            settings.topics.delivery_status,
        ]
    finally:
        index.close()


def test_documented_sms_universal_callback_is_placed_by_the_index_regression() -> None:
    """The SMS Universal API's callback (Qlara, "AgileTelecom SMS Universal API", "Webhook — Delivery
    notifications", https://agiletelecom.com/documentation/qlara/api-sms-universal/agiletelecom-sms-universal-api):
    ``eventType: DELIVERY`` with ``statusCode`` "3 = Delivered, 6 = Not Delivered", its text in
    ``statusDescription`` and only ``messageId``. A Not Delivered callback lost its only reason: the
    receiver read ``description`` (the webhook guide's name) and not ``statusDescription``."""
    where = Attempt("txn-7", 1, Channel.SMS)
    delivered = _status(raw("webhook-sms-universal-delivery", messageId="txn-7:1"), where)
    assert (delivered.message_id, delivered.attempt, delivered.channel, delivered.status) == (
        "txn-7",
        1,
        Channel.SMS,
        Status.DELIVERED,
    )
    assert (delivered.status_code, delivered.reasons, delivered.provider_message_id) == (3, [], "txn-7:1")
    assert (
        delivered.occurred_at is not None and delivered.occurred_at.isoformat() == "2024-01-15T10:30:00+00:00"
    )
    failed = _status(
        raw("webhook-sms-universal-delivery", statusCode=6, statusDescription="Not Delivered"), where
    )
    assert (failed.status, failed.status_code, failed.reasons) == (Status.ERROR, 6, ["Not Delivered"])


async def test_documented_sms_universal_callback_through_the_receiver_regression(tmp_path: Path) -> None:
    """The same documented body over HTTP: resolved through the provider-id index (the dispatcher's
    ACCEPTED carries the send answer's ``messageId``) and published, not dead-lettered."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    producer = _Producer()
    index = ProviderIndex.open(tmp_path / "idx")
    accepted = DeliveryStatus(
        message_id="txn-7",
        attempt=1,
        channel=Channel.SMS,
        status=Status.ACCEPTED,
        provider_message_id="txn-7:1",
    )
    index.learn([(accepted, 1)], {0: 1})
    rx = WebhookReceiver(settings, producer, b"k", index=index)  # type: ignore[arg-type]
    body = raw(
        "webhook-sms-universal-delivery", messageId="txn-7:1", statusCode=6, statusDescription="Not Delivered"
    )
    try:
        transport = httpx.ASGITransport(app=rx.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://rx") as c:
            resp = await c.post("/dlr", content=body, headers={"X-Signature": sign(b"k", body)})
        assert resp.status_code == 200, resp.text
        [(topic, value)] = producer.sent
        published = orjson.loads(value or b"null")
        assert topic == settings.topics.delivery_status
        assert (published["status"], published["statusCode"], published["reasons"]) == (
            "ERROR",
            6,
            ["Not Delivered"],
        )
    finally:
        index.close()


def test_a_delivered_callback_is_dated_by_its_delivery_date_not_its_read_date_regression() -> None:
    """The status answer's shape as a callback (seed page 001: ``deliveryDate`` and ``readDate``):
    a DELIVERED with a ``readDate`` was dated by the read, not by the delivery."""
    body = raw(
        "status-delivered-sms-fallback",
        customerMessageId="txn-1:0",
        channel="WHATSAPP",
        readDate="2026-04-09T11:00:00+02:00",
    )
    status = _status(body)
    assert status.status is Status.DELIVERED
    assert status.occurred_at is not None and status.occurred_at.isoformat() == "2026-04-09T10:15:04+02:00"
    read = _status(
        raw(
            "status-delivered-sms-fallback",
            customerMessageId="txn-1:0",
            deliveryStatus="READ",
            readDate="2026-04-09T11:00:00+02:00",
        )
    )
    assert read.occurred_at is not None and read.occurred_at.isoformat() == "2026-04-09T11:00:00+02:00"


def test_the_documented_full_status_answer_through_the_mapping() -> None:
    """Seed page 001, "Response — Delivered via SMS", as a callback body."""
    status = _status(raw("status-delivered-sms-fallback", customerMessageId="txn-1:0"))
    assert (status.message_id, status.attempt, status.channel, status.status) == (
        "txn-1",
        0,
        Channel.SMS,
        Status.DELIVERED,
    )
