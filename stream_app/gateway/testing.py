"""Helpers to run the gateway room's servers in-process, for tests and the demo.

Everything here starts real servers on real sockets: the tests talk HTTP to them, not to a mocked
transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from stream_app.config import Settings
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import Rules, Simulator, WebhookAuth, WebhookStyle, run_simulator
from stream_app.gateway.webhook import WebhookReceiver, run_webhook
from stream_app.lifecycle import wait_started

#: The gateway room's share of the ports on a shared machine (19300-19399); 19300 is the CLI default.
PORT_RANGE = (19320, 19399)


def free_port(lo: int = PORT_RANGE[0], hi: int = PORT_RANGE[1], host: str = "127.0.0.1") -> int:
    """A port in [lo, hi] that nothing listens on right now."""
    for port in range(lo, hi + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


@contextlib.asynccontextmanager
async def running_simulator(
    rules: Rules | None = None,
    *,
    api_key: str | None = "test-key",
    webhook_url: str | None = None,
    webhook_secret: bytes = b"",
    webhook_style: WebhookStyle = "status",
    webhook_auth: WebhookAuth = "hmac",
    time_scale: float = 1.0,
    port: int | None = None,
) -> AsyncIterator[tuple[Simulator, str]]:
    """A simulator served on 127.0.0.1; yields it and its base URL."""
    stop, ready = asyncio.Event(), asyncio.Event()
    holder: list[Simulator] = []
    for _ in range(5):  # another process may take the port between free_port() and bind
        chosen = port or free_port()
        task = asyncio.create_task(
            run_simulator(
                "127.0.0.1",
                chosen,
                rules=rules,
                api_key=api_key,
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                webhook_style=webhook_style,
                webhook_auth=webhook_auth,
                time_scale=time_scale,
                stop=stop,
                ready=ready,
                simulator=holder,
            )
        )
        try:
            await wait_started(task, ready, "gateway simulator")
            break
        except Exception:  # the port was taken after all: try another
            holder.clear()
            task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
    else:
        raise RuntimeError("could not start the simulator")
    try:
        yield holder[0], f"http://127.0.0.1:{chosen}"
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def running_webhook(
    settings: Settings, secret: bytes, *, path: str = "/dlr", auth: str = ""
) -> AsyncIterator[tuple[WebhookReceiver, str]]:
    """A webhook receiver on 127.0.0.1 publishing to ``settings``' topics; yields it and its URL.

    ``auth`` is ``STREAM_APP_WEBHOOK_AUTH`` ("" for the default: hmac with a secret).
    """
    stop, ready = asyncio.Event(), asyncio.Event()
    holder: list[WebhookReceiver] = []
    port = free_port()
    task = asyncio.create_task(
        run_webhook(
            settings,
            GatewaySettings(webhook_secret=secret, webhook_auth=auth),
            host="127.0.0.1",
            port=port,
            path=path,
            stop=stop,
            ready=ready,
            receiver=holder,
        )
    )
    await wait_started(task, ready, "webhook receiver")
    try:
        yield holder[0], f"http://127.0.0.1:{port}{path}"
    finally:
        stop.set()
        await task
