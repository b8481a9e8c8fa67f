"""Small Kafka helpers for tests against the session broker (fixture ``kafka_bootstrap``).

Every test shares one broker, so each test names its topics under its own :func:`unique_prefix`.
All helpers open and close their own clients (pytest turns an unclosed client's warning into an
error). Typical use::

    prefix = unique_prefix()
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)
    await create_topics(kafka_bootstrap, settings)
    await produce(kafka_bootstrap, settings.topics.send_requests, b"m1", b"{...}")
    [outcome] = await consume_until(kafka_bootstrap, settings.topics.outcomes, count=1)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from stream_app.admin.topics import TopicAdmin
from stream_app.config import Settings
from stream_app.kafka.offsets import committed_offsets

Headers = Sequence[tuple[str, bytes]]


def unique_prefix() -> str:
    """A topic prefix no other test uses, e.g. ``t3f9c0a1b2c4d.`` (starts with a letter, ends with a dot)."""
    return f"t{uuid.uuid4().hex[:12]}."


async def create_topics(
    bootstrap: str, topics: Settings | Iterable[str], *, partitions: int | None = None
) -> list[str]:
    """Create topics and wait until the broker lists them; returns their names.

    Given :class:`~stream_app.config.Settings`, creates every topic of the catalogue under its
    prefix and app id the way ``stream-app topics create`` does (:class:`TopicAdmin`: catalogue
    configs, the changelog compacted, ``settings.partitions`` partitions unless ``partitions``).
    Given names, creates plain topics with ``partitions`` (default 1). Existing topics are kept.
    """
    if isinstance(topics, Settings):
        settings = replace(topics, bootstrap_servers=bootstrap)
        async with TopicAdmin(settings) as admin:
            await admin.create(partitions)
            return [name for _, name in admin.names()]
    names = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, partitions or 1, 1) for name in names])
        await _wait_listed(admin, names)
    finally:
        await admin.close()
    return names


async def _wait_listed(admin: AIOKafkaAdminClient, names: list[str], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        missing = set(names) - set(await admin.list_topics())
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"topics not listed by the broker after {timeout:g} s: {sorted(missing)}")
        await asyncio.sleep(0.1)


async def produce(
    bootstrap: str,
    topic: str,
    key: bytes | str | None,
    value: bytes | str | None,
    headers: Headers | None = None,
) -> tuple[int, int]:
    """Produce one record and wait for its acknowledgement; returns ``(partition, offset)``.

    str keys and values are UTF-8 encoded. The default partitioner (murmur2 of the key) is used,
    the same as every producer of the project, so the record lands where the contract says.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topic,
            value.encode() if isinstance(value, str) else value,
            key=key.encode() if isinstance(key, str) else key,
            headers=list(headers) if headers else None,
        )
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def produce_batch(
    bootstrap: str,
    topic: str,
    partition: int,
    records: Sequence[tuple[bytes, bytes, Headers | None]],
) -> int:
    """Produce ``(key, value, headers)`` records to one partition as ONE record batch; returns the
    offset of its first record.

    A batch of several records is what a busy producer writes (the processor, the demo); some
    brokers (Tansu) answer ListOffsets(latest) with the last batch's base offset + 1, so only a
    batch, not records produced one by one, shows an end offset taken from that answer.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for key, value, headers in records:
            appended = batch.append(key=key, value=value, timestamp=None, headers=list(headers or []))
            assert appended is not None, "the records do not fit in one batch"
        meta = await (await producer.send_batch(batch, topic, partition=partition))
    finally:
        await producer.stop()
    return int(meta.offset)


async def consume_until(
    bootstrap: str,
    topic: str,
    *,
    count: int = 1,
    predicate: Callable[[ConsumerRecord[bytes, bytes]], bool] | None = None,
    # A plain deadline rather than asyncio.timeout: the failure must say what was read by then.
    timeout: float = 15.0,  # noqa: ASYNC109
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``count`` records match ``predicate`` (all match when None).

    Reads every partition without a consumer group (nothing is committed, so any number of calls
    see the same records). Returns the first ``count`` matching records in arrival order; fails
    with an AssertionError naming what it did see when ``timeout`` seconds pass first.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    matched: list[ConsumerRecord[bytes, bytes]] = []
    seen = 0
    try:
        deadline = time.monotonic() + timeout
        # topics() refreshes the metadata, so a topic created a moment ago is found.
        while topic not in await consumer.topics():
            if time.monotonic() > deadline:
                raise AssertionError(f"topic {topic} does not exist after {timeout:g} s")
            await asyncio.sleep(0.1)
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while len(matched) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{topic}: {len(matched)} of {count} matching records after {timeout:g} s "
                    f"({seen} records read)"
                )
            batches = await consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for records in batches.values():
                for record in records:
                    seen += 1
                    if predicate is None or predicate(record):
                        matched.append(record)
    finally:
        await consumer.stop()
    return matched[:count]


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of ``group``'s committed offsets on ``topic``'s partitions (0 where nothing is committed).

    Asks through a consumer of the group that never joins it (``committed()`` needs no assignment),
    the way the processor reads its own offsets: the admin client's OffsetFetch is not one every
    broker here answers.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer.topics()  # refresh the metadata once
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        offsets = await committed_offsets(consumer, tps, group=group)
    finally:
        await consumer.stop()
    return sum(off for off in offsets.values() if off)


async def wait_committed(
    bootstrap: str,
    group: str,
    topic: str,
    total: int,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> None:
    """Wait until ``group`` has committed ``total`` records of ``topic``: a condition, not a sleep.

    A group commits an input only once it is processed (its outputs delivered and, for the
    processor, its changelog written), so this is how a test knows a record was handled before it
    asserts that nothing came of it.
    """
    deadline = time.monotonic() + timeout
    while (seen := await committed_total(bootstrap, group, topic)) < total:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{group} committed {seen} of {total} records of {topic} after {timeout:g} s"
            )
        await asyncio.sleep(0.1)
