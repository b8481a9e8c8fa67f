"""The read of delivery-status's tail after a restart, without a broker: a fake consumer plays the
offsets a real one would see (records, a transaction marker at the tail, a read that never ends)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndTimestamp

from stream_app.config import Settings
from stream_app.gateway import reconcile
from stream_app.gateway.reconcile import confirm_published
from stream_app.gateway.sentlog import PartitionLog, SendState, SentLog

TP = TopicPartition("delivery-status", 0)


class FakeTail:
    """A partition holding ``values`` at offsets 0.., then ``markers`` offsets no fetch returns (a
    transaction's control batch). ``stuck``: fetches return nothing and the position never moves."""

    def __init__(self, values: list[bytes], markers: int = 0, stuck: bool = False) -> None:
        self.values, self.end, self.stuck = values, len(values) + markers, stuck
        self.pos = 0
        self.fetches = 0
        self.assigned: list[TopicPartition] | None = None
        self.since: OffsetAndTimestamp | None = OffsetAndTimestamp(0, 0)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {TP: self.end}

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return {TP: self.since}

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        self.fetches += 1
        if self.stuck or self.pos >= self.end:
            return {}
        batch = [
            ConsumerRecord(
                TP.topic, 0, o, 1000 + o, 0, None, self.values[o], None, 0, len(self.values[o]), []
            )
            for o in range(self.pos, min(self.pos + 2, len(self.values)))
        ]
        # Like a real fetch, the position moves past what was read, and past a control batch after it.
        self.pos = self.end if self.pos + 2 >= len(self.values) else self.pos + 2
        return {TP: batch} if batch else {}

    async def position(self, partition: TopicPartition) -> int:
        return self.pos


async def _nowhere(p: int, key: bytes, value: bytes | None) -> None:
    """A sent-log write that goes nowhere."""


async def _log(*entries: tuple[str, bytes]) -> SentLog:
    log = SentLog(_nowhere)
    log.partitions = {0: PartitionLog()}
    for cid, payload in entries:
        await log.put(0, cid, SendState.RESULT, 1000, payload)
    return log


def _states(log: SentLog) -> dict[str, SendState]:
    return {cid: e.state for _, cid, e in log.entries()}


async def test_published_statuses_are_confirmed_and_the_others_left_to_publish() -> None:
    log = await _log(("a:0", b"A"), ("c:0", b"C"), ("x:0", b"X"))
    tail = FakeTail([b"A", b"B", b"C", b"D", b"E"])
    assert await confirm_published(tail, [TP], 0, log) == 2
    assert tail.assigned == [TP]
    assert _states(log) == {"a:0": SendState.DONE, "c:0": SendState.DONE, "x:0": SendState.RESULT}


async def test_the_read_stops_once_every_entry_is_found() -> None:
    log = await _log(("a:0", b"A"))
    tail = FakeTail([b"A", b"B", b"C", b"D", b"E", b"F"])
    assert await confirm_published(tail, [TP], 0, log) == 1
    assert tail.fetches == 1


async def test_a_transaction_marker_at_the_tail_ends_the_read_regression() -> None:
    """The read ended when the last record returned reached end - 1. A transaction's marker (or an
    aborted record) at the tail is never returned, so it never did: the dispatcher's partitions were
    held in the rebalance callback for good. The consumer's position is what ends it now."""
    log = await _log(("x:0", b"X"))
    tail = FakeTail([b"A", b"B", b"C"], markers=1)
    assert await confirm_published(tail, [TP], 0, log, max_s=3600) == 0
    assert tail.fetches == 2 and _states(log) == {"x:0": SendState.RESULT}


async def test_a_read_that_never_ends_is_cut_short_regression(caplog: pytest.LogCaptureFixture) -> None:
    """A read that makes no progress (the start deleted by retention, a broker gone) looped with no
    bound inside the rebalance callback. It now ends after max_s; the unconfirmed statuses are
    published again (a repeat the processor ignores), and a warning says so."""
    log = await _log(("x:0", b"X"))
    tail = FakeTail([b"A"], stuck=True)
    now = [0.0]

    def clock() -> float:
        now[0] += 1.0  # one second per look at the clock: 30 looks, whatever the machine's speed
        return now[0]

    with caplog.at_level(logging.WARNING, logger="stream_app.gateway"):
        assert await confirm_published(tail, [TP], 0, log, max_s=30.0, clock=clock) == 0
    assert 25 <= tail.fetches <= 30
    assert "sentlog_reconcile_cut_short" in caplog.text and "unconfirmed=1" in caplog.text
    assert _states(log) == {"x:0": SendState.RESULT}


async def test_a_partition_with_nothing_since_is_neither_assigned_nor_fetched() -> None:
    """Only partitions with records to read are assigned: an assigned one is fetched ahead in the
    background for nothing."""
    log = await _log(("x:0", b"X"))
    tail = FakeTail([b"A"])
    tail.since = None  # no record at or after the time asked
    assert await confirm_published(tail, [TP], 0, log) == 0
    assert tail.assigned == [] and tail.fetches == 0


class TimedTail(FakeTail):
    """A tail whose time index answers by the records' timestamps (offset o is at 1000 + o ms)."""

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        when = timestamps[TP]
        first = next((o for o in range(len(self.values)) if 1000 + o >= when), None)
        return {TP: None if first is None else OffsetAndTimestamp(first, 1000 + first)}

    async def stop(self) -> None:
        pass


async def test_a_status_stamped_before_its_result_was_recorded_is_still_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The status's timestamp is not the dispatcher's clock (a broker's LogAppendTime, a clock step):
    the read starts a margin before the oldest RESULT, so one stamped a little earlier is confirmed
    rather than published a second time."""
    tail = TimedTail([b"A", b"B", b"C", b"D", b"E"])
    log = SentLog(_nowhere)
    log.partitions = {0: PartitionLog()}
    await log.put(0, "c:0", SendState.RESULT, 1000 + 2 + 5_000, b"C")  # recorded 5 s after its stamp

    async def started(consumer: object, settings: object) -> None:
        pass

    async def partitions(consumer: object) -> dict[str, int]:
        return {TP.topic: 1}

    monkeypatch.setattr(reconcile, "AIOKafkaConsumer", lambda **_: tail)
    monkeypatch.setattr(reconcile, "start_client", started)
    monkeypatch.setattr(reconcile, "topic_partitions", partitions)
    settings = Settings(topic_prefix="", state_dir=Path("unused"))
    assert settings.topics.delivery_status == TP.topic
    assert await reconcile.reconcile_results(settings, log) == 1
    assert _states(log) == {"c:0": SendState.DONE}
