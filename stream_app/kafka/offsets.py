"""Committed offsets that are known, or an error: never a silent "nothing committed".

With :func:`~stream_app.kafka.compat.install_fixes` installed, aiokafka's ``committed()`` answers
``None`` only when the coordinator itself says the partition has no committed offset; while the
coordinator is loading or moving it keeps asking. This module bounds that wait and turns a
coordinator that never answers into :class:`~stream_app.kafka.errors.CommittedOffsetUnknown`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndTimestamp, TopicPartition

from stream_app.kafka.errors import CommittedOffsetUnknown

#: How long a committed-offset fetch may take before the partitions are given up for this turn.
#: Kafka loads a group's offsets in seconds after a coordinator move; 30 s is far past that and
#: well under the group's rebalance timeout, so the member is not evicted while it waits.
COMMITTED_TIMEOUT_S = 30.0


async def committed_offsets(
    consumer: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    *,
    group: str,
    timeout_s: float = COMMITTED_TIMEOUT_S,
) -> dict[TopicPartition, int | None]:
    """The committed offset of each partition (None: the group never committed one).

    Raises :class:`CommittedOffsetUnknown` when the coordinator does not answer within ``timeout_s``
    or answers with an error that is not retriable.
    """
    wanted = sorted(set(tps))
    if not wanted:
        return {}
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(consumer.committed(tp) for tp in wanted)), timeout_s
        )
    except (KafkaError, TimeoutError) as exc:
        detail = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        raise CommittedOffsetUnknown(
            group, [f"{tp.topic}[{tp.partition}]" for tp in wanted], timeout_s, detail
        ) from None
    return {tp: None if off is None else int(off) for tp, off in zip(wanted, answers, strict=True)}


class TimeIndex(Protocol):
    """The one consumer call :func:`offsets_at_time` needs (an AIOKafkaConsumer; a fake in tests)."""

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]: ...


async def offsets_at_time(
    consumer: TimeIndex, tps: Iterable[TopicPartition], when_ms: int
) -> dict[TopicPartition, OffsetAndTimestamp | None]:
    """Per partition, the first offset with a timestamp at or after epoch ms ``when_ms`` (None: none).

    aiokafka's ``offsets_for_times``, but a time before 1970 asks for 0: aiokafka refuses a negative
    time with a plain ValueError, not the KafkaError its callers handle (``report --since
    1969-...`` ended in a traceback), and a topic has no record before 1970, so reading from the
    start is what was asked.
    """
    found: dict[TopicPartition, OffsetAndTimestamp | None] = await consumer.offsets_for_times(
        dict.fromkeys(tps, max(0, when_ms))
    )
    return found
