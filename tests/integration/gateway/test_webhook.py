"""The webhook receiver over real HTTP, publishing to a real broker."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from stream_app.contracts import Channel, DeliveryStatus, Status, decode_status, encode
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.signing import SIGNATURE_HEADER, sign
from stream_app.gateway.testing import running_simulator, running_webhook
from tests.integration.gateway.helpers import eventually, make_settings, produce_all, read_all
from tests.support.gateway_data import payload, raw
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
        _dlr("m:0", eventDate=1712650000): "eventDate: must be an RFC 3339 timestamp",
        orjson.dumps({"eventType": "CLICK", "channel": "SMS"}): "eventType: must be one of",
        orjson.dumps({"eventType": "READ", "channel": "WHATSAPP"}): "customerMessageId: required",
        orjson.dumps({"customerMessageId": "m:0", "channel": "SMS"}): "status: required",
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


# ------------------------------------------------------------------ the gateway's documented shapes


async def test_documented_payloads_through_the_receiver_with_token_auth(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The docs' DELIVERY, READ (gateway id only), INBOUND and older bodies, as the unsigning gateway
    sends them: authenticated by the token in the registered callback URL."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    gw_id = payload("webhook-read-event")["messageId"]
    async with running_webhook(settings, SECRET, auth="token") as (rx, url), httpx.AsyncClient() as http:
        hook = f"{url}?token={SECRET.decode()}"
        delivery = raw("webhook-delivery-event", customerMessageId="doc-1:0", channel="WHATSAPP")
        assert (await http.post(hook, content=delivery)).json() == {"status": "published"}
        read = await http.post(hook, content=raw("webhook-read-event"))
        # resolved at once if the index has read the DELIVERY back already, else held until it has
        assert read.status_code in (200, 202), read.text
        inbound = await http.post(hook, content=raw("webhook-inbound-event"))
        assert inbound.json() == {"status": "ignored", "reason": "eventType INBOUND"}
        legacy = raw("webhook-legacy-status", customerMessageId="doc-2:1")
        assert (await http.post(hook, content=legacy)).status_code == 200
        records = await read_all(
            kafka_bootstrap, settings.topics.delivery_status, lambda rs: len(rs) >= 3, settle=0.5
        )
    got = {(s.message_id, s.status): s for s in (decode_status(r.value or b"") for r in records)}
    assert len(records) == 3 and rx.ignored == 1
    delivered = got[("doc-1", Status.DELIVERED)]
    assert (delivered.attempt, delivered.status_code, delivered.gateway_status) == (0, 3, "DELIVERY")
    assert delivered.provider_message_id == gw_id
    read_status = got[("doc-1", Status.READ)]
    assert (read_status.attempt, read_status.channel, read_status.gateway_status) == (
        0,
        Channel.WHATSAPP,
        "READ",
    )
    assert read_status.provider_message_id == gw_id
    legacy_status = got[("doc-2", Status.DELIVERED)]
    assert (legacy_status.attempt, legacy_status.channel) == (1, Channel.SMS)


async def test_token_in_a_header_and_refusals(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    body = _dlr("t:0")
    async with running_webhook(settings, SECRET, auth="token") as (rx, url), httpx.AsyncClient() as http:
        assert (await http.post(url, content=body, headers={"X-Webhook-Token": "s3cret"})).status_code == 200
        missing = await http.post(url, content=body)
        assert missing.status_code == 401 and "X-Webhook-Token" in missing.json()["error"]
        assert (await http.post(f"{url}?token=nope", content=body)).status_code == 401
        assert (await http.post(url, content=body, headers=_signed(body))).status_code == 401  # not hmac
    assert rx.refused == 3 and rx.published == 1


async def test_auth_none_takes_unauthenticated_callbacks(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_webhook(settings, b"", auth="none") as (rx, url), httpx.AsyncClient() as http:
        assert (await http.post(url, content=_dlr("n:0"))).status_code == 200
    assert rx.published == 1


async def test_read_placed_by_the_dispatchers_accepted_and_the_index_survives_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    accepted = DeliveryStatus(
        message_id="m-77", attempt=2, channel=Channel.RCS, status=Status.ACCEPTED, provider_message_id="gw-77"
    )
    await produce_all(kafka_bootstrap, settings.topics.delivery_status, [(b"m-77", encode(accepted))])
    read = raw("webhook-read-event", messageId="gw-77", channel="RCS")
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        await eventually(lambda: rx.index is not None and rx.index.lookup("gw-77") is not None, what="learnt")
        r = await http.post(url, content=read, headers=_signed(read))
        assert r.json() == {"status": "published"}
    # a new receiver on the same state directory resolves it at once: the index was kept on disk
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        assert rx.index is not None and rx.index.lookup("gw-77") is not None
        r = await http.post(url, content=read, headers=_signed(read))
        assert r.json() == {"status": "published"}
        records = await read_all(
            kafka_bootstrap, settings.topics.delivery_status, lambda rs: len(rs) >= 3, settle=0.3
        )
    reads = [decode_status(r.value or b"") for r in records][1:]
    assert [(s.message_id, s.attempt, s.channel, s.status) for s in reads] == [
        ("m-77", 2, Channel.RCS, Status.READ)
    ] * 2


async def test_unresolvable_read_is_held_then_published_or_dead_lettered_after_the_orphan_window(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = replace(await make_settings(kafka_bootstrap, tmp_path), orphan_status_seconds=1.5)
    late, never = raw("webhook-read-event", messageId="gw-late"), raw("webhook-read-event", messageId="gw-no")
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        for body in (late, never):
            r = await http.post(url, content=body, headers=_signed(body))
            assert r.status_code == 202 and r.json()["status"] == "held", r.text
        accepted = DeliveryStatus(
            message_id="m-late",
            attempt=0,
            channel=Channel.WHATSAPP,
            status=Status.ACCEPTED,
            provider_message_id="gw-late",
        )
        await produce_all(kafka_bootstrap, settings.topics.delivery_status, [(b"m-late", encode(accepted))])
        statuses = await read_all(kafka_bootstrap, settings.topics.delivery_status, lambda rs: len(rs) >= 2)
        dead = await consume_until(kafka_bootstrap, settings.topics.dead_letters, count=1, timeout=20)
        await eventually(lambda: rx.index is not None and rx.index.held_count == 0, what="nothing held")
    assert decode_status(statuses[-1].value or b"").message_id == "m-late"
    assert dead[0].value == never
    reason = dict(dead[0].headers)["__error.reason"].decode()
    assert "gw-no" in reason and "1.5 s" in reason and "\n" not in reason
    assert rx.metrics.held_results.labels("resolved")._value.get() == 1
    assert rx.metrics.held_results.labels("orphaned")._value.get() == 1


@pytest.mark.parametrize("style", ["events", "legacy"])
async def test_simulator_pushes_the_documented_styles_and_read_without_customer_id(
    kafka_bootstrap: str, tmp_path: Path, style: str
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with (
        running_webhook(settings, SECRET, auth="token") as (rx, hook),
        running_simulator(
            webhook_url=hook, webhook_secret=SECRET, webhook_style=style, webhook_auth="token", time_scale=0.2
        ) as (_, url),
    ):
        async with httpx.AsyncClient(base_url=url, headers={"X-Api-Key": "test-key"}) as http:
            # destination 10: SENT, RECEIVED, DELIVERED, READ, then a reply (INBOUND)
            body = {"destination": "+393401234510", "messageId": "wa-1:0", "template": {"id": 1}}
            r = await http.post("/api/message-server/whatsapp/send", content=orjson.dumps(body))
            assert r.json()["results"]["whatsapp"]["accepted"] is True

        def read_seen(rs: list[Any]) -> bool:
            return any(decode_status(r.value or b"").status is Status.READ for r in rs)

        records = await read_all(kafka_bootstrap, settings.topics.delivery_status, read_seen, settle=0.8)
    statuses = [decode_status(r.value or b"") for r in records]
    assert {(s.message_id, s.attempt, s.channel) for s in statuses} == {("wa-1", 0, Channel.WHATSAPP)}
    if style == "events":  # DELIVERY (code 3) and READ (gateway id only); the reply is not a status
        assert [(s.status, s.gateway_status) for s in statuses] == [
            (Status.DELIVERED, "DELIVERY"),
            (Status.READ, "READ"),
        ]
        assert rx.ignored == 1
    else:  # every status word, RECEIVED as SENT
        assert [(s.status, s.gateway_status) for s in statuses] == [
            (Status.SENT, "SENT"),
            (Status.SENT, "RECEIVED"),
            (Status.DELIVERED, "DELIVERED"),
            (Status.READ, "READ"),
        ]
