"""Run one of the gateway room's services from the CLI: SIGTERM/SIGINT set ``stop``, a clean exit is 0."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from stream_app.kafka.outage import outage_filter


def run_service(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> int:
    """Run ``main(stop)`` in a fresh event loop until it returns; signals set ``stop``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiokafka logs every reconnect attempt at ERROR during a broker outage; WARNING keeps the news
    # without drowning the service's own lines (the processor does the same).
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    outage_filter()  # an outage in three lines, not eighty a second
    # httpx logs every request at INFO: hundreds of lines a second from a busy dispatcher.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(_run())
    return 0
