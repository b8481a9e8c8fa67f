"""The /metrics + /healthz endpoint over a real socket, and every kind of bad request it must survive."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from stream_app import metrics_http
from stream_app.errors import EndpointPortInUse
from stream_app.metrics_http import Heartbeat, serve, serving


class _Health:
    def __init__(self) -> None:
        self.ok = True

    def __call__(self) -> bool:
        return self.ok


@contextlib.asynccontextmanager
async def _endpoint(health: _Health | None = None) -> AsyncIterator[tuple[int, Counter, list[Any]]]:
    """An endpoint on a free port of 127.0.0.1; yields the port, a counter in its registry and the
    errors the event loop was asked to report (unhandled exceptions in a handler land there)."""
    registry = CollectorRegistry()
    counter = Counter("demo_things", "Things counted", registry=registry)
    loop = asyncio.get_running_loop()
    reported: list[Any] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    server = await serve(registry, 0, "127.0.0.1", healthy=health or _Health())
    try:
        yield server.sockets[0].getsockname()[1], counter, reported
    finally:
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let handlers still closing report what they would
        loop.set_exception_handler(previous)


async def _raw(port: int, data: bytes, *, half_close: bool = True) -> bytes:
    """Send ``data`` as it is and read the whole answer (the server closes after one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_metrics_are_the_prometheus_text_format() -> None:
    async with _endpoint() as (port, counter, reported), httpx.AsyncClient() as http:
        counter.inc(3)
        r = await http.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=")  # the library's exposition format
        assert "# TYPE demo_things_total counter" in r.text
        assert "demo_things_total 3.0" in r.text
        # a scraper's query string is no different path
        assert (await http.get(f"http://127.0.0.1:{port}/metrics?name[]=x")).status_code == 200
    assert reported == []


async def test_healthz_follows_the_health_callable() -> None:
    health = _Health()
    async with _endpoint(health) as (port, _, _r), httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert (r.status_code, r.text) == (200, "ok\n")
        health.ok = False
        r = await http.get(f"http://127.0.0.1:{port}/healthz")
        assert (r.status_code, r.text) == (503, "stalled\n")
        health.ok = True
        assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200


async def test_unknown_path_is_404_other_methods_405_and_head_has_no_body() -> None:
    async with _endpoint() as (port, _, _r), httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{port}"
        assert (await http.get(f"{base}/")).status_code == 404
        assert (await http.get(f"{base}/metricsx")).status_code == 404
        assert (await http.post(f"{base}/metrics", content=b"x")).status_code == 405
        head = await http.head(f"{base}/metrics")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0  # what a GET would carry


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\xfe garbage \x01\r\n\r\n",  # binary noise
        b"GET\r\n\r\n",  # no path
        b"GET metrics HTTP/1.1\r\n\r\n",  # a path not starting with /
        b"GET /metrics\r\n\r\n",  # HTTP/0.9: no version
        b"\r\n\r\n",  # empty request line
        b"GET /metrics HTTP/1.1\r\n" + b"X-A: b\r\n" * (metrics_http.MAX_HEADER_LINES + 5) + b"\r\n",
        b"GET /" + b"a" * (metrics_http.MAX_LINE_BYTES + 10) + b" HTTP/1.1\r\n\r\n",  # over the limit
        b"GET /metrics HTTP/1.1\r\nX-Long: " + b"b" * (metrics_http.MAX_LINE_BYTES + 10) + b"\r\n\r\n",
    ],
    ids=["binary", "no-path", "relative", "http09", "empty", "many-headers", "long-line", "long-header"],
)
async def test_garbage_is_400_and_the_endpoint_keeps_serving(garbage: bytes) -> None:
    async with _endpoint() as (port, _, reported):
        answer = await _raw(port, garbage)
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:80]
        good = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert good.startswith(b"HTTP/1.1 200 OK\r\n")
    assert reported == []


async def test_clients_that_vanish_or_stall_cost_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT_SECONDS", 0.3)
    async with _endpoint() as (port, _, reported):
        # connects and leaves without a byte
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        # stops writing halfway through the request line: what came is not a request
        assert (await _raw(port, b"GET /metr")).startswith(b"HTTP/1.1 400 ")
        # resets the connection (RST, not FIN) mid-headers
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        # sends part of a request and then nothing: closed without an answer after the timeout
        stalled = await _raw(port, b"GET /metrics HTTP/1.1\r\n", half_close=False)
        assert stalled == b""
        assert (await _raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 200 OK\r\n")
    assert reported == []


async def test_taken_port_is_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EndpointPortInUse, match=rf"cannot serve /metrics on 127.0.0.1:{port} \("):
            await serve(CollectorRegistry(), port, "127.0.0.1", healthy=lambda: True)


async def test_serving_port_zero_serves_nothing() -> None:
    async with serving(CollectorRegistry(), 0, healthy=lambda: True) as server:
        assert server is None


async def test_serving_closes_on_exit() -> None:
    with socket.socket() as probe:  # a port free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with serving(CollectorRegistry(), port, "127.0.0.1", healthy=lambda: True) as server:
        assert server is not None and server.is_serving()
    assert not server.is_serving()


def test_heartbeat_stalls_after_the_limit() -> None:
    now = [100.0]
    beat = Heartbeat(60.0, clock=lambda: now[0])
    assert beat.healthy()
    now[0] = 159.9
    assert beat.healthy()
    now[0] = 160.0
    assert not beat.healthy()
    beat.beat()
    assert beat.healthy()
