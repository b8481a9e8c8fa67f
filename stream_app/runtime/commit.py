"""Completing a turn: making its outputs, state changes and input offsets durable, in DESIGN.md's order.

at_least_once: outputs, then the changelog, then the offsets' commit (the stores flush after, in
the processor). exactly_once: all three of a partition in one Kafka transaction of that partition's
producer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.runtime.changelog import input_header
from stream_app.runtime.logs import LOGGER, log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.produce import all_delivered, produce
from stream_app.runtime.work import Out, Work


def changelog_records(work: Work, p: int, changelog: str) -> list[Out]:
    """The changelog records of partition ``p``'s changes, each with its input-offsets header."""
    return [
        Out(changelog, key, ch.record, [input_header(ch.req_offset, ch.status_offset)], p)
        for key, ch in work.changes[p].items()
    ]


async def complete_at_least_once(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    work: Work,
    changelog: str,
    metrics: Metrics,
) -> dict[int, int]:
    """Outputs, then (once all are delivered) the changelog, then the input offsets' commit.

    Returns the last changelog offset written per partition, for the stores' flush. A crash between
    the steps can only repeat an effect (same commandId / outcome), never lose one.
    """
    counts: dict[str, int] = defaultdict(int)
    outputs = [o for outs in work.outputs.values() for o in outs]
    for o in outputs:
        counts[o.topic] += 1
    sent = await produce(producer, outputs)
    t_sent = time.monotonic()
    await all_delivered([f for f, _ in sent])
    t_delivered = time.monotonic()
    # Only now the changelog: a state must never be durable before the effects it implies.
    cl_sent: list[tuple[int, asyncio.Future[Any], int]] = []
    for p in work.changes:
        records = changelog_records(work, p, changelog)
        counts[changelog] += len(records)
        cl_sent.extend((p, fut, n) for fut, n in await produce(producer, records))
    metas = await all_delivered([fut for _, fut, _ in cl_sent])
    offsets: dict[int, int] = {}
    for (p, _, n), meta in zip(cl_sent, metas, strict=True):
        offsets[p] = max(offsets.get(p, -1), meta.offset + n - 1)
    t_changelog = time.monotonic()
    commit = {tp: off for parts in work.offsets.values() for tp, off in parts.items()}
    if commit:
        await consumer.commit(commit)
    for topic, n in counts.items():
        metrics.records_out.labels(topic).inc(n)
    if LOGGER.isEnabledFor(logging.DEBUG):
        log(
            logging.DEBUG,
            "turn_completed",
            outputs=len(outputs),
            changelog=counts[changelog],
            deliver_ms=round((t_delivered - t_sent) * 1000, 1),
            changelog_ms=round((t_changelog - t_delivered) * 1000, 1),
            commit_ms=round((time.monotonic() - t_changelog) * 1000, 1),
        )
    return offsets


async def complete_transactional(
    producers: dict[int, AIOKafkaProducer],
    work: Work,
    changelog: str,
    group: str,
    metrics: Metrics,
) -> dict[int, int]:
    """Each partition's outputs, changelog and input offsets in one transaction of its own producer.

    Returns the last changelog offset written per partition, for the stores' flush.
    """

    async def one(p: int) -> tuple[int, int | None]:
        # Outputs, changelog and input offsets of partition p in one transaction of p's own
        # producer: all durable and committed together, or none (read_committed readers).
        producer = producers[p]
        outputs = work.outputs.get(p, [])
        records = changelog_records(work, p, changelog)
        last: int | None = None
        async with producer.transaction():
            sent = await produce(producer, outputs)
            cl_sent = await produce(producer, records)
            offsets = work.offsets.get(p)
            if offsets:
                await producer.send_offsets_to_transaction(offsets, group)
            await all_delivered([f for f, _ in sent])
            metas = await all_delivered([f for f, _ in cl_sent])
            for meta, (_, n) in zip(metas, cl_sent, strict=True):
                last = max(last if last is not None else -1, meta.offset + n - 1)
        for o in outputs:
            metrics.records_out.labels(o.topic).inc()
        metrics.records_out.labels(changelog).inc(len(records))
        return p, last

    parts = set(work.outputs) | set(work.changes) | set(work.offsets)
    # Every partition's transaction settles (commits or aborts) before a failure is raised: the
    # retry that follows stops producers and rewinds, which must not meet a transaction mid-commit.
    results = await asyncio.gather(*(one(p) for p in sorted(parts)), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return {p: last for p, last in cast(list[tuple[int, int | None]], results) if last is not None}
