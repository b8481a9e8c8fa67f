"""Stopping an aiokafka client in any weather."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

_LOG = logging.getLogger("stream_app.kafka")

#: How long a client's stop may take: it flushes and leaves the group; with the brokers away it
#: cannot, and the process must still end (seconds).
STOP_TIMEOUT_S = 10.0


async def stop_client(client: AIOKafkaProducer | AIOKafkaConsumer, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop ``client`` within ``timeout_s``; a failure to stop is one warning, never a traceback.

    During a broker outage aiokafka's consumer ``stop()`` awaits its fetch tasks after cancelling
    them and re-raises their CancelledError: that is the client's, not ours, unless our own task
    is being cancelled (then it propagates).
    """
    try:
        await asyncio.wait_for(client.stop(), timeout_s)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        _LOG.warning("%s stopped with its fetches cancelled (brokers unreachable)", type(client).__name__)
    except (KafkaError, OSError, TimeoutError) as exc:
        _LOG.warning("%s did not stop cleanly: %s", type(client).__name__, type(exc).__name__)
