"""The processor's turn under rebalances, without a broker: no input is ever skipped (issue 14).

A :class:`~tests.unit.runtime.fakes.FakeConsumer` plays aiokafka's positions and lets each test
land a rebalance inside a ``getmany()`` call, where aiokafka runs the rebalance callbacks.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aiokafka.errors import GroupLoadInProgressError
from aiokafka.structs import TopicPartition

from stream_app.config import Settings
from stream_app.kafka import CommittedOffsetUnknown
from stream_app.runtime.processor import Processor
from tests.unit.runtime.fakes import FakeConsumer, FakeProducer, FakeRestorer

NOW = 1_760_000_000_000


def request(message_id: str) -> bytes:
    return orjson.dumps(
        {
            "type": "send",
            "messageId": message_id,
            "destination": "+393401234567",
            "channels": [
                {"channel": "WHATSAPP", "content": {"text": "hi"}, "fallbackAfter": 60},
                {"channel": "SMS", "content": {"text": "hi"}},
            ],
        }
    )


class Rig:
    """A processor wired to fakes, with two partitions of each input topic."""

    def __init__(self, tmp_path: Path) -> None:
        s = Settings(
            state_dir=tmp_path / "state", topic_prefix="t.", app_id="app", metrics_port=0, partitions=2
        )
        self.topics = s.topics
        self.proc = Processor(s, clock=lambda: NOW)
        self.consumer, self.producer = FakeConsumer(), FakeProducer()
        self.proc._consumer = self.consumer  # type: ignore[assignment]
        self.proc._producer = self.producer  # type: ignore[assignment]
        self.proc._restorer = FakeRestorer()  # type: ignore[assignment]
        self.proc.partitions = 2
        self.sent_ids = 0

    def tps(self, *parts: int) -> set[TopicPartition]:
        t = self.topics
        return {TopicPartition(topic, p) for p in parts for topic in (t.send_requests, t.delivery_status)}

    def requests(self, p: int, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            mid = f"m{self.sent_ids}"
            self.sent_ids += 1
            self.consumer.append(TopicPartition(self.topics.send_requests, p), mid.encode(), request(mid))
            ids.append(mid)
        return ids

    def assign(self, *parts: int) -> None:
        """The coordinator hands out ``parts``: aiokafka resets positions, then calls the listener."""
        self.consumer.assign_now(self.tps(*parts))
        self.proc._on_assigned(self.tps(*parts))

    def commanded(self) -> set[str]:
        return {s.key.decode() for s in self.producer.sent if s.topic == self.topics.retry_commands and s.key}

    async def settle(self, turns: int = 6) -> None:
        for _ in range(turns):
            await self.proc._turn()

    def close(self) -> None:
        for p in list(self.proc.stores):
            self.proc._close_store(p)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    r = Rig(tmp_path)
    yield r  # type: ignore[misc]
    r.close()


async def test_records_of_a_partition_assigned_during_a_revoke_are_not_dropped(rig: Rig) -> None:
    """Issue 14, mechanism 1: the revoke path fetched and threw the batch away.

    The group revokes everything, then assigns both partitions; the assignment completes while
    the processor waits out the revoke. Today's fetch-and-drop lost p1's first records, and the
    next turn committed past them.
    """
    ids = rig.requests(0, 5)
    rig.assign(0)
    await rig.settle(2)
    assert rig.commanded() == set(ids)

    async def revoke() -> None:
        await rig.proc._on_revoked(rig.tps(0))

    rig.consumer.during_getmany = revoke
    await rig.proc._turn()  # the revoke lands inside this getmany()
    assert rig.proc._revoking
    ids += rig.requests(1, 5)

    async def assign_both() -> None:
        rig.assign(0, 1)

    rig.consumer.during_getmany = assign_both  # if the processor fetches while revoking...
    await rig.proc._turn()
    if rig.proc._revoking:  # ...else the coordinator finishes the rebalance on its own
        rig.consumer.during_getmany = None
        rig.assign(0, 1)
    ids += rig.requests(1, 2)
    await rig.settle()
    assert rig.commanded() == set(ids)
    sr1 = TopicPartition(rig.topics.send_requests, 1)
    assert rig.consumer.commits[sr1] == 7


async def test_a_batch_fetched_while_a_revoke_starts_is_read_again(rig: Rig) -> None:
    """A revoke that lands inside a normal getmany(): the batch is put back, not consumed."""
    rig.assign(0, 1)
    await rig.settle(1)
    ids = rig.requests(0, 3) + rig.requests(1, 3)

    async def revoke_then_keep_p1() -> None:
        await rig.proc._on_revoked(rig.tps(0, 1))
        # aiokafka keeps positions of a partition that stays assigned in the next generation when
        # nothing resets them: model the worst case, the positions survive.
        rig.consumer.assigned = rig.tps(0, 1)

    rig.consumer.during_getmany = revoke_then_keep_p1
    await rig.proc._turn()
    assert not rig.commanded()
    rig.proc._on_assigned(rig.tps(0, 1))
    rig.proc._revoking = False
    await rig.settle()
    assert rig.commanded() == set(ids)


async def test_a_skipped_run_of_records_is_rewound_and_read(rig: Rig) -> None:
    """The invariant: a batch that starts past the last processed offset is a gap, rewound."""
    rig.assign(0)
    ids = rig.requests(0, 3)
    await rig.settle(2)
    ids += rig.requests(0, 4)
    sr0 = TopicPartition(rig.topics.send_requests, 0)

    async def lose_two() -> None:  # some reader consumed two records and dropped them
        rig.consumer.positions[sr0] += 2

    rig.consumer.during_getmany = lose_two
    await rig.settle()
    assert rig.commanded() == set(ids)
    gaps = rig.proc.metrics.input_gaps
    assert gaps.labels("rewind")._value.get() == 1
    assert gaps.labels("gap_repaired")._value.get() == 1
    assert rig.consumer.commits[sr0] == 7
    # Never committed past a record that was not processed: every commit is a prefix.
    assert all(c.get(sr0, 0) <= 7 for c in rig.consumer.commit_calls)


async def test_a_hole_with_nothing_readable_is_accepted_after_one_rewind(rig: Rig) -> None:
    """Offsets with no readable record (transaction markers, aborted records) do not loop for ever."""
    rig.assign(0)
    sr0 = TopicPartition(rig.topics.send_requests, 0)
    rig.consumer.append(sr0, b"a", request("a"))
    await rig.settle(2)
    rig.consumer.append(sr0, b"b", request("b"), offset=3)  # offsets 1-2: markers
    await rig.settle()
    assert rig.commanded() == {"a", "b"}
    gaps = rig.proc.metrics.input_gaps
    assert gaps.labels("rewind")._value.get() == 1
    assert gaps.labels("gap_confirmed")._value.get() == 1
    assert rig.consumer.commits[sr0] == 4


async def test_an_unanswered_committed_offset_is_an_error_not_zero(rig: Rig) -> None:
    """Issue 14, mechanism 2 at the processor: no offset answer, no restore and no processing."""
    sr0 = TopicPartition(rig.topics.send_requests, 0)
    rig.requests(0, 4)
    rig.consumer.commits[sr0] = 2  # m0 and m1 were processed by the previous owner
    rig.assign(0)
    rig.consumer.committed_script = [GroupLoadInProgressError()]
    with pytest.raises(CommittedOffsetUnknown, match="did not answer the committed offsets"):
        await rig.proc._turn()
    assert not rig.proc.stores and not rig.commanded()
    await rig.settle()
    assert rig.commanded() == {"m2", "m3"}  # from the committed offset, not from 0


async def test_a_partition_back_after_a_revoke_is_not_read_unrestored_when_stopping(rig: Rig) -> None:
    """Revoked (its store closed) and assigned back just as a stop comes: the stop skips the
    restore, so the records fetched for it are read again later, never stepped without a store."""
    sr0 = TopicPartition(rig.topics.send_requests, 0)
    ids = rig.requests(0, 2)
    rig.assign(0)
    await rig.settle(2)
    assert rig.commanded() == set(ids) and rig.consumer.commits[sr0] == 2

    async def revoke() -> None:
        await rig.proc._on_revoked(rig.tps(0))

    rig.consumer.during_getmany = revoke
    await rig.proc._turn()
    assert not rig.proc.stores
    rig.assign(0)
    rig.proc.stop.set()
    rig.requests(0, 1)
    await rig.proc._turn()  # no restore while stopping: the record is not this turn's to take
    assert rig.commanded() == set(ids)
    assert rig.consumer.commits[sr0] == 2 and rig.consumer.positions[sr0] == 2
