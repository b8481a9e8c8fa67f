"""Handing a turn's records to an aiokafka producer, and awaiting their delivery."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from stream_app.contracts.headers import Headers

if TYPE_CHECKING:
    from aiokafka.producer.message_accumulator import BatchBuilder


@dataclass(slots=True, init=False)
class Out:
    """One record to produce (two to four are built per flow: its ``__init__`` is written out, as
    fallback/state.py's values explain, because this module is compiled: stream_app/compiled.py)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None  # None: the producer's murmur2 of the key

    def __init__(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        self.topic = topic
        self.key = key
        self.value = value
        self.headers = headers
        self.partition = partition


async def produce(producer: AIOKafkaProducer, records: list[Out]) -> list[tuple[asyncio.Future[Any], int]]:
    """Hand records to the producer; returns ``(delivery future, records it covers)`` pairs.

    Records with a known partition go in whole batches (``create_batch`` / ``send_batch``): one
    future per batch instead of one coroutine and one future per record, which is most of what a
    ``send()`` costs. Order within a partition is kept. The rest (dead letters, outputs to a topic
    with another partition count) go through ``send()`` and the key's murmur2.

    Each batch is closed before it is handed over. aiokafka holds an open batch back for
    ``linger_ms``, waiting for more ``send()`` records to join it; a closed one goes at once. The
    caller awaits delivery right after this call, so lingering only added ``linger_ms`` to every
    wait of the commit: the outputs, then the changelog. Records that go through ``send()`` still
    linger, so a turn with any of them still waits that long once.
    """
    sent: list[tuple[asyncio.Future[Any], int]] = []
    groups: dict[tuple[str, int], list[Out]] = {}
    for o in records:
        if o.partition is None:
            sent.append((await producer.send(o.topic, o.value, key=o.key, headers=o.headers), 1))
        else:
            groups.setdefault((o.topic, o.partition), []).append(o)
    for (topic, partition), outs in groups.items():
        batch = producer.create_batch()
        for o in outs:
            if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is not None:
                continue
            # Full (a refused record also closes it): hand it over; the record starts the next one.
            if batch.record_count():
                sent.append(await _send_batch(producer, batch, topic, partition))
            batch = producer.create_batch()
            if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                # Even an empty batch refused it. aiokafka's takes any first record, whatever its
                # size (tests/unit/runtime/test_produce.py), so this is a guard: a record is never
                # dropped, the producer's own send() sizes a batch for it, in its place. The
                # refusal closed this batch, so the next record starts another (above).
                fut = await producer.send(topic, o.value, key=o.key, partition=partition, headers=o.headers)
                sent.append((fut, 1))
        if batch.record_count():
            sent.append(await _send_batch(producer, batch, topic, partition))
    return sent


async def _send_batch(
    producer: AIOKafkaProducer, batch: BatchBuilder, topic: str, partition: int
) -> tuple[asyncio.Future[Any], int]:
    n = batch.record_count()  # counted while the batch is still ours; after this it is the producer's
    batch.close()  # sent at once, not after linger_ms (see produce())
    return await producer.send_batch(batch, topic, partition=partition), n


async def all_delivered(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Await every delivery; raise the first failure only after all have settled (no orphan futures).

    ``asyncio.wait``, not ``gather``: cancelled (a stop), gather cancels the futures it waits for,
    which are the producer's own. aiokafka's abort then no longer waits for those batches and may
    end the transaction while one of them is still being retried, and on a broker before KIP-890
    that late write opens a transaction no one ends (KAFKA-14402), stalling read_committed readers.
    """
    if not futures:
        return []
    await asyncio.wait(futures)
    for future in futures:
        if (exc := future.exception()) is not None:
            raise exc
    return [future.result() for future in futures]
