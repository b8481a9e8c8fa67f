"""One turn's checkpoint: what it staged, and the one object that makes all of it durable in order.

A :class:`Checkpoint` collects, per input partition, the outputs (commands, outcomes, dead letters),
the state changes (the latest per key) and the input offsets a turn staged. :meth:`Checkpoint.commit`
then runs DESIGN.md rule 3 end to end with a :class:`Committer`:

* :class:`AtLeastOnce`: outputs, await their delivery, then the changelog, await it, then the input
  offsets; a crash between the steps can only repeat an effect (same commandId / outcome).
* :class:`Transactional` (exactly_once): per partition, outputs, changelog and offsets in one
  transaction of that partition's producer.

and finally flushes each store with its changelog offset, unless a rebalance began meanwhile (the
group may already have handed the partitions to another instance; a restore rebuilds them). Plain
slots dataclasses, grouped by input partition, because the commit works partition by partition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream_app.runtime.logs import LOGGER, log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.produce import Out, all_delivered, produce
from stream_app.store import PartitionStore, input_header


@dataclass(slots=True, init=False)
class Change:
    """The latest state of one key in this checkpoint, and the inputs that led to it.

    One per changed key per turn: ``__init__`` is written out (compiled as C; see fallback/state.py).
    """

    record: bytes | None  # the changelog value (state and timer) the store staged; None: deleted
    req_offset: int
    status_offset: int

    def __init__(self, record: bytes | None, req_offset: int = -1, status_offset: int = -1) -> None:
        self.record = record
        self.req_offset = req_offset
        self.status_offset = status_offset


@dataclass(slots=True)
class Checkpoint:
    """Everything one turn stages, by input partition, and its commit."""

    generation: int = 0
    outputs: dict[int, list[Out]] = field(default_factory=lambda: defaultdict(list))
    changes: dict[int, dict[bytes, Change]] = field(default_factory=lambda: defaultdict(dict))
    offsets: dict[int, dict[TopicPartition, int]] = field(default_factory=lambda: defaultdict(dict))

    def empty(self) -> bool:
        return not (self.outputs or self.changes or self.offsets)

    def changed(self, p: int, key: bytes, record: bytes | None) -> Change:
        """Stage the latest changelog value of ``key`` (one record per key per checkpoint)."""
        changes = self.changes[p]
        change = changes.get(key)
        if change is None:
            change = changes[key] = Change(record)
        else:
            change.record = record
        return change

    def changelog_records(self, p: int, changelog: str) -> list[Out]:
        """The changelog records of partition ``p``'s changes (one per key: its latest state)."""
        return [
            Out(changelog, key, ch.record, [input_header(ch.req_offset, ch.status_offset)], p)
            for key, ch in self.changes[p].items()
        ]

    async def commit(
        self, committer: Committer, stores: Mapping[int, PartitionStore], generation: Callable[[], int]
    ) -> bool:
        """Make everything durable in order, then flush the stores; False when a rebalance began.

        On False nothing is flushed: the caller drops the stores' staged writes (a restore rebuilds
        them from the changelog, which now holds them). Any Kafka error propagates before the flush,
        so a failed commit never leaves a store ahead of the changelog.
        """
        changelog_offsets = await committer.commit(self)
        if generation() != self.generation:
            return False
        for p in self.changes:
            store = stores.get(p)
            if store is not None:
                store.flush(changelog_offsets.get(p))
        return True


class Committer(Protocol):
    async def commit(self, ck: Checkpoint) -> dict[int, int]:
        """Make ``ck`` durable; the last changelog offset written per partition."""
        ...


@dataclass(slots=True)
class AtLeastOnce:
    """Outputs, then (once all are delivered) the changelog, then the input offsets' commit."""

    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer
    changelog: str
    metrics: Metrics

    async def commit(self, ck: Checkpoint) -> dict[int, int]:
        counts: dict[str, int] = defaultdict(int)
        outputs = [o for outs in ck.outputs.values() for o in outs]
        for o in outputs:
            counts[o.topic] += 1
        sent = await produce(self.producer, outputs)
        t_sent = time.monotonic()
        await all_delivered([f for f, _ in sent])
        t_delivered = time.monotonic()
        # Only now the changelog: a state must never be durable before the effects it implies.
        cl_sent: list[tuple[int, asyncio.Future[Any], int]] = []
        for p in ck.changes:
            records = ck.changelog_records(p, self.changelog)
            counts[self.changelog] += len(records)
            cl_sent.extend((p, fut, n) for fut, n in await produce(self.producer, records))
        metas = await all_delivered([fut for _, fut, _ in cl_sent])
        offsets: dict[int, int] = {}
        for (p, _, n), meta in zip(cl_sent, metas, strict=True):
            offsets[p] = max(offsets.get(p, -1), meta.offset + n - 1)
        t_changelog = time.monotonic()
        commit = {tp: off for parts in ck.offsets.values() for tp, off in parts.items()}
        if commit:
            await self.consumer.commit(commit)
        for topic, n in counts.items():
            self.metrics.records_out.labels(topic).inc(n)
        if LOGGER.isEnabledFor(logging.DEBUG):
            log(
                logging.DEBUG,
                "turn_completed",
                outputs=len(outputs),
                changelog=counts[self.changelog],
                deliver_ms=round((t_delivered - t_sent) * 1000, 1),
                changelog_ms=round((t_changelog - t_delivered) * 1000, 1),
                commit_ms=round((time.monotonic() - t_changelog) * 1000, 1),
            )
        return offsets


@dataclass(slots=True)
class Transactional:
    """Each partition's outputs, changelog and input offsets in one transaction of its own producer."""

    producers: Mapping[int, AIOKafkaProducer]
    changelog: str
    group: str
    metrics: Metrics

    async def _one(self, ck: Checkpoint, p: int) -> tuple[int, int | None]:
        # Outputs, changelog and input offsets of partition p in one transaction of p's own
        # producer: all durable and committed together, or none (read_committed readers).
        producer = self.producers[p]
        outputs = ck.outputs.get(p, [])
        records = ck.changelog_records(p, self.changelog)
        last: int | None = None
        async with producer.transaction():
            sent = await produce(producer, outputs)
            cl_sent = await produce(producer, records)
            offsets = ck.offsets.get(p)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group)
            await all_delivered([f for f, _ in sent])
            metas = await all_delivered([f for f, _ in cl_sent])
            for meta, (_, n) in zip(metas, cl_sent, strict=True):
                last = max(last if last is not None else -1, meta.offset + n - 1)
        counts: dict[str, int] = defaultdict(int)
        for o in outputs:
            counts[o.topic] += 1
        counts[self.changelog] += len(records)
        # Once per topic, not per record: a labelled child's lookup takes a lock and builds a key,
        # 3% of the whole turn's CPU when it ran per output (bench/throughput.py --mock).
        for topic, n in counts.items():
            self.metrics.records_out.labels(topic).inc(n)
        return p, last

    async def commit(self, ck: Checkpoint) -> dict[int, int]:
        parts = set(ck.outputs) | set(ck.changes) | set(ck.offsets)
        # Every partition's transaction settles (commits or aborts) before a failure is raised: the
        # retry that follows stops producers and rewinds, which must not meet a transaction mid-commit.
        results = await asyncio.gather(*(self._one(ck, p) for p in sorted(parts)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        done = cast(list[tuple[int, int | None]], results)
        return {p: last for p, last in done if last is not None}
