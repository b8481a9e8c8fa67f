"""Run a Starlette app on uvicorn inside the current event loop, with ``ready``/``stop`` events.

The socket is bound here, before uvicorn starts, so a taken port is a one-line :class:`PortInUse`
(a host that is not this machine's, :class:`HostNotHere`) instead of uvicorn's ``sys.exit`` from
inside a task. uvicorn's own signal capture is turned off: the CLI owns SIGTERM/SIGINT and sets
``stop``, and in-process users (tests, the demo) must not have their handlers replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from stream_app.gateway.errors import CannotListen, HostNotHere, PortInUse

#: bind() errors that mean the port cannot be had (taken; below 1024 for a normal user).
_PORT_ERRNOS = frozenset({errno.EADDRINUSE, errno.EACCES})
#: bind() errors that mean the host is not one of this machine's addresses (or of its IP version).
_HOST_ERRNOS = frozenset({errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT})

#: Seconds a connection has to complete a request's headers, from its first byte (or from its
#: opening). uvicorn arms no timer before headers are complete, so a connection that sends nothing,
#: or half a request line, was held for ever (slowloris). A caller's headers are one packet.
HEADER_TIMEOUT = 10.0


def _protocol(header_timeout: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a deadline on the headers of each request."""

    class _Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _too_slow(self) -> None:
            self._header_deadline = None
            if not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting:
                self._arm()  # the first byte of a request after an answer starts its deadline
            super().data_received(data)
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # headers complete: the app owns the request (and its body deadline)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return _Protocol


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and an
    # accepted socket inherits it. Without it Nagle meets the client's delayed ACK and every answer on
    # a kept-alive connection waits 40 ms (measured: 45 ms per request instead of under 1 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        detail = exc.strerror or str(exc)
        # gaierror: not a name or address at all ("nope.invalid", "256.1.1.1"): its errno is a
        # resolver code, which may equal an unrelated errno, so it is told apart by its type.
        if isinstance(exc, socket.gaierror) or exc.errno in _HOST_ERRNOS:
            raise HostNotHere(host, port, detail) from None
        if exc.errno in _PORT_ERRNOS:
            raise PortInUse(host, port, detail) from None
        raise CannotListen(host, port, detail, "check --host and --port") from None
    sock.listen(2048)  # 2048: room for a burst of 1,000+ concurrent webhook callbacks
    sock.setblocking(False)
    return sock


async def serve_app(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    on_bound: list[int] | None = None,
    header_timeout: float = HEADER_TIMEOUT,
) -> None:
    """Serve ``app`` until ``stop`` is set (or forever). ``on_bound`` receives the bound port; a
    connection that does not complete a request's headers within ``header_timeout`` is closed."""
    sock = bind(host, port)
    if on_bound is not None:
        on_bound.append(sock.getsockname()[1])
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=_protocol(header_timeout),
        # 75 s keep-alive: longer than httpx's pool expiry, so the client closes idle connections
        # first and never sends on a socket the server is closing.
        timeout_keep_alive=75,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.01)
        if ready is not None:
            ready.set()
        if stop is None:
            await task
            return
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()
