"""The dispatcher's sent-log: which commandIds it has sent, as partitioned, durable group state.

Why a compacted topic, not a local file: any number of dispatchers share ``retry-commands`` in one
consumer group, and a partition moves between them on every rebalance, restart or scale-out. The
record of what partition p has sent must move with p, so it lives in the changelog topic
``<prefix><app-id>-dispatcher-sentlog``, partition p of which belongs to partition p of
``retry-commands`` (same partition count, checked at start). The owner of p keeps p's entries in
memory; a new owner reads the partition back (:func:`restore`) before it handles any command of p.

Each commandId goes through three states, each written to the changelog and acknowledged by the
brokers (``acks=all``) before the dispatcher goes on:

* ``SENDING``: written before every gateway call (the intent). Found by a later owner, the call may
  or may not have reached the gateway, so it asks the gateway's status endpoint instead of sending.
* ``RESULT``: the answer is known; the value holds the DeliveryStatus bytes to publish. Found by a
  later owner, those bytes are published (the crash came between the answer and its publication),
  unless they already are on ``delivery-status``. A RESULT whose bytes are not a status is read
  back as SENDING (in doubt: the status endpoint is asked).
* ``DONE``: the status is on ``delivery-status``; a repeat command is dropped.

DONE entries older than the dedup window are deleted with a tombstone (the processor repeats a
command only while replaying after its own crash, minutes at most), so compaction bounds the topic.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from stream_app.contracts import InvalidRecord, decode_status
from stream_app.kafka.replay import replay_to_end

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">cq")  # state byte + epoch ms


class SendState(Enum):
    SENDING = b"S"
    RESULT = b"R"
    DONE = b"D"


@dataclass(frozen=True, slots=True)
class Entry:
    state: SendState
    at_ms: int
    payload: bytes


def encode_entry(state: SendState, at_ms: int, payload: bytes = b"") -> bytes:
    """The changelog value of an entry."""
    return _HEADER.pack(state.value, at_ms) + payload


def decode_entry(raw: bytes) -> Entry:
    """An entry from its changelog value; ``ValueError`` when it is not one."""
    if len(raw) < _HEADER.size:
        raise ValueError(f"sent-log value of {len(raw)} bytes, shorter than its {_HEADER.size}-byte header")
    state, at_ms = _HEADER.unpack_from(raw)
    return Entry(SendState(state), at_ms, bytes(raw[_HEADER.size :]))


@dataclass(slots=True)
class PartitionLog:
    """One partition's entries, in memory: commandId -> :class:`Entry`."""

    entries: dict[str, Entry] = field(default_factory=dict)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Replay one changelog record (a tombstone deletes); a foreign record raises ValueError."""
        if key is None:
            raise ValueError("sent-log record without a key")
        cid = key.decode()
        if value is None:
            self.entries.pop(cid, None)
            return
        entry = decode_entry(value)
        if entry.state is SendState.RESULT:
            try:
                decode_status(entry.payload)
            except InvalidRecord as exc:
                # Checked here, once per record replayed: read when its command came back, it raised
                # outside the dispatcher's handling, so the dispatcher stopped at every restart. The
                # answer is lost, not the call: the command may have been sent, so it is in doubt
                # (SENDING) and the gateway's status endpoint is asked, never a blind resend.
                log.error(
                    "sent-log entry of %s holds a status that cannot be read (%s): taken as in doubt, "
                    "the gateway's status endpoint will be asked",
                    cid,
                    exc.reason,
                )
                entry = Entry(SendState.SENDING, entry.at_ms, b"")
        self.entries[cid] = entry

    def done_before(self, at_ms: int) -> list[str]:
        return [cid for cid, e in self.entries.items() if e.state is SendState.DONE and e.at_ms < at_ms]


#: Writes a changelog record to a partition and returns once the brokers acknowledged it.
Write = Callable[[int, bytes, bytes | None], Awaitable[None]]


class SentLog:
    """The sent-log of the partitions this dispatcher owns; every change is durable before it counts."""

    def __init__(self, write: Write) -> None:
        self._write = write
        self.partitions: dict[int, PartitionLog] = {}

    def detached(self, partitions: dict[int, PartitionLog]) -> SentLog:
        """A sent-log of ``partitions`` that writes to the same changelog, not (yet) owned by this one."""
        other = SentLog(self._write)
        other.partitions = partitions
        return other

    def owns(self, p: int) -> bool:
        return p in self.partitions

    def get(self, p: int, command_id: str) -> Entry | None:
        return self.partitions[p].entries.get(command_id)

    async def put(self, p: int, command_id: str, state: SendState, at_ms: int, payload: bytes = b"") -> None:
        """Record ``state`` for ``command_id`` on partition ``p``: on the changelog first, then here."""
        await self._write(p, command_id.encode(), encode_entry(state, at_ms, payload))
        part = self.partitions.get(p)
        if part is not None:  # released meanwhile: the changelog has it for the next owner
            part.entries[command_id] = Entry(state, at_ms, payload)

    async def prune(self, older_than_ms: int) -> int:
        """Delete DONE entries written before ``older_than_ms`` (tombstones); returns how many."""
        n = 0
        for p, part in list(self.partitions.items()):
            for cid in part.done_before(older_than_ms):
                await self._write(p, cid.encode(), None)
                part.entries.pop(cid, None)
                n += 1
        return n

    def entries(self) -> list[tuple[int, str, Entry]]:
        """Every owned entry as ``(partition, commandId, entry)`` (tests, reconciliation)."""
        return [(p, cid, e) for p, part in self.partitions.items() for cid, e in part.entries.items()]


async def restore(rc: AIOKafkaConsumer, topic: str, parts: list[int]) -> dict[int, PartitionLog]:
    """Read partitions ``parts`` of the sent-log changelog from the beginning to their end.

    The end is the high watermark of a fetch answer (:func:`replay_to_end`, the rule the processor's
    restore follows too). An unreadable record is logged and skipped: it cannot be ours, and one bad
    record must not keep a partition from being dispatched.
    """
    logs = {p: PartitionLog() for p in parts}
    tps = {p: TopicPartition(topic, p) for p in parts}
    if not parts:
        return logs
    ends = await rc.end_offsets(list(tps.values()))
    begins = await rc.beginning_offsets(list(tps.values()))
    starts = {tps[p]: begins[tps[p]] for p in parts if ends[tps[p]] > begins[tps[p]]}
    if not starts:
        return logs
    started = time.monotonic()

    def apply(tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]) -> None:
        part = logs[tp.partition]
        for rec in records:
            try:
                part.apply(rec.key, rec.value)
            except (ValueError, UnicodeDecodeError) as exc:
                log.error("sent-log record %s[%d]@%d unreadable: %s", topic, tp.partition, rec.offset, exc)

    def progress(records: int, remaining: dict[TopicPartition, int]) -> None:
        log.info("sent-log restore: %d records read, %d partitions to go", records, len(remaining))

    records = await replay_to_end(rc, starts, ends, apply, progress=progress)
    log.info(
        "sent-log restored: partitions %s, %d records, %d entries in %.3f s",
        ",".join(map(str, parts)),
        records,
        sum(len(part.entries) for part in logs.values()),
        time.monotonic() - started,
    )
    return logs
