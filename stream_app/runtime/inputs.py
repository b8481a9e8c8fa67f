"""Which fetched input records a turn may process: the skip guard, applied to the group consumer.

:mod:`stream_app.runtime.positions` keeps the bookkeeping; this module acts on it: it seeks a
partition back when a batch cannot be processed now, drops what this generation already processed,
and logs and counts every gap, so an input is never skipped in silence (issue 14).
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.runtime.logs import log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.positions import Check, Positions


def put_back(consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """Seek every still-assigned partition of an unprocessed batch back to its first record."""
    assigned = consumer.assignment()
    for tp, records in batch.items():
        if records and tp in assigned:
            consumer.seek(tp, records[0].offset)


def admit(
    consumer: AIOKafkaConsumer,
    positions: Positions,
    metrics: Metrics,
    tp: TopicPartition,
    records: list[ConsumerRecord],
) -> list[ConsumerRecord]:
    """The records of a fetched batch that may be processed now (see :mod:`.positions`).

    Anything not admitted is either read again (the partition is sought back) or was processed
    already in this generation.
    """
    if not records:
        return records
    first = records[0].offset
    verdict, expected = positions.check(tp, first)
    if verdict is Check.PROCESS:
        return records
    if verdict is Check.UNOWNED:
        # Assigned during this very getmany(), so not restored yet: read these records again
        # once the restore has sought the partition to its committed offset.
        if tp in consumer.assignment():
            consumer.seek(tp, first)
        return []
    metrics.input_gaps.labels(verdict.value).inc()
    fields = {"topic": tp.topic, "partition": tp.partition, "expected": expected, "first": first}
    if verdict is Check.REWIND:
        log(logging.WARNING, "input_gap_rewinding", **fields)
        consumer.seek(tp, expected)
        return []
    if verdict is Check.GAP_REPAIRED:
        log(logging.ERROR, "input_gap_repaired", detail="records had been skipped; read again", **fields)
        return records
    if verdict is Check.GAP_CONFIRMED:
        why = "no readable record there (transaction markers, aborted records, retention)"
        log(logging.INFO, "input_gap_confirmed", detail=why, **fields)
        return records
    # OVERLAP: the records below the expected offset were processed in this generation already.
    log(logging.WARNING, "input_overlap_dropped", **fields)
    return [r for r in records if r.offset >= expected]
