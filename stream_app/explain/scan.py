"""Find one message's records on the topics: only its partition of each, within the bounds asked for.

Every record of a message is keyed by its messageId, so it sits on the partition the contract's
partitioner (:func:`stream_app.kafka.partitioner.partition_of`) gives that key on each topic. The scan
reads that one partition of each topic, from the bounds (a time range, or offsets per topic; the
whole partition by default) to the end offsets seen when it starts, without a consumer group: it
never moves anyone's offsets. ``progress`` is told how far it got, so a long scan can say so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.admin.errors import KafkaFailure
from stream_app.config import Settings
from stream_app.explain.records import EXPLAIN_IDS, GLOBAL_IDS, REQUIRED_IDS, Record, topic_names
from stream_app.kafka.clients import stop_client
from stream_app.kafka.connect import REQUEST_TIMEOUT_MS, start_or_unreachable
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.offsets import offsets_at_time
from stream_app.kafka.partitioner import partition_of
from stream_app.kafka.topics import require_topics

#: How long one fetch may wait before the scan checks whether it is done, in ms.
POLL_MS = 500


@dataclass(frozen=True, slots=True)
class Bounds:
    """What to read: times in epoch ms (inclusive), and offsets per catalogue id ``(from, to)``.

    ``to`` is exclusive, like Kafka's end offsets; ``None`` on either side means "no bound there".
    """

    since_ms: int | None = None
    until_ms: int | None = None
    offsets: Mapping[str, tuple[int | None, int | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a scan is: records read of those to read, over every partition it reads."""

    read: int
    total: int
    elapsed: float


@dataclass(slots=True)
class Scan:
    """The message's records, where they were looked for, and how much was read to find them."""

    records: list[Record]
    partitions: dict[str, tuple[str, int]]  # catalogue id -> (topic, partition); -1: every partition
    scanned: int


async def scan(
    settings: Settings,
    message_id: str,
    bounds: Bounds | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> Scan:
    """Every record keyed ``message_id`` in its partition of each topic ``explain`` reads.

    A global input topic (:data:`GLOBAL_IDS`: not keyed by messageId) is read whole, every partition
    and key, up to ``until`` and from its beginning whatever ``since`` says: a record older than the
    message (a channel closed before it) still applies to it.

    Raises :class:`~stream_app.errors.BrokerUnreachable` and ``TopicsMissing`` (one line each), or
    :class:`KafkaFailure` when the broker answers with an error.
    """
    bounds = bounds or Bounds()
    key = message_id.encode()
    names = topic_names(settings)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        client_id="stream-app-explain",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        # Under exactly_once an aborted transaction's outputs were never published: not read here.
        isolation_level="read_committed",
    )
    await start_or_unreachable(consumer.start, consumer.stop, settings.bootstrap_servers)
    try:
        try:
            counts = await topic_partitions(consumer)
            require_topics(counts, settings.bootstrap_servers, [names[i] for i in REQUIRED_IDS])
            kinds: dict[TopicPartition, str] = {}
            for i in EXPLAIN_IDS:
                name = names[i]
                if name not in counts:
                    continue  # an optional topic (REQUIRED_IDS are checked above)
                if i in GLOBAL_IDS:
                    kinds.update({TopicPartition(name, p): i for p in range(counts[name])})
                else:
                    kinds[TopicPartition(name, partition_of(key, counts[name]))] = i
            consumer.assign(list(kinds))
            ranges = await _ranges(consumer, kinds, bounds)
        except KafkaError as exc:
            raise KafkaFailure(f"reading the topics failed: {exc}") from None
        todo = {tp: end for tp, (start, end) in ranges.items() if start < end}
        # The end offsets seen at start say when to stop; only an offset bound asked for drops records
        # past them (a time bound filters by timestamp). Tansu 0.6 answers a partition's end as the
        # last BATCH's base offset + 1, so records after the first of a batch produced at once (the
        # demo's requests) lie past that "end", in the batch the last fetch returned.
        hard = {
            tp: bounds.offsets[i][1]
            for tp, i in kinds.items()
            if bounds.offsets.get(i, (None, None))[1] is not None
        }
        for tp, (start, _) in ranges.items():
            consumer.seek(tp, start)
        total = sum(end - start for start, end in ranges.values())
        read = 0
        found: list[Record] = []
        started = time.monotonic()
        while todo:
            try:
                batches = await consumer.getmany(*todo, timeout_ms=POLL_MS)
            except KafkaError as exc:
                raise KafkaFailure(f"reading the topics failed: {exc}") from None
            for tp, msgs in batches.items():
                limit = hard.get(tp)
                kind = kinds[tp]
                keyed = kind not in GLOBAL_IDS
                for msg in msgs:
                    if limit is not None and msg.offset >= limit:
                        break
                    read += 1
                    if (keyed and msg.key != key) or not _within(msg.timestamp, bounds, keyed):
                        continue
                    headers = tuple(msg.headers or ())
                    found.append(
                        Record(
                            kind,
                            tp.topic,
                            tp.partition,
                            msg.offset,
                            msg.timestamp,
                            msg.key,
                            msg.value,
                            headers,
                        )
                    )
            for tp in list(todo):
                if await consumer.position(tp) >= todo[tp]:
                    del todo[tp]
            if progress is not None:
                progress(Progress(read, total, time.monotonic() - started))
        partitions = {i: (tp.topic, -1 if i in GLOBAL_IDS else tp.partition) for tp, i in kinds.items()}
        return Scan(records=found, partitions=partitions, scanned=read)
    finally:
        await stop_client(consumer)


