"""The documented status answers (seed page 000, the status API page) played through ``Poller.poll_one``.

The gateway side is the client's own transport seam (``httpx.MockTransport``) serving the copied
payloads byte for byte; the producer records what would be published. The broker path is covered
by ``tests/integration/gateway/test_poller.py``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stream_app.config import Settings
from stream_app.contracts import Channel, Status, decode_status
from stream_app.gateway.client import GatewayClient
from stream_app.gateway.poller import InFlight, Poller, PollOptions, Tracker
from tests.support.gateway_data import DATA, payload


class Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        self.sent.append(value)


def _poller(answer: str) -> tuple[Poller, Producer]:
    body = (DATA / f"{answer}.json").read_bytes()
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    client = GatewayClient("http://gateway.test", "k", transport=transport)
    producer = Producer()
    poller = Poller(Settings(), client, producer, Tracker(PollOptions()))  # type: ignore[arg-type]
    return poller, producer


def _item() -> InFlight:
    return InFlight("doc", 0, Channel.WHATSAPP, started=0.0, provider_message_id="b8f3a21c")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("status-sent", (Status.SENT, None, "SENT")),
        ("status-received", (Status.SENT, None, "RECEIVED")),
        ("status-delivered", (Status.DELIVERED, None, "DELIVERED")),
        ("status-error", (Status.ERROR, 6, "ERROR")),
        ("status-expired", (Status.EXPIRED, 8, "EXPIRED")),
    ],
)
async def test_each_documented_answer_is_published_as_the_contract_says(
    answer: str, expected: tuple[Status, int | None, str]
) -> None:
    poller, producer = _poller(answer)
    await poller.poll_one(_item())
    await poller.client.aclose()
    (record,) = [decode_status(v) for v in producer.sent]
    assert (record.status, record.status_code, record.gateway_status) == expected
    assert (record.message_id, record.attempt, record.provider_message_id) == ("doc", 0, "b8f3a21c")


async def test_unknown_is_counted_and_published_never(caplog: Any) -> None:
    poller, producer = _poller("status-unknown")
    for _ in range(5):
        await poller.poll_one(_item())
    await poller.client.aclose()
    assert producer.sent == []
    assert poller.metrics.ignored.labels("UNKNOWN")._value.get() == 5
    assert sum("UNKNOWN" in r.getMessage() for r in caplog.records) == 1


async def test_a_delivered_answer_is_dated_by_its_delivery_date_not_its_read_date_regression() -> None:
    """Seed page 001's status answer carries ``deliveryDate`` and ``readDate`` side by side, and the
    status API documents no READ among ``deliveryStatus`` values (DELIVERED, SENT, RECEIVED, ERROR,
    EXPIRED, UNKNOWN): a WhatsApp message read later may still answer DELIVERED with a ``readDate``.
    The client took ``readDate`` before ``deliveryDate`` whatever the status, so the DELIVERED was
    published with the read time and the outcome's ``statusTimes`` (delivery latency) were wrong."""
    body = payload("status-delivered-sms-fallback", channel="WHATSAPP", readDate="2026-04-09T11:00:00+02:00")
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=body))
    async with GatewayClient("http://gateway.test", "k", transport=transport) as client:
        producer = Producer()
        poller = Poller(Settings(), client, producer, Tracker(PollOptions()))  # type: ignore[arg-type]
        await poller.poll_one(_item())
    (record,) = [decode_status(v) for v in producer.sent]
    assert record.status is Status.DELIVERED
    assert record.occurred_at is not None and record.occurred_at.isoformat() == "2026-04-09T08:15:04+00:00"


async def test_the_documented_full_status_answer_is_published() -> None:
    """Seed page 001, "Response — Delivered via SMS", byte for byte."""
    poller, producer = _poller("status-delivered-sms-fallback")
    await poller.poll_one(_item())
    await poller.client.aclose()
    (record,) = [decode_status(v) for v in producer.sent]
    assert (record.status, record.gateway_status) == (Status.DELIVERED, "DELIVERED")
    assert record.occurred_at is not None and record.occurred_at.isoformat() == "2026-04-09T08:15:04+00:00"
