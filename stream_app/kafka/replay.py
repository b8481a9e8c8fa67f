"""Reading partitions of a compacted topic from a start offset to their end: one rule, one place.

Both restores of the project (the processor's state stores from their changelog, the dispatcher's
sent-log) read partitions back to their end before the partitions count as owned. The end is the
high watermark of a fetch answer, not ListOffsets(latest): some brokers (Tansu) answer that with the
last batch's base offset + 1, so a partition is caught up only once its position reaches the high
watermark the fetch itself reported. Partitions are read together by one consumer; one that is
caught up is paused, so the fetcher stops asking for it while the others finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

#: Records per fetch round of a replay.
REPLAY_BATCH = 20_000
#: Progress is reported at most this often (seconds).
PROGRESS_EVERY_S = 2.0

#: ``apply(tp, records)``: records of one fetch answer of ``tp``, in offset order.
Apply = Callable[[TopicPartition, list[ConsumerRecord[Any, Any]]], None]
#: ``advanced(tp, position, end)``: after each fetch round, every partition still replaying whose end
#: is known (its high watermark), and ``caught_up(tp, end)`` once its position has reached it.
Advanced = Callable[[TopicPartition, int, int], None]
CaughtUp = Callable[[TopicPartition, int], None]
#: ``progress(records read so far, {tp: records still to read})`` while partitions remain.
Progress = Callable[[int, dict[TopicPartition, int]], None]


async def replay_to_end(
    rc: AIOKafkaConsumer,
    starts: Mapping[TopicPartition, int],
    ends: Mapping[TopicPartition, int],
    apply: Apply,
    *,
    caught_up: CaughtUp | None = None,
    advanced: Advanced | None = None,
    progress: Progress | None = None,
) -> int:
    """Read each partition of ``starts`` from its start offset to its end; returns the records read.

    ``ends`` is the first guess of each end (ListOffsets), used for progress until a fetch answer
    gives the high watermark. The consumer is assigned the partitions and unsubscribed at the end,
    whatever happens.
    """
    todo = {tp: ends[tp] for tp in starts}
    if not starts:
        return 0
    rc.assign(list(starts))
    for tp, start in starts.items():
        rc.seek(tp, start)
    positions = dict(starts)
    last_log = time.monotonic()
    total = 0
    try:
        while todo:
            batch = await rc.getmany(*todo, timeout_ms=1000, max_records=REPLAY_BATCH)
            for tp, records in batch.items():
                apply(tp, records)
                total += len(records)
            for tp in list(todo):
                hw = rc.highwater(tp)
                if hw is None:
                    continue  # no fetch answer yet: the end is not known
                todo[tp] = hw
                positions[tp] = position = await rc.position(tp)
                if advanced is not None:
                    advanced(tp, position, hw)
                if position >= hw:
                    rc.pause(tp)
                    del todo[tp]
                    if caught_up is not None:
                        caught_up(tp, hw)
            now = time.monotonic()
            if todo and progress is not None and now - last_log >= PROGRESS_EVERY_S:
                last_log = now
                progress(total, {tp: max(0, end - positions[tp]) for tp, end in todo.items()})
    finally:
        rc.unsubscribe()
    return total
