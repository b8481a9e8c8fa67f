"""Restoring partition stores from the changelog: open each store, replay its tail, report progress.

A store that was kept on local disk replays only what follows its flushed changelog offset; a fresh
one replays the whole compacted changelog partition. Changelog records whose input was never
committed are skipped (see :mod:`stream_app.store.changelog`).

A kept store last flushed more than :data:`STALE_STORE_MS` ago is rebuilt from the whole changelog
instead. While it was away, another instance may have ended a flow and deleted it with a tombstone,
and compaction removes a tombstone once ``delete.retention.ms`` has passed: the tail then holds
nothing about that flow, and the kept store would bring it back to life, its timer firing a second
message or a second outcome. (Kafka Streams deletes the state of a task it has not owned for
``state.cleanup.delay.ms`` for the same reason.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Topics
from stream_app.contracts.catalogue import CHANGELOG_TOMBSTONE_MS
from stream_app.kafka.replay import replay_to_end
from stream_app.runtime.logs import log
from stream_app.runtime.metrics import Metrics
from stream_app.store import PartitionStore, uncommitted

#: A tombstone stays in a compacted topic at least ``delete.retention.ms`` after it is written
#: (``topics create`` pins the changelog's at :data:`CHANGELOG_TOMBSTONE_MS`, 24 h). A store flushed
#: within half of that has seen, or will find in the tail, every tombstone written since; the other
#: half is room for the clocks of the broker and of this machine.
STALE_STORE_MS = CHANGELOG_TOMBSTONE_MS // 2


def wall_ms() -> int:
    """This machine's wall clock, in ms (the stores' flush times are written with it)."""
    return time.time_ns() // 1_000_000


def stale(store: PartitionStore, now_ms: int) -> bool:
    """Whether a kept store has been away from its changelog too long to replay only the tail: last
    flushed over :data:`STALE_STORE_MS` ago, or at an unknown time (a store an older version wrote)."""
    if store.changelog_offset is None:
        return False  # nothing kept: the whole changelog is replayed anyway
    flushed = store.flushed_at_ms
    return flushed is None or not 0 <= now_ms - flushed <= STALE_STORE_MS


@dataclass(slots=True)
class Replay:
    """One partition's changelog replay: offsets to read and the committed input offsets."""

    start: int
    end: int
    req_limit: int
    st_limit: int
    applied: int = 0
    skipped: int = 0
    position: int = 0


async def restore(
    rc: AIOKafkaConsumer,
    committed: Mapping[TopicPartition, int | None],
    *,
    root: Path,
    topics: Topics,
    parts: list[int],
    metrics: Metrics,
    trust_list_offsets: bool,
    skipped: dict[int, int] | None = None,
) -> dict[int, PartitionStore]:
    """Open the stores of ``parts`` and replay each changelog tail past its durable offset.

    All partitions are replayed together by one consumer (a partition with nothing to replay costs
    no fetch), with progress logged and exported. A record whose input offset is at or past the
    committed offset of that input is skipped: the input is read again and must meet the state it
    was decided against (DESIGN.md, checkpoint order). ``committed`` holds the committed offset of
    both inputs of every partition in ``parts``, as the coordinator answered it: None only when
    the group never committed one (an unknown offset must never reach here as None, or every
    changelog record would be skipped and the flows wiped). ``skipped``, when given, receives the
    number of records skipped per replayed partition: its caller must know whether that answer
    shaped a store (the store's durable offset moves past what it skipped).
    """
    changelog = topics.changelog
    stores: dict[int, PartitionStore] = {}
    try:
        now = wall_ms()
        for p in parts:
            store = stores[p] = PartitionStore.open(root, changelog, p)
            if stale(store, now):
                away = (
                    None if store.flushed_at_ms is None else round((now - store.flushed_at_ms) / 3_600_000, 1)
                )
                log(
                    logging.WARNING,
                    "store_rebuilt",
                    partition=p,
                    last_flush_hours_ago=away,
                    offset=store.changelog_offset,
                )
                store.reset()
        tps = {p: TopicPartition(changelog, p) for p in parts}
        ends = await rc.end_offsets(list(tps.values()))
        begins = await rc.beginning_offsets(list(tps.values()))
        todo: dict[int, Replay] = {}
        for p, store in stores.items():
            tp, local = tps[p], store.changelog_offset
            start = max(begins[tp], 0 if local is None else local + 1)
            # ends[tp] == 0 is an empty partition. Otherwise fetch even when start >= ends[tp]:
            # some brokers (Tansu) answer ListOffsets(latest) with the last batch's base offset + 1,
            # so the true end is the high watermark of a fetch response (see _replay).
            if ends[tp] > begins[tp] and (start < ends[tp] or not trust_list_offsets):
                todo[p] = Replay(
                    start=start,
                    end=ends[tp],
                    req_limit=committed[TopicPartition(topics.send_requests, p)] or 0,
                    st_limit=committed[TopicPartition(topics.delivery_status, p)] or 0,
                )
        if todo:
            await replay(rc, stores, tps, todo, metrics)
            if skipped is not None:
                skipped.update({p: r.skipped for p, r in todo.items()})
    except BaseException:
        for store in stores.values():
            store.close()
        raise
    return stores


