"""Read ``outcomes`` (Outcome and LateStatus records), or any topic, for people and scripts.

Reads every partition without a consumer group: nothing is committed, so following outcomes never
disturbs a real consumer and any number of terminals can watch. Only committed records are read
(``read_committed``): the outputs of an aborted exactly_once transaction were never published. Two modes:

- snapshot (``follow=False``): read from the beginning up to the end offsets seen at start, then stop;
- follow: from the end (or the beginning) until stopped, or until ``limit`` records were shown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.admin.errors import KafkaFailure
from stream_app.config import Settings
from stream_app.contracts import FAILURE_STATUSES, InvalidRecord, LateStatus, Outcome, decode_outcome
from stream_app.kafka.clients import stop_client
from stream_app.kafka.connect import REQUEST_TIMEOUT_MS, start_or_unreachable
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.offsets import offsets_at_time
from stream_app.kafka.outage import outage_filter
from stream_app.kafka.partitioner import partition_of
from stream_app.kafka.topics import require_topics
from stream_app.terminal import printable

#: How long one fetch may wait for new records before the loop looks at ``stop`` again, in ms:
#: a Ctrl-C or SIGTERM is honoured within this time.
POLL_MS = 500


@dataclass(frozen=True, slots=True)
class Raw:
    """One record as it is on the topic, before anyone reads meaning into it."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    #: Kafka allows a header without a value (null): aiokafka hands it over as None.
    headers: tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class Followed:
    """One record of ``outcomes``: its raw value, the decoded record or why it could not be decoded."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    record: Outcome | LateStatus | None
    error: str | None


async def follow_outcomes(
    settings: Settings,
    *,
    follow: bool = False,
    from_beginning: bool = False,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
    topic: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> AsyncGenerator[Followed, None]:
    """Yield the records of ``outcomes`` (see the module docstring for the modes)."""
    records = read_topic(
        settings,
        topic or settings.topics.outcomes,
        follow=follow,
        from_beginning=from_beginning,
        limit=limit,
        stop=stop,
        on_ready=on_ready,
    )
    try:
        async for raw in records:
            yield _decode(raw.partition, raw.offset, raw.key, raw.value)
    finally:
        await records.aclose()


async def read_topic(
    settings: Settings,
    name: str,
    *,
    follow: bool = False,
    from_beginning: bool = False,
    limit: int | None = None,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[], None] | None = None,
    key: bytes | None = None,
    since_ms: int | None = None,
    also_needs: Sequence[str] = (),
) -> AsyncGenerator[Raw, None]:
    """Yield the records of topic ``name`` (see the module docstring for the modes).

    A snapshot always reads from the beginning; ``from_beginning`` matters only when following.
    ``on_ready`` is called once the start position is fixed: a record produced after that is seen.
    ``key``: only the records with this key, read from the one partition murmur2 puts it on (as
    every producer of the contract does), so looking up one message does not read the whole topic.
    ``since_ms``: start each partition at its first record with a timestamp at or after this epoch
    ms (the broker's time index; a partition with none starts at its end), instead of the beginning.
    ``also_needs``: other topics the caller goes on to use; when any of them is missing too, the one
    error names every missing topic, not ``name`` alone (one ``topics create`` fixes them all).
    """
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        client_id="stream-app-follow",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        # Under exactly_once the processor publishes in transactions: an aborted one's outcomes stay
        # in the log but were never published (CONTRACT.md: no repeat appears), so they are not read.
        # On a broker or topic without transactions this reads exactly what read_uncommitted does.
        isolation_level="read_committed",
    )
    await start_or_unreachable(consumer.start, consumer.stop, settings.bootstrap_servers)
    try:
        try:
            counts = await topic_partitions(consumer)
            require_topics(counts, settings.bootstrap_servers, [name, *also_needs])
            tps = [TopicPartition(name, p) for p in range(counts[name])]
            if key is not None:
                tps = [tps[partition_of(key, len(tps))]]
            consumer.assign(tps)
            if follow and not from_beginning:
                await _seek_to_end(consumer, tps, name)
            else:
                await consumer.seek_to_beginning(*tps)
            if since_ms is not None:
                await _seek_to_time(consumer, tps, since_ms)
            ends: dict[TopicPartition, int] = {} if follow else await consumer.end_offsets(tps)
            for tp in tps:  # resolve the lazy seeks now, so "ready" means the position is fixed
                await consumer.position(tp)
        except KafkaError as exc:
            raise KafkaFailure(f"reading {name} failed: {exc}") from None
        if on_ready is not None:
            on_ready()
        shown = 0
        outage = outage_filter()
        while not (stop is not None and stop.is_set()):
            outage.tick()
            if not follow and await _caught_up(consumer, ends):
                return
            try:
                batches = await consumer.getmany(timeout_ms=POLL_MS)
            except KafkaError as exc:
                raise KafkaFailure(f"reading {name} failed: {exc}") from None
            for tp in sorted(batches, key=lambda t: t.partition):
                for msg in batches[tp]:
                    if key is not None and msg.key != key:
                        continue
                    headers = tuple(msg.headers or ())
                    yield Raw(msg.partition, msg.offset, msg.timestamp, msg.key, msg.value, headers)
                    shown += 1
                    if limit is not None and shown >= limit:
                        return
    finally:
        await stop_client(consumer)


async def _seek_to_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition], name: str) -> None:
    """Put every partition at its end now, so that what is read next was published after this.

    ListOffsets(latest) alone is not the end on every broker: Apache Kafka answers with the high
    watermark (the last stable offset under ``read_committed``), but Tansu with the last record
    batch's base offset + 1, which is inside that batch, so following "from now" printed the rest of
    each partition's last batch of old records. A fetch answer says the end itself (its last stable
    offset, or high watermark): the partitions are fetched from ListOffsets' answer until each has an
    answer, the records fetched (published before "now") are dropped, and each partition is put at
    the end its fetch reported. On Kafka that is where ListOffsets put it, or a little later.
    """
    await consumer.seek_to_end(*tps)
    deadline = time.monotonic() + REQUEST_TIMEOUT_MS / 1000
    while unknown := [tp for tp in tps if consumer.highwater(tp) is None]:
        if time.monotonic() > deadline:
            where = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in unknown)
            raise KafkaFailure(
                f"reading {name} failed: no fetch answer for {where} within {REQUEST_TIMEOUT_MS // 1000} s"
            )
        await consumer.getmany(timeout_ms=POLL_MS)  # records before "now": not shown
    for tp in tps:
        stable = consumer.last_stable_offset(tp)
        end = stable if stable is not None and stable >= 0 else consumer.highwater(tp)
        if end is not None and end > await consumer.position(tp):
            consumer.seek(tp, end)


async def _seek_to_time(consumer: AIOKafkaConsumer, tps: list[TopicPartition], since_ms: int) -> None:
    found = await offsets_at_time(consumer, tps, since_ms)
    late = [tp for tp in tps if found.get(tp) is None]
    for tp in tps:
        if (hit := found.get(tp)) is not None:
            consumer.seek(tp, hit.offset)
    if late:
        await consumer.seek_to_end(*late)


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def _decode(partition: int, offset: int, key: bytes | None, value: bytes | None) -> Followed:
    if value is None:
        return Followed(partition, offset, key, value, None, "null value")
    try:
        return Followed(partition, offset, key, value, decode_outcome(value), None)
    except InvalidRecord as exc:
        return Followed(partition, offset, key, value, None, exc.reason)


# ------------------------------------------------------------------------------------------ rendering


def format_duration(ms: int) -> str:
    """``850ms``, ``4.2s``, ``5m04s``, ``2h03m``: short and exact enough to compare at a glance."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def channel_path(outcome: Outcome, *, reasons: bool = True) -> str:
    """``WHATSAPP(REJECTED: template not approved) > RCS(SENT, timeout) > SMS(DELIVERED)``: every attempt.

    A failed attempt shows the gateway's reasons, so "why did it fall back" needs no ``--json``
    (issue 13); they are shown only while the attempt's last status is a failure (a DELIVERED after an
    ERROR did not fail). ``reasons=False`` gives the bare path, for narrow tables.
    """
    parts = []
    for a in outcome.attempts:
        status = a.last_status.value if a.last_status else "no status"
        if reasons and a.reasons and status in FAILURE_STATUSES:
            status = f"{status}: {'; '.join(' '.join(r.split()) for r in a.reasons)}"  # one line, always
        ended = a.ended_by.value.lower() if a.ended_by else None
        detail = status if ended in (None, "succeeded", "failed") else f"{status}, {ended}"
        parts.append(f"{a.channel.value}({detail})")
    return " > ".join(parts) or "no attempt"


