"""Broker-free stand-ins for the processor's aiokafka clients, with aiokafka's position semantics.

Only what the processor's turn calls is modelled, and modelled as aiokafka does it: ``getmany()``
returns records from each assigned partition's position and moves the position past them; ``seek``
moves it; ``commit`` stores offsets that ``committed`` answers; a partition not assigned refuses a
seek. A test scripts the group coordinator through :attr:`FakeConsumer.during_getmany`, a
coroutine run inside a ``getmany()`` call, which is where aiokafka's rebalance callbacks land.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord, TopicPartition


def record(tp: TopicPartition, offset: int, key: bytes, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, key, value, None, len(key), len(value), [])


class FakeConsumer:
    """The group consumer: per-partition logs, positions, an assignment and committed offsets."""

    def __init__(self) -> None:
        self.logs: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.commits: dict[TopicPartition, int] = {}
        self.commit_calls: list[dict[TopicPartition, int]] = []
        #: Run inside the next getmany() call, then cleared: where a rebalance lands.
        self.during_getmany: Callable[[], Awaitable[None]] | None = None
        self.getmany_calls = 0
        #: Answers of committed() before the real one, e.g. an exception for a coordinator error.
        self.committed_script: list[BaseException] = []
        self.fail_commits = 0
        #: Called inside the next commits (e.g. a revoke landing mid-commit).
        self.on_commit: Callable[[], None] | None = None

    def append(self, tp: TopicPartition, key: bytes, value: bytes, *, offset: int | None = None) -> None:
        """Append a record; an ``offset`` past the end leaves a hole (like transaction markers)."""
        log = self.logs[tp]
        nxt = log[-1].offset + 1 if log else 0
        log.append(record(tp, nxt if offset is None else offset, key, value))

    def assign_now(self, tps: set[TopicPartition]) -> None:
        """What aiokafka does on an assignment: positions start at the committed offsets."""
        self.assigned = set(tps)
        self.positions = {tp: self.commits.get(tp, 0) for tp in tps}

    # ---- the aiokafka API the processor uses
    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.getmany_calls += 1
        hook, self.during_getmany = self.during_getmany, None
        if hook is not None:
            await hook()
        else:
            await asyncio.sleep(0)
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for tp in sorted(self.assigned):
            pos = self.positions[tp]
            records = [r for r in self.logs[tp] if r.offset >= pos]
            if max_records is not None:
                records = records[:max_records]
            if records:
                out[tp] = records
                self.positions[tp] = records[-1].offset + 1
        return out

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        if tp not in self.assigned:
            raise IllegalStateError(f"No current assignment for partition {tp}")
        return self.positions[tp]

    async def committed(self, tp: TopicPartition) -> int | None:
        if self.committed_script:
            raise self.committed_script.pop(0)
        return self.commits.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise CommitFailedError("injected: the group refused the commit")
        if self.on_commit is not None:
            self.on_commit()
        self.commit_calls.append(dict(offsets))
        self.commits.update(offsets)

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def highwater(self, tp: TopicPartition) -> int:
        log = self.logs[tp]
        return log[-1].offset + 1 if log else 0


class Log:
    """What the fake producers wrote, per (topic, partition), as a broker would keep it."""

    def __init__(self) -> None:
        self.records: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Any) -> int:
        tp = TopicPartition(topic, partition)
        log = self.records[tp]
        offset = len(log)
        log.append(
            ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, 0, 0, list(headers or []))
        )
        return offset

    def values(self, topic: str) -> list[tuple[bytes | None, bytes | None]]:
        return [(r.key, r.value) for tp, recs in self.records.items() if tp.topic == topic for r in recs]


class FakeRestorer:
    """The restore consumer: reads back what the fake producers wrote (the changelog)."""

    def __init__(self, log: Log | None = None) -> None:
        self.log = log or Log()
        self.pos: dict[TopicPartition, int] = {}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log.records[tp]) for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.pos = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        out = {}
        for tp in tps:
            recs = self.log.records[tp][self.pos[tp] :]
            if recs:
                out[tp] = recs
                self.pos[tp] += len(recs)
        return out

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.log.records[tp])

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]

    def pause(self, *tps: TopicPartition) -> None:
        pass

    def unsubscribe(self) -> None:
        self.pos = {}


class _Batch:
    """aiokafka's BatchBuilder as far as ``produce()`` uses it: closed, it takes nothing more; over
    ``max_bytes`` of values, it refuses a record, and closes. Like aiokafka's, an empty batch takes
    any record, unless ``refuse_oversize`` models a builder that would not."""

    def __init__(self, max_bytes: int | None = None, refuse_oversize: bool = False) -> None:
        self.items: list[tuple[bytes | None, bytes | None, Any]] = []
        self.closed = False
        self.max_bytes = max_bytes
        self.refuse_oversize = refuse_oversize
        self.size = 0

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: Any, headers: Any) -> object:
        if self.closed:
            return None  # as aiokafka's BatchBuilder: a closed batch takes nothing more
        size = len(value or b"")
        full = self.max_bytes is not None and self.size + size > self.max_bytes
        if full and (self.items or self.refuse_oversize):
            self.closed = True  # as aiokafka's: a refused record closes the batch
            return None
        self.items.append((key, value, headers))
        self.size += size
        return object()

    def close(self) -> None:
        self.closed = True

    def record_count(self) -> int:
        return len(self.items)


@dataclass
class _Meta:
    offset: int


@dataclass
class Sent:
    topic: str
    partition: int | None
    key: bytes | None
    value: bytes | None


class FakeProducer:
    """A producer whose sends are delivered at once into a :class:`Log`; ``fail`` injects failures.

    ``fail[topic] = n``: the next n sends to ``topic`` fail (as a broker refusing the produce).
    ``fail_delivery[topic] = n``: the next n sends to ``topic`` are taken, but their delivery fails
    (the future's exception, as a batch that expires or is refused after the send returned).
    """

    def __init__(self, log: Log | None = None) -> None:
        self.log = log or Log()
        self.sent: list[Sent] = []
        self.fail: dict[str, int] = {}
        self.fail_delivery: dict[str, int] = {}
        #: Batches handed over still open: aiokafka would hold each back for linger_ms.
        self.open_batches = 0
        #: What each batch takes (values' bytes; None: no limit), and whether an empty one refuses
        #: a record larger than that (aiokafka's never does).
        self.batch_bytes: int | None = None
        self.refuse_oversize = False
        #: Records each batch handed over held, in order.
        self.batch_sizes: list[int] = []

    def _check(self, topic: str) -> None:
        if self.fail.get(topic, 0) > 0:
            self.fail[topic] -= 1
            raise KafkaConnectionError(f"injected: produce to {topic} failed")

    def _deliver(
        self, topic: str, partition: int | None, items: list[tuple[Any, Any, Any]]
    ) -> asyncio.Future[_Meta]:
        fut: asyncio.Future[_Meta] = asyncio.get_running_loop().create_future()
        if self.fail_delivery.get(topic, 0) > 0:
            self.fail_delivery[topic] -= 1
            fut.set_exception(KafkaTimeoutError(f"injected: delivery to {topic} failed"))
            return fut
        first = -1
        for key, value, headers in items:
            self.sent.append(Sent(topic, partition, key, value))
            off = self.log.append(topic, partition or 0, key, value, headers)
            first = off if first < 0 else first
        fut.set_result(_Meta(first))
        return fut

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Any = None,
    ) -> asyncio.Future[_Meta]:
        self._check(topic)
        return self._deliver(topic, partition, [(key, value, headers)])

    def create_batch(self) -> _Batch:
        return _Batch(self.batch_bytes, self.refuse_oversize)

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[_Meta]:
        self._check(topic)
        self.open_batches += not batch.closed
        self.batch_sizes.append(len(batch.items))
        return self._deliver(topic, partition, batch.items)
