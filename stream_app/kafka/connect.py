"""Start aiokafka clients with a short, bounded connect, turning "no broker" into one clear error.

aiokafka keeps retrying bootstrap for its whole ``request_timeout_ms`` (40 s by default) when a host
drops packets; a person at a terminal should hear "cannot reach Kafka" within seconds instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError

from stream_app.errors import BrokerUnreachable

#: Seconds to wait for the first answer from the bootstrap servers. Long enough for a broker on the
#: other side of a VPN or a TLS handshake, short enough that a typo in the address is reported
#: before the user gives up.
CONNECT_TIMEOUT = 8.0
#: Per-request timeout of the CLI's clients, in ms. A produce or metadata request that takes longer
#: than this on a healthy broker means it is overloaded or gone; say so instead of waiting 40 s.
REQUEST_TIMEOUT_MS = 15_000


async def start_or_unreachable(
    start: Callable[[], Awaitable[None]],
    close: Callable[[], Awaitable[None]],
    bootstrap_servers: str,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> None:
    """Start a client within ``connect_timeout`` s; on failure close it and raise BrokerUnreachable.

    A client whose start failed still owns sockets and tasks, and an unclosed client is a warning
    (an error in the tests), hence ``close``.
    """
    try:
        await asyncio.wait_for(start(), connect_timeout)
    except (KafkaError, TimeoutError, OSError) as exc:
        with contextlib.suppress(Exception):  # closing a client that never connected: nothing to report
            await close()
        raise BrokerUnreachable(bootstrap_servers, describe(exc, connect_timeout)) from None


def describe(exc: BaseException, timeout: float = CONNECT_TIMEOUT) -> str:
    """A short reason for a failed connect: ``connection refused``, ``no answer within 8 s``, ..."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = str(exc)
    if "Unable to bootstrap" in text:  # aiokafka: no bootstrap server accepted a connection
        # aiokafka raises this for a failed TLS handshake or SASL login too (it logs the reason,
        # which a command's terminal does not show): on a secured cluster, say so. The security
        # settings come from the environment alone (config.SECURITY_ENV).
        protocol = os.environ.get("KAFKA_SECURITY_PROTOCOL", "").strip().upper()
        if protocol and protocol != "PLAINTEXT":
            return (
                f"no broker answered, or with KAFKA_SECURITY_PROTOCOL={protocol} its TLS handshake or "
                "SASL login failed: check the KAFKA_SSL_* and KAFKA_SASL_* settings"
            )
        return "no broker answered"
    if "Errno 111" in text or "refused" in text.lower():
        return "connection refused"
    if "Errno -2" in text or "Errno -3" in text or "not known" in text:
        return "unknown host"
    first = (text.strip() or type(exc).__name__).splitlines()[0]
    return first[:200]


def quiet_client_logs() -> None:
    """Keep aiokafka's own connection warnings off a terminal whose command reports errors itself.

    Without any logging configured, Python prints a library's WARNING records to stderr, so one
    unreachable broker would show three lines of aiokafka retries before our one-line error.
    Commands that configure logging (the services) are unaffected: this only applies when the root
    logger has no handler.
    """
    if not logging.getLogger().handlers:
        logging.getLogger("aiokafka").addHandler(logging.NullHandler())
        logging.getLogger("aiokafka").propagate = False