async def _ranges(
    consumer: AIOKafkaConsumer, kinds: dict[TopicPartition, str], bounds: Bounds
) -> dict[TopicPartition, tuple[int, int]]:
    """Offsets ``[from, to)`` to read per partition: the bounds asked for, within what exists."""
    parts = list(kinds)
    keyed = [tp for tp, i in kinds.items() if i not in GLOBAL_IDS]
    firsts = await consumer.beginning_offsets(parts)
    ends = await consumer.end_offsets(parts)
    since = await _offsets_at(consumer, keyed, bounds.since_ms)
    until = await _offsets_at(consumer, parts, bounds.until_ms + 1 if bounds.until_ms is not None else None)
    out: dict[TopicPartition, tuple[int, int]] = {}
    for tp, i in kinds.items():
        start, end = firsts[tp], ends[tp]
        if tp in since:
            start = max(start, since[tp] if since[tp] is not None else end)
        if tp in until and until[tp] is not None:
            end = min(end, until[tp])
        lo, hi = bounds.offsets.get(i, (None, None)) if i not in GLOBAL_IDS else (None, None)
        if lo is not None:
            start = max(start, lo)
        if hi is not None:
            end = min(end, hi)
        out[tp] = (start, max(start, end))
    return out


async def _offsets_at(
    consumer: AIOKafkaConsumer, parts: list[TopicPartition], when: int | None
) -> dict[TopicPartition, int | None]:
    """The first offset at or after ``when`` per partition (None: none so late); {} without a time.

    Only an answer that is plainly right is used: a broker that cannot look offsets up by time, or
    answers with a record older than ``when`` (Tansu 0.6 says offset 0, timestamp -1, for "none"),
    leaves that partition unbounded on that side; the records are still filtered by timestamp, only
    the scan is longer.
    """
    if when is None:
        return {}
    try:
        found = await offsets_at_time(consumer, parts, when)
    except KafkaError:
        return {}
    out: dict[TopicPartition, int | None] = {}
    for tp, o in found.items():
        if o is None:
            out[tp] = None
        elif o.timestamp >= when:
            out[tp] = o.offset
    return out


def _within(ts: int, bounds: Bounds, keyed: bool = True) -> bool:
    """Whether a record's timestamp is in the range (a global topic's has no start: see :func:`scan`)."""
    if keyed and bounds.since_ms is not None and ts < bounds.since_ms:
        return False
    return bounds.until_ms is None or ts <= bounds.until_ms
