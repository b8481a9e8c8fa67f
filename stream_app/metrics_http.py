"""The tiny HTTP endpoint every long-running service exposes: ``/metrics`` and ``/healthz``.

Neutral on purpose: it knows a :class:`CollectorRegistry` and a health callable, nothing of the
processor or the gateway, so the processor, the dispatcher and the poller share one implementation.
It is a bare ``asyncio`` server on the service's own loop rather than prometheus_client's
``start_http_server``: that one runs a thread per scrape and cannot report a stalled asyncio loop,
which is exactly what ``/healthz`` is for (a thread keeps answering while the loop is wedged; an
answer from the loop itself, computed by the service's own health callable, does not lie).

* ``GET /metrics``: the registry in the Prometheus text format.
* ``GET /healthz``: 200 ``ok`` while ``healthy()`` is true, 503 ``stalled`` otherwise.
* Anything else: 404; a method other than GET/HEAD: 405; an unreadable request: 400.

Scrapers are untrusted input: a slow, truncated, oversized or vanished request costs one short-lived
task and never an exception in the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from stream_app.errors import EndpointPortInUse

#: A service loop that has not turned for this long is wedged: the processor's turn is bounded by its
#: getmany wait (<= 1 s) plus one batch, the dispatcher's and the poller's loops turn at least every
#: 200 ms, so 60 s is far beyond any healthy pause (or a broker outage long enough that an
#: orchestrator should know).
STALL_SECONDS = 60.0

#: Bound on reading one request (request line and headers together): a scraper answers in
#: milliseconds; 5 s keeps a trickling client from holding a connection open for long.
READ_TIMEOUT_SECONDS = 5.0
#: Header lines read at most before the request is refused (a scraper sends fewer than 10).
MAX_HEADER_LINES = 100
#: Longest request line or header line (asyncio's StreamReader limit; longer is a 400).
MAX_LINE_BYTES = 8 * 1024

_TEXT = "text/plain; charset=utf-8"


class Heartbeat:
    """``beat()`` from a service's loop; ``healthy()`` until no beat came for ``stall_seconds``.

    A loop that stops turning is wedged (:data:`STALL_SECONDS`), and an orchestrator probing
    ``/healthz`` should know.
    """

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.last = clock()

    def beat(self) -> None:
        self.last = self.clock()

    def healthy(self) -> bool:
        return self.clock() - self.last < self.stall_seconds


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in the Prometheus text format and its content type (for any HTTP framework)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str] | None:
    """``(method, path)`` of one request, or None when it is not a readable HTTP request."""
    line = await reader.readline()
    for _ in range(MAX_HEADER_LINES):
        if (await reader.readline()) in (b"\r\n", b"\n", b""):
            break  # headers: nothing we need
    else:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1].startswith("/"):
        return None
    return parts[0], parts[1].split("?", 1)[0]


def _answer(
    request: tuple[str, str] | None, registry: CollectorRegistry, healthy: Callable[[], bool]
) -> tuple[str, str, bytes]:
    if request is None:
        return "400 Bad Request", _TEXT, b"bad request\n"
    method, path = request
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", _TEXT, b"method not allowed\n"
    if path == "/metrics":
        body, ctype = render(registry)
        return "200 OK", ctype, body
    if path == "/healthz":
        ok = healthy()
        return ("200 OK", _TEXT, b"ok\n") if ok else ("503 Service Unavailable", _TEXT, b"stalled\n")
    return "404 Not Found", _TEXT, b"not found\n"


async def serve(
    registry: CollectorRegistry, port: int, host: str = "0.0.0.0", *, healthy: Callable[[], bool]
) -> asyncio.Server:
    """Start the endpoint on host:port (0 picks a free port); the caller closes the returned server.

    Raises :class:`~stream_app.errors.EndpointPortInUse` when the port cannot be bound, so a taken
    port is a one-line error of the CLI, not a traceback.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_SECONDS)
            except ValueError:  # a line over MAX_LINE_BYTES (asyncio's LimitOverrunError path)
                request = None
            status, ctype, body = _answer(request, registry, healthy)
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            payload = body if request is None or request[0] != "HEAD" else b""
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + payload)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a slow or vanished scraper is its own problem, never the service's
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        return await asyncio.start_server(handle, host, port, limit=MAX_LINE_BYTES)
    except OSError as exc:
        raise EndpointPortInUse(host, port, exc.strerror or str(exc)) from None


@contextlib.asynccontextmanager
async def serving(
    registry: CollectorRegistry, port: int, host: str = "0.0.0.0", *, healthy: Callable[[], bool]
) -> AsyncIterator[asyncio.Server | None]:
    """:func:`serve` for the duration of an ``async with``; port 0 serves nothing (yields None)."""
    if not port:
        yield None
        return
    server = await serve(registry, port, host, healthy=healthy)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
