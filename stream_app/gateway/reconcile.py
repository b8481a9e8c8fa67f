"""After a restart: which statuses the sent-log holds as RESULT were already published.

A crash between a status's publication on ``delivery-status`` and its DONE record on the sent-log
leaves RESULT behind; publishing it again would repeat the status. The broker has no transactions to
make the two one step (Tansu), so when a partition's sent-log is restored the tail of
``delivery-status`` written since the oldest such entry is read and compared byte for byte (the
payload carries its own ``occurredAt``, so it is unique).

The read runs while the dispatcher takes its partitions (their commands wait for it), so it is
bounded: it ends at each partition's end offset as the consumer's position counts it (past
transaction markers and aborted records, which no record returned ever reaches), and its fetches
stop after :data:`RECONCILE_MAX_S` (the offset look-ups and DONE writes around them have their own
timeouts). A RESULT it could not confirm is published again: a repeated status, which the processor
takes as no change, never a lost one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from stream_app.config import Settings
from stream_app.gateway.kafka import start_client
from stream_app.gateway.sentlog import SendState, SentLog
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.offsets import offsets_at_time
from stream_app.logs import event as log_event

log = logging.getLogger("stream_app.gateway")

#: Statuses are looked for from this long before the oldest unconfirmed one was recorded (10 s: room
#: for the producer's linger and retries, and for clock steps between the two processes' writes).
RECONCILE_MARGIN_MS = 10_000
#: How long the fetches may hold the dispatcher's partitions back (20 s: the tail since a crash is
#: seconds of statuses, read at tens of thousands a second; and well within the group's rebalance
#: timeout, the HTTP timeout + 35 s, which a rebalance starting during this callback waits on).
RECONCILE_MAX_S = 20.0
#: One fetch's wait (ms): short, so the deadline is looked at often.
_FETCH_MS = 500


class TailReader(Protocol):
    """What the read needs of a consumer (an AIOKafkaConsumer; a fake in the broker-free tests)."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]: ...

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]: ...

    async def position(self, partition: TopicPartition) -> int: ...


async def reconcile_results(settings: Settings, sent: SentLog) -> int:
    """Mark DONE every RESULT entry of ``sent`` already on ``delivery-status``; how many were."""
    results = [(p, cid, e) for p, cid, e in sent.entries() if e.state is SendState.RESULT]
    if not results:
        return 0
    since = min(e.at_ms for _, _, e in results) - RECONCILE_MARGIN_MS
    topic = settings.topics.delivery_status
    # earliest: were the start deleted by retention meanwhile, read from what is left, not skip to the end.
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await start_client(consumer, settings)
    try:
        tps = [TopicPartition(topic, p) for p in range((await topic_partitions(consumer)).get(topic, 0))]
        confirmed = await confirm_published(consumer, tps, since, sent)
    finally:
        await consumer.stop()
    if confirmed:
        log.info("sent-log: %d statuses were already published before the restart", confirmed)
    return confirmed


async def confirm_published(
    consumer: TailReader,
    tps: list[TopicPartition],
    since_ms: int,
    sent: SentLog,
    *,
    max_s: float = RECONCILE_MAX_S,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Read ``tps`` from ``since_ms`` to their end offsets (as they are now), marking DONE each RESULT
    entry of ``sent`` found there; stop early when all are found, or after ``max_s``."""
    waiting = {e.payload: (p, cid) for p, cid, e in sent.entries() if e.state is SendState.RESULT}
    if not waiting or not tps:
        return 0
    deadline = clock() + max_s
    ends = await consumer.end_offsets(tps)
    starts = await offsets_at_time(consumer, tps, since_ms)  # a time before 1970 asks for 0
    todo = {tp: found.offset for tp, found in starts.items() if found is not None and found.offset < ends[tp]}
    # Only the partitions to read: an assigned one is fetched ahead in the background.
    consumer.assign(sorted(todo))
    for tp, start in todo.items():
        consumer.seek(tp, start)
    remaining = set(todo)
    confirmed = 0
    while remaining and waiting:
        if clock() >= deadline:
            log_event(
                log,
                logging.WARNING,
                "sentlog_reconcile_cut_short",
                unconfirmed=len(waiting),
                seconds=max_s,
                hint="their statuses are published again (a repeat, which the processor ignores)",
            )
            break
        for records in (await consumer.getmany(*remaining, timeout_ms=_FETCH_MS)).values():
            for record in records:
                hit = waiting.pop(record.value or b"", None)
                if hit is not None:
                    await sent.put(hit[0], hit[1], SendState.DONE, record.timestamp)
                    confirmed += 1
        # The position, not the last record: a transaction's marker (or an aborted record) at the
        # tail is never returned, and waiting for a record at end - 1 would never end.
        for tp in list(remaining):
            if await consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    return confirmed