def _utc_clock(at: datetime) -> str:
    """``08:15:00Z``: the time of day in UTC, whatever offset the record was written with."""
    return at.astimezone(UTC).strftime("%H:%M:%SZ")


def format_line(item: Followed) -> str:
    """One readable line per record of ``outcomes``: its outside text (messageId, reasons) cannot
    break the line or send the terminal an escape (:func:`stream_app.terminal.printable`)."""
    return printable(_line(item))


def _line(item: Followed) -> str:
    rec = item.record
    if rec is None:
        return f"! undecodable record at partition {item.partition} offset {item.offset}: {item.error}"
    if isinstance(rec, LateStatus):
        twice = "  DOUBLE DELIVERY" if rec.double_delivery else ""
        when = _utc_clock(rec.occurred_at)
        return (
            f"{when}  {rec.message_id}  LATE  attempt {rec.attempt} {rec.channel.value} "
            f"{rec.status.value} after the end{twice}"
        )
    when = _utc_clock(rec.completed_at)
    landed = f" on {rec.channel.value} {rec.status.value}" if rec.channel and rec.status else ""
    reason = f" ({rec.reason})" if rec.reason else ""
    return (
        f"{when}  {rec.message_id}  {rec.result.value}{landed}{reason}  "
        f"path {channel_path(rec)}  in {format_duration(rec.duration_ms)}"
    )


def json_line(item: Followed) -> str:
    """The record's JSON as one line, as written on the topic (``null`` for a tombstone)."""
    if item.value is None:
        return "null"
    if b"\n" not in item.value:
        return item.value.decode("utf-8", errors="replace")
    try:  # pretty-printed by some other producer: re-encode compactly, same content
        return orjson.dumps(orjson.loads(item.value)).decode()
    except orjson.JSONDecodeError:
        return item.value.decode("utf-8", errors="replace").replace("\n", " ")
