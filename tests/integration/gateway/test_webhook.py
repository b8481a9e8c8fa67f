"""The webhook receiver over real HTTP, publishing to a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stream_app.contracts import Channel, Status, decode_status
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.signing import SIGNATURE_HEADER, sign
from stream_app.gateway.testing import running_simulator, running_webhook
from tests.integration.gateway.helpers import make_settings, read_all
from tests.support.kafka import consume_until

SECRET = b"s3cret"


def _signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body)}


def _dlr(cid: str, status: str = "DELIVERED", **over: Any) -> bytes:
    return orjson.dumps({"customerMessageId": cid, "channel": "SMS", "deliveryStatus": status, **over})


async def test_signed_dlrs_are_published_before_any_acknowledgement(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        # nothing was ever ACCEPTED for these: a DLR that beats the acknowledgement is still published
        for body in (
            _dlr("m1:1", "ERROR", statusCode=6, reasons=["AGENT_NOT_REACHABLE"]),
            _dlr("upstream-id"),
        ):
            r = await http.post(url, content=body, headers=_signed(body))
            assert r.status_code == 200, r.text
        records = await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=2)
    by_key = {r.key: decode_status(r.value or b"") for r in records}
    assert by_key[b"m1"].attempt == 1 and by_key[b"m1"].status is Status.ERROR
    assert (by_key[b"m1"].status_code, by_key[b"m1"].reasons) == (6, ["AGENT_NOT_REACHABLE"])
    assert by_key[b"upstream-id"].attempt is None and by_key[b"upstream-id"].channel is Channel.SMS
    assert rx.published == 2


async def test_unsigned_wrongly_signed_and_oversized_are_refused(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    body = _dlr("m:0")
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        assert (await http.post(url, content=body)).status_code == 401
        assert (await http.post(url, content=body, headers=_signed(body, b"wrong"))).status_code == 401
        assert (
            await http.post(url, content=body, headers={SIGNATURE_HEADER: "sha256=00"})
        ).status_code == 401
        tampered = body.replace(b"DELIVERED", b"READ")
        assert (await http.post(url, content=tampered, headers=_signed(body))).status_code == 401
        big = b"{" + b" " * (70 * 1024) + b"}"
        assert (await http.post(url, content=big, headers=_signed(big))).status_code == 413

        async def chunks() -> Any:  # no Content-Length: the limit holds while streaming
            for _ in range(100):
                yield b" " * 1024

        assert (await http.post(url, content=chunks(), headers=_signed(b""))).status_code == 413
        # still serving after all that
        assert (await http.post(url, content=body, headers=_signed(body))).status_code == 200
        assert (await http.get(url.replace("/dlr", "/healthz"))).status_code == 200
    assert rx.refused == 6 and rx.published == 1 and rx.dead_letters == 0


async def test_malformed_signed_bodies_are_400_and_dead_lettered(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    bad = {
        b"{oops": "not valid JSON",
        b"[]": "record",
        _dlr("m:0", "LOST"): "status",
        _dlr("m:0", channel="FAX"): "channel",
        orjson.dumps({"channel": "SMS", "deliveryStatus": "SENT"}): "customerMessageId",
        _dlr("m:0", eventDate="2026-04-09T10:15:04"): "eventDate",
    }
    async with running_webhook(settings, SECRET) as (_, url), httpx.AsyncClient() as http:
        for body, field in bad.items():
            r = await http.post(url, content=body, headers=_signed(body))
            assert r.status_code == 400 and field in r.json()["error"], (body, r.text)
        dead = await consume_until(kafka_bootstrap, settings.topics.dead_letters, count=len(bad))
    assert {r.value for r in dead} == set(bad)
    headers = dict(dead[0].headers)
    assert headers["__error.source.topic"] == b"webhook:/dlr"
    assert headers["__error.class"] == b"InvalidDlr"
    assert (headers["__error.source.partition"], headers["__error.source.offset"]) == (b"-1", b"-1")


async def _raw_post(url: str, body: bytes) -> int:
    """One callback on its own TCP connection, as a gateway sends them; returns the HTTP status.

    Plain asyncio streams rather than httpx: httpx's pool spends seconds managing 1,000 concurrent
    connections (its bookkeeping grows with the pool), which would measure the client, not the receiver.
    """
    parsed = httpx.URL(url)
    reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
    head = (
        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"{SIGNATURE_HEADER}: {sign(SECRET, body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(answer.split(b" ", 2)[1])


async def test_a_thousand_concurrent_callbacks_all_land(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    n = 1000
    bodies = [_dlr(f"c{i}:0", ("SENT", "DELIVERED", "READ")[i % 3]) for i in range(n)]
    async with running_webhook(settings, SECRET) as (rx, url):
        answers = await asyncio.gather(*(_raw_post(url, b) for b in bodies))
        assert answers == [200] * n
        records = await read_all(kafka_bootstrap, settings.topics.delivery_status, lambda rs: len(rs) >= n)
    assert sorted(r.key for r in records) == sorted(f"c{i}".encode() for i in range(n))
    assert rx.published == n


async def test_simulator_pushes_signed_dlrs_to_the_receiver(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with (
        running_webhook(settings, SECRET) as (_, hook),
        running_simulator(webhook_url=hook, webhook_secret=SECRET, time_scale=0.1) as (_, url),
    ):
        async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": "test-key"}) as http:
            body = {"destination": "+393401234505", "messageId": "wa-1:0", "template": {"id": 1}}
            r = await http.post("/api/message-server/whatsapp/send", content=orjson.dumps(body))
            assert r.json()["results"]["whatsapp"]["accepted"] is True
        records = await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=3)
    statuses = [decode_status(r.value or b"") for r in records]
    assert [s.status for s in statuses] == [Status.SENT, Status.DELIVERED, Status.READ]
    assert {(s.message_id, s.attempt, s.channel) for s in statuses} == {("wa-1", 0, Channel.WHATSAPP)}


async def test_receiver_refuses_to_start_without_a_secret(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    with pytest.raises(GatewayConfigError, match="STREAM_APP_WEBHOOK_SECRET"):
        async with running_webhook(settings, b""):
            pass
