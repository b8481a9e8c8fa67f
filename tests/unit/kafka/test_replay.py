"""replay_to_end: the one rule both restores read a compacted partition to its end by, without a broker."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.kafka.replay import replay_to_end

A, B = TopicPartition("log", 0), TopicPartition("log", 1)


class Consumer:
    """A consumer over fixed partitions that hands out ``per_fetch`` records a fetch (Tansu-like)."""

    def __init__(self, sizes: dict[TopicPartition, int], per_fetch: int = 2) -> None:
        self.sizes, self.per_fetch = sizes, per_fetch
        self.pos: dict[TopicPartition, int] = {}
        self.fetched: set[TopicPartition] = set()
        self.paused: list[TopicPartition] = []
        self.unsubscribed = False
        self.fail_after: int | None = None

    def assign(self, tps: list[TopicPartition]) -> None:
        self.pos = dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise OSError("broker gone")
            self.fail_after -= 1
        out = {}
        for tp in tps:
            self.fetched.add(tp)
            end = min(self.pos[tp] + self.per_fetch, self.sizes[tp])
            recs = [
                ConsumerRecord(tp.topic, tp.partition, o, 0, 0, b"k", b"v", None, 1, 1, ())
                for o in range(self.pos[tp], end)
            ]
            if recs:
                out[tp] = recs
            self.pos[tp] = end
        return out

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.sizes[tp] if tp in self.fetched else None  # known only from a fetch answer

    async def position(self, tp: TopicPartition) -> int:
        return self.pos[tp]

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)

    def unsubscribe(self) -> None:
        self.unsubscribed = True


async def test_reads_to_the_high_watermark_of_a_fetch_not_to_the_listed_end() -> None:
    rc = Consumer({A: 5, B: 3})
    read: dict[TopicPartition, list[int]] = {A: [], B: []}
    done: list[tuple[TopicPartition, int]] = []
    # ListOffsets said 4 and 2 (Tansu: the last batch's base offset + 1): the fetch's answer wins.
    total = await replay_to_end(
        rc,
        {A: 1, B: 0},
        {A: 4, B: 2},
        lambda tp, recs: read[tp].extend(r.offset for r in recs),
        caught_up=lambda tp, end: done.append((tp, end)),
    )
    assert read == {A: [1, 2, 3, 4], B: [0, 1, 2]}
    assert total == 7
    assert sorted(done) == [(A, 5), (B, 3)]
    assert sorted(rc.paused) == [A, B]  # a caught-up partition is no longer fetched
    assert rc.unsubscribed


async def test_a_partition_is_never_caught_up_before_a_fetch_reports_its_end() -> None:
    rc = Consumer({A: 0})
    done: list[tuple[TopicPartition, int]] = []
    # Start == listed end, but the end is not known until a fetch answers: one fetch, then done.
    await replay_to_end(
        rc, {A: 0}, {A: 0}, lambda tp, recs: None, caught_up=lambda tp, end: done.append((tp, end))
    )
    assert A in rc.fetched
    assert done == [(A, 0)]


async def test_the_consumer_is_unsubscribed_when_a_fetch_fails() -> None:
    rc = Consumer({A: 10})
    rc.fail_after = 1
    with pytest.raises(OSError, match="broker gone"):
        await replay_to_end(rc, {A: 0}, {A: 10}, lambda tp, recs: None)
    assert rc.unsubscribed


async def test_nothing_to_read_touches_nothing() -> None:
    rc = Consumer({})
    assert await replay_to_end(rc, {}, {}, lambda tp, recs: None) == 0
    assert not rc.unsubscribed and rc.pos == {}
