"""The webhook receiver as an HTTP edge facing the internet: slow callers, repeats, answer codes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from stream_app.config import Settings
from stream_app.contracts import Channel, DeliveryStatus, Status
from stream_app.gateway.providers import ProviderIndex
from stream_app.gateway.serve import serve_app
from stream_app.gateway.signing import sign
from stream_app.gateway.webhook import WebhookReceiver
from tests.support.gateway_data import raw

#: Bound on any wait here: far past the receiver's own deadlines in these tests.
BOUND_S = 10.0


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None, key: Any = None, headers: Any = None
    ) -> None:
        orjson.loads(value or b"null")
        self.sent.append((topic, value))


@contextlib.asynccontextmanager
async def _served(rx: WebhookReceiver) -> AsyncIterator[int]:
    """``rx`` on a real socket (the slow-client cases need one); yields the port."""
    stop, ready, bound = asyncio.Event(), asyncio.Event(), []
    task = asyncio.create_task(serve_app(rx.app, "127.0.0.1", 0, stop=stop, ready=ready, on_bound=bound))
    await asyncio.wait_for(ready.wait(), BOUND_S)
    try:
        yield bound[0]
    finally:
        stop.set()
        await task


async def _status_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await asyncio.wait_for(reader.readline(), BOUND_S)
    except TimeoutError:
        raise AssertionError(f"no answer within {BOUND_S:g} s: the caller holds the request open") from None


async def test_a_caller_that_stalls_mid_body_is_answered_408_regression(tmp_path: Path) -> None:
    """A caller that sends its headers and part of its body, then nothing, held its request (and
    its handler, and its socket) open for ever: uvicorn has no body timeout and the receiver read
    without one. A few such callers from the internet pin the receiver's sockets. The body now has
    a deadline: past it, 408 and the connection is closed; nothing is published."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    producer = _Producer()
    rx = WebhookReceiver(settings, producer, b"k", body_timeout=0.5)  # type: ignore[arg-type]
    async with _served(rx) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                b"POST /dlr HTTP/1.1\r\nHost: rx\r\nContent-Type: application/json\r\n"
                b"Content-Length: 200\r\n\r\n" + b'{"customerMessageId":'
            )
            await writer.drain()
            assert (await _status_line(reader)).startswith(b"HTTP/1.1 408")
        finally:
            writer.close()
    assert producer.sent == []
    assert rx.metrics.callbacks.labels("too_slow")._value.get() == 1


async def test_a_repeated_held_callback_is_kept_and_published_once_regression(tmp_path: Path) -> None:
    """A gateway repeats a callback it thinks failed (a timeout, a lost answer; its guide wants 200
    within 5 s). A READ naming a gateway id not yet known was held again on every repeat: each copy
    took a place of the ``max_held`` bound (past it the receiver answers 503 to every held callback)
    and each was published when the id became known. An identical body already held is now not
    kept twice: the repeat gets the same answer, and one status is published."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    producer = _Producer()
    index = ProviderIndex.open(tmp_path / "idx")
    rx = WebhookReceiver(settings, producer, b"k", index=index)  # type: ignore[arg-type]
    body = raw("webhook-read-event", messageId="gw-1")
    other = raw("webhook-read-event", messageId="gw-1", timestamp="2026-04-09T10:31:16Z")
    try:
        transport = httpx.ASGITransport(app=rx.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://rx") as c:
            answers = [
                await c.post("/dlr", content=b, headers={"X-Signature": sign(b"k", b)})
                for b in (body, body, body, other)
            ]
        assert [(r.status_code, r.json()["status"]) for r in answers] == [(202, "held")] * 4
        assert index.held_count == 2  # the repeats of one body once, a different body apart
        accepted = DeliveryStatus(
            message_id="m",
            attempt=0,
            channel=Channel.WHATSAPP,
            status=Status.ACCEPTED,
            provider_message_id="gw-1",
        )
        index.learn([(accepted, 1)], {0: 1})
        assert await rx.resolve_held() == 2
        assert [t for t, _ in producer.sent] == [settings.topics.delivery_status] * 2
    finally:
        index.close()


async def test_a_caller_that_never_finishes_its_headers_is_disconnected_regression(tmp_path: Path) -> None:
    """Before the body deadline there are the headers: uvicorn (h11) arms no timer before a
    request's headers are complete, so a connection that sent nothing, or half a request line,
    was kept open for ever (slowloris: each one a socket of the receiver). The server now closes a
    connection whose headers are not complete within its header deadline."""
    settings = Settings(topic_prefix="t.", state_dir=tmp_path)
    rx = WebhookReceiver(settings, _Producer(), b"k")  # type: ignore[arg-type]
    stop, ready, bound = asyncio.Event(), asyncio.Event(), []
    task = asyncio.create_task(
        serve_app(rx.app, "127.0.0.1", 0, stop=stop, ready=ready, on_bound=bound, header_timeout=0.5)
    )
    await asyncio.wait_for(ready.wait(), BOUND_S)
    try:
        for sent in (b"", b"POST /dlr HTTP/1.1\r\nHost: rx\r\nContent-Le"):
            reader, writer = await asyncio.open_connection("127.0.0.1", bound[0])
            try:
                writer.write(sent)
                await writer.drain()
                try:
                    left = await asyncio.wait_for(reader.read(), BOUND_S)
                except TimeoutError:
                    raise AssertionError(f"a connection that sent {sent!r} was kept open") from None
                assert left == b""  # closed, without an answer to a request never made
            finally:
                writer.close()
    finally:
        stop.set()
        await task
