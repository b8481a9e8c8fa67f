"""Run one of the gateway room's services from the CLI: SIGTERM/SIGINT set ``stop``, a clean exit is 0.

The CLI configures the logs first (``stream_app.logs``, the same format as the processor's).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from stream_app.logs import event

_LOG = logging.getLogger("stream_app.gateway")


def run_service(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], name: str = "service") -> int:
    """Run ``main(stop)`` in a fresh event loop until it returns; signals set ``stop``."""

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def _signalled(sig: signal.Signals) -> None:
            if not stop.is_set():
                event(_LOG, logging.INFO, "service_stopping", service=name, signal=sig.name)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _signalled, sig)
        await main(stop)
        event(_LOG, logging.INFO, "service_stopped", service=name)

    asyncio.run(_run())
    return 0
