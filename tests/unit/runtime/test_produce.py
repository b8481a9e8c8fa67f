"""``produce()``: a turn's records into whole batches per partition, in order, none dropped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from stream_app.runtime.produce import Out, all_delivered, produce
from tests.unit.runtime.fakes import FakeProducer


async def _produce(producer: FakeProducer, outs: list[Out]) -> list[int]:
    sent = await produce(producer, outs)  # type: ignore[arg-type]
    await all_delivered([fut for fut, _ in sent])
    return [n for _, n in sent]


def _values(producer: FakeProducer, topic: str, partition: int) -> list[bytes | None]:
    return [s.value for s in producer.sent if s.topic == topic and s.partition == partition]


async def test_records_of_a_partition_go_in_batches_in_their_order() -> None:
    producer = FakeProducer()
    producer.batch_bytes = 10  # five 2-byte values a batch
    outs = [Out("t", b"k", b"%02d" % i, [], i % 2) for i in range(14)]
    counts = await _produce(producer, outs)
    assert _values(producer, "t", 0) == [b"%02d" % i for i in range(0, 14, 2)]
    assert _values(producer, "t", 1) == [b"%02d" % i for i in range(1, 14, 2)]
    assert producer.batch_sizes == [5, 2, 5, 2] and sum(counts) == 14
    assert producer.open_batches == 0  # each closed before the hand-over: none lingers


async def test_records_without_a_partition_go_through_send() -> None:
    producer = FakeProducer()
    counts = await _produce(producer, [Out("dl", b"k", b"v", []), Out("t", b"k", b"w", [], 3)])
    assert counts == [1, 1] and producer.batch_sizes == [1]  # one send(), one batch
    assert [(s.topic, s.partition) for s in producer.sent] == [("dl", None), ("t", 3)]


async def test_a_record_larger_than_a_batch_travels_alone_in_a_fresh_one() -> None:
    producer = FakeProducer()
    producer.batch_bytes = 10
    outs = [Out("t", b"k", v, [], 0) for v in (b"a", b"x" * 50, b"b")]
    await _produce(producer, outs)
    assert _values(producer, "t", 0) == [b"a", b"x" * 50, b"b"]
    assert producer.batch_sizes == [1, 1, 1]


async def test_after_a_record_no_batch_takes_the_rest_go_in_batches_again_regression() -> None:
    # aiokafka's builder takes any record into an empty batch (next test), so produce()'s send()
    # branch for a record that even an empty batch refuses does not run with it. Were a builder to
    # refuse one, the record must still go, in its place in the partition, not be dropped. The
    # refusal closes that batch: every record after it went through send() one by one, until the
    # branch started a fresh batch.
    producer = FakeProducer()
    producer.batch_bytes, producer.refuse_oversize = 10, True
    outs = [Out("t", b"k", v, [], 0) for v in (b"a", b"x" * 50, b"y" * 50, b"b")]
    counts = await _produce(producer, outs)
    assert _values(producer, "t", 0) == [b"a", b"x" * 50, b"y" * 50, b"b"]
    # a batch, send() twice (no empty batch handed over between them), a batch
    assert producer.batch_sizes == [1, 1] and counts == [1, 1, 1, 1]


async def test_aiokafka_takes_any_record_into_an_empty_batch() -> None:
    """Why the branch above is only a guard: the real builder's first record is never refused."""
    producer = AIOKafkaProducer(bootstrap_servers="unused:9092", max_batch_size=1024)  # never started
    try:
        batch = producer.create_batch()
        assert batch.append(key=b"k", value=b"x" * 10_000, timestamp=None, headers=[]) is not None
        full: Any = producer.create_batch()
        assert full.append(key=b"k", value=b"x" * 100, timestamp=None, headers=[]) is not None
        assert full.append(key=b"k", value=b"x" * 10_000, timestamp=None, headers=[]) is None
        # A dead letter keeps its input's headers, a header without a value (None) included.
        kept: Any = producer.create_batch()
        assert kept.append(key=b"k", value=b"v", timestamp=None, headers=[("x", None)]) is not None
    finally:
        await producer.stop()


async def test_a_cancelled_wait_leaves_the_producers_delivery_futures_alone() -> None:
    """A stop cancels the turn while it waits for deliveries. With ``gather`` that cancelled the
    producer's own futures, and aiokafka's abort no longer waited for those batches: it could end
    the transaction while one was still retried (a hanging transaction before KIP-890)."""
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    futures[0].set_result("meta")
    waiting = asyncio.create_task(all_delivered(futures))
    await asyncio.sleep(0)  # a yield: the wait is now parked on the futures
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert [f.cancelled() for f in futures] == [False, False, False]
    for future in futures[1:]:
        future.set_result("meta")  # the producer still settles them, as aiokafka's sender does


async def test_all_delivered_raises_the_first_failure_after_all_settled() -> None:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]
    waiting = asyncio.create_task(all_delivered(futures))
    futures[1].set_exception(ValueError("refused"))
    await asyncio.sleep(0)
    assert not waiting.done()  # still waits for the other two
    futures[2].set_result("m2")
    futures[0].set_result("m0")
    with pytest.raises(ValueError, match="refused"):
        await waiting
    ok = [loop.create_future() for _ in range(2)]
    for i, future in enumerate(ok):
        future.set_result(i)
    assert await all_delivered(ok) == [0, 1]
