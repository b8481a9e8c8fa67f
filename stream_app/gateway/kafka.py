"""The Kafka side shared by the dispatcher, the webhook receiver and the poller.

Plain producers (no idempotence: the local Tansu broker has no InitProducerId, and our records are
keyed and safe to repeat) and the one-line error when no broker answers. The headers (dead letters,
traceparent) are CONTRACT.md rules and live in :mod:`stream_app.contracts.headers`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from stream_app.config import Settings
from stream_app.errors import BrokerUnreachable
from stream_app.kafka.clients import stop_client
from stream_app.kafka.connect import describe, start_or_unreachable


async def start_client(
    client: AIOKafkaProducer | AIOKafkaConsumer, settings: Settings, *, bounded: bool = True
) -> None:
    """Start an aiokafka client or raise :class:`BrokerUnreachable` (one line).

    ``bounded``: give up after a few seconds (stream_app.kafka.connect). A consumer of a group must not
    be bounded: its start waits for the group to settle, which after a crash of the previous member
    takes the session timeout (10 s), and that is not an unreachable broker. aiokafka logs each failed
    bootstrap connect at ERROR; while starting, our own one-line error says it better, so its logger
    is quiet for the duration (and back to its level once started).
    """
    logger = logging.getLogger("aiokafka")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        if bounded:
            await start_or_unreachable(client.start, client.stop, settings.bootstrap_servers)
            return
        try:
            await client.start()
        except KafkaConnectionError as exc:
            await client.stop()
            raise BrokerUnreachable(settings.bootstrap_servers, describe(exc)) from None
    finally:
        logger.setLevel(level)


@contextlib.asynccontextmanager
async def started_producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        acks="all",
        # 5 ms linger: concurrent sends and callbacks share batches instead of one request each.
        linger_ms=5,
    )
    await start_client(producer, settings)
    try:
        yield producer
    finally:
        await stop_client(producer)
