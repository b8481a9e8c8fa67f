"""The webhook receiver as an HTTP edge facing the internet: slow callers, repeats, answer codes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson

from stream_app.config import Settings
from stream_app.gateway.serve import serve_app
from stream_app.gateway.webhook import WebhookReceiver

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