async def replay(
    rc: AIOKafkaConsumer,
    stores: dict[int, PartitionStore],
    tps: dict[int, TopicPartition],
    todo: dict[int, Replay],
    metrics: Metrics,
) -> None:
    """Apply each partition's changelog from ``todo[p].start`` to its end, flushing each store there.

    The reading itself (to the high watermark a fetch reports) is :func:`replay_to_end`'s, shared
    with the dispatcher's sent-log restore.
    """
    for p, r in todo.items():
        metrics.restore_remaining.labels(str(p)).set(r.end - r.start)
    started = time.monotonic()

    def apply(tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        p = tp.partition
        r, store = todo[p], stores[p]
        for rec in records:
            if uncommitted(rec.headers, r.req_limit, r.st_limit):
                r.skipped += 1
                continue
            try:
                store.apply_changelog(rec.key, rec.value, rec.offset)
                r.applied += 1
            except Exception as exc:  # a foreign or corrupt record must not stop a restore
                log(
                    logging.ERROR,
                    "changelog_record_unreadable",
                    partition=p,
                    offset=rec.offset,
                    error=f"{type(exc).__name__}: {exc}",
                )

    def advanced(tp: TopicPartition, position: int, end: int) -> None:
        r = todo[tp.partition]
        r.end, r.position = end, position
        metrics.restore_remaining.labels(str(tp.partition)).set(max(0, end - position))

    def caught_up(tp: TopicPartition, end: int) -> None:
        p = tp.partition
        r = todo[p]
        stores[p].flush(end - 1)
        metrics.restore_records.labels(str(p)).inc(r.applied)
        metrics.restore_skipped.labels(str(p)).inc(r.skipped)
        log(
            logging.INFO,
            "restored",
            partition=p,
            applied=r.applied,
            skipped=r.skipped,
            from_offset=r.start,
            end=end,
            seconds=round(time.monotonic() - started, 3),
            pending_timers=stores[p].pending_count(),
        )

    def progress(total: int, remaining: dict[TopicPartition, int]) -> None:
        log(
            logging.INFO,
            "restore_progress",
            partitions=len(remaining),
            records=total,
            remaining=sum(remaining.values()),
            per_s=int(total / max(time.monotonic() - started, 1e-6)),
        )

    await replay_to_end(
        rc,
        {tps[p]: r.start for p, r in todo.items()},
        {tps[p]: r.end for p, r in todo.items()},
        apply,
        caught_up=caught_up,
        advanced=advanced,
        progress=progress,
    )
