"""A partition's restore that a rebalance overtakes, without a broker.

A restore reads the committed input offsets once, and that one answer drives both its skip rule
and where the inputs are read from. A rebalance that lands during a long restore (longer than the
revoke listener's wait) can hand the partition to another instance, which processes and commits,
and then hand it back, all before the restore ends: that answer is then stale.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.structs import TopicPartition

from stream_app.config import Settings
from stream_app.runtime import ownership
from stream_app.runtime import restore as restore_module
from stream_app.runtime.processor import Processor
from stream_app.store import input_header
from tests.unit.runtime.fakes import FakeConsumer, FakeProducer, FakeRestorer, Log
from tests.unit.runtime.test_rebalance_races import NOW, request


class HookedRestorer(FakeRestorer):
    """The restore consumer; ``during_replay`` runs once inside the next replay fetch."""

    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.during_replay: Callable[[], Awaitable[None]] | None = None

    async def getmany(self, *tps: TopicPartition, **kw: Any) -> dict[TopicPartition, list[Any]]:
        hook, self.during_replay = self.during_replay, None
        if hook is not None:
            await hook()
        return await super().getmany(*tps, **kw)


class Instance:
    """One processor instance on fakes; instances share the inputs, the group's commits and the log."""

    def __init__(
        self, root: Path, log: Log, consumer: FakeConsumer | None = None, partitions: int = 1
    ) -> None:
        s = Settings(state_dir=root, topic_prefix="t.", app_id="app", metrics_port=0, partitions=partitions)
        self.topics = s.topics
        self.proc = Processor(s, clock=lambda: NOW)
        self.consumer = FakeConsumer()
        if consumer is not None:  # the same topics and the same group
            self.consumer.logs = consumer.logs
            self.consumer.commits = consumer.commits
        self.producer = FakeProducer(log)
        self.restorer = HookedRestorer(log)
        self.proc._consumer = self.consumer  # type: ignore[assignment]
        self.proc._producer = self.producer  # type: ignore[assignment]
        self.proc._restorer = self.restorer  # type: ignore[assignment]
        self.proc.partitions = partitions
        t = self.topics
        self.inputs = {
            TopicPartition(topic, p)
            for p in range(partitions)
            for topic in (t.send_requests, t.delivery_status)
        }

    def assign(self) -> None:
        self.consumer.assign_now(self.inputs)
        self.proc._on_assigned(self.inputs)

    def commanded(self) -> list[str]:
        t = self.topics
        return [s.key.decode() for s in self.producer.sent if s.topic == t.retry_commands and s.key]

    def close(self) -> None:
        for p in list(self.proc.stores):
            self.proc._close_store(p)


def handover_and_back(a: Instance, b: Instance, sr0: TopicPartition) -> Callable[[], Awaitable[None]]:
    """What happens while A restores: a revoke whose listener gives up waiting (A is busy), B owns
    the partitions, processes m3..m5 on p0 and commits, then loses them in a rebalance that hands
    them back to A."""

    async def run() -> None:
        await a.proc._on_revoked(a.inputs)
        b.assign()
        for i in range(3, 6):
            b.consumer.append(sr0, f"m{i}".encode(), request(f"m{i}"))
        for _ in range(3):
            await b.proc._turn()
        assert b.commanded() == ["m3", "m4", "m5"] and a.consumer.commits[sr0] == 6
        b.close()
        a.assign()

    return run


async def test_a_restore_overtaken_by_two_rebalances_reads_the_new_owners_work_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: A restores p0 for longer than the revoke listener waits. Meanwhile p0 goes to B,
    which processes m3..m5 and commits, and comes back to A. A's restore used the committed offset
    it read before all that: it skipped B's changelog records as uncommitted, flushed its store
    past them, and read the inputs again from there, issuing B's commands a second time over a
    state B never had."""
    monkeypatch.setattr(ownership, "REVOKE_WAIT_S", 0.0)  # the listener gives up at once
    log = Log()
    a = Instance(tmp_path / "a", log)
    b = Instance(tmp_path / "b", log, a.consumer)
    sr0 = TopicPartition(a.topics.send_requests, 0)
    try:
        for i in range(3):
            a.consumer.append(sr0, f"m{i}".encode(), request(f"m{i}"))
        a.assign()
        for _ in range(2):
            await a.proc._turn()
        assert a.commanded() == ["m0", "m1", "m2"] and a.consumer.commits[sr0] == 3
        a.proc._close_store(0)  # A must restore p0 again (as after a revoke and a new assignment)

        a.restorer.during_replay = handover_and_back(a, b, sr0)
        for _ in range(4):
            await a.proc._turn()
        # B's work is committed and in the changelog: A neither repeats it nor loses it.
        assert a.commanded() == ["m0", "m1", "m2"]
        store = a.proc.stores[0]
        assert all(store.get(f"m{i}".encode()) is not None for i in range(6))
        assert a.consumer.commits[sr0] == 6
    finally:
        a.close()
        b.close()


async def test_a_partition_kept_open_through_a_revoke_during_a_restore_is_restored_again_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: A owns p0 and restores p1 for longer than the revoke listener waits, so the
    listener leaves p0's store open. Meanwhile p0 goes to B, which processes m3..m5 and commits, and
    comes back to A. A kept p0's store (without B's changes) and its expected input offset (3): the
    next record (m6, offset 6) was a gap, rewound to 3, and A issued B's commands a second time."""
    monkeypatch.setattr(ownership, "REVOKE_WAIT_S", 0.0)  # the listener gives up at once
    log = Log()
    a = Instance(tmp_path / "a", log, partitions=2)
    b = Instance(tmp_path / "b", log, a.consumer, partitions=2)
    sr0, sr1 = (TopicPartition(a.topics.send_requests, p) for p in (0, 1))
    try:
        for i in range(3):
            a.consumer.append(sr0, f"m{i}".encode(), request(f"m{i}"))
        a.consumer.append(sr1, b"k0", request("k0"))  # p1's changelog has a record to replay
        a.assign()
        for _ in range(2):
            await a.proc._turn()
        assert a.commanded() == ["m0", "m1", "m2", "k0"] and a.consumer.commits[sr0] == 3
        a.proc._close_store(1)  # A must restore p1 again; p0 stays open

        a.restorer.during_replay = handover_and_back(a, b, sr0)
        await a.proc._turn()  # the restore of p1, overtaken
        assert a.restorer.during_replay is None  # the handover happened
        a.consumer.append(sr0, b"m6", request("m6"))
        for _ in range(4):
            await a.proc._turn()
        # B's work is committed and in the changelog: A neither repeats it nor loses it.
        assert a.commanded() == ["m0", "m1", "m2", "k0", "m6"]
        store = a.proc.stores[0]
        assert [i for i in range(7) if store.get(f"m{i}".encode()) is None] == []
        assert a.consumer.commits[sr0] == 7
    finally:
        a.close()
        b.close()


class CompactedRestorer(HookedRestorer):
    """The restore consumer of a changelog whose log cleaner removed the records at ``gone``."""

    def __init__(self, log: Log, gone: set[int]) -> None:
        super().__init__(log)
        self.gone = gone

    async def getmany(self, *tps: TopicPartition, **kw: Any) -> dict[TopicPartition, list[Any]]:
        got = await super().getmany(*tps, **kw)
        return {tp: [r for r in recs if r.offset not in self.gone] for tp, recs in got.items()}


async def m0_issued_then_away(a: Instance) -> None:
    """A issues m0's first command on p0, then loses p0 and keeps its store on disk."""
    a.consumer.append(TopicPartition(a.topics.send_requests, 0), b"m0", request("m0"))
    a.assign()
    for _ in range(2):
        await a.proc._turn()
    assert a.commanded() == ["m0"] and a.proc.stores[0].get(b"m0") is not None
    a.close()


async def test_a_store_kept_past_the_tombstones_retention_is_rebuilt_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: A kept p0's store on disk while away from p0. Meanwhile m0's flow ended on another
    instance and was deleted with a tombstone, which compaction removed after delete.retention.ms
    (with A's own older record of m0). Back on p0, A replayed only the tail after its store's
    offset, which says nothing of m0: the store brought m0's flow back to life, its WhatsApp timer
    armed to send the SMS to a person the WhatsApp had reached."""
    log = Log()
    a = Instance(tmp_path / "a", log)
    changelog0 = TopicPartition(a.topics.changelog, 0)
    try:
        await m0_issued_then_away(a)
        # Elsewhere, m0 ends and its flow is deleted (a timer's change: no input offsets)...
        log.append(changelog0.topic, 0, b"m0", None, [input_header(-1, -1)])
        # ...and, more than a day later, the log cleaner has removed A's m0 record and the tombstone.
        restorer = a.proc._restorer = CompactedRestorer(log, gone={0, 1})  # type: ignore[assignment]
        assert restorer is not None
        later = restore_module.wall_ms() + restore_module.STALE_STORE_MS + 60_000
        monkeypatch.setattr(restore_module, "wall_ms", lambda: later)
        a.assign()
        await a.proc._turn()
        assert a.proc.stores[0].get(b"m0") is None  # rebuilt from what the changelog holds
        assert a.proc.stores[0].next_deadline() is None  # so no timer is left to fire
    finally:
        a.close()


async def test_a_store_kept_a_short_while_replays_only_its_tail(tmp_path: Path) -> None:
    """The fast path the rule above must not cost: a store flushed minutes ago is trusted."""
    log = Log()
    a = Instance(tmp_path / "a", log)
    try:
        await m0_issued_then_away(a)
        a.proc._restorer = CompactedRestorer(log, gone={0})  # type: ignore[assignment]  # only A's record
        a.assign()
        await a.proc._turn()
        assert a.proc.stores[0].get(b"m0") is not None  # kept: not rebuilt from the (compacted) log
    finally:
        a.close()


def _status(message_id: str) -> bytes:
    return orjson.dumps({"messageId": message_id, "attempt": 0, "channel": "WHATSAPP", "status": "SENT"})


async def test_a_restore_overtaken_while_both_inputs_moved_reads_the_new_owners_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the regression above, with B committing on both inputs of p0 (a request and a status):
    every input's committed offset moved, and A's store, which skipped B's changes, is still reset."""
    monkeypatch.setattr(ownership, "REVOKE_WAIT_S", 0.0)  # the listener gives up at once
    log = Log()
    a = Instance(tmp_path / "a", log)
    b = Instance(tmp_path / "b", log, a.consumer)
    sr0 = TopicPartition(a.topics.send_requests, 0)
    ds0 = TopicPartition(a.topics.delivery_status, 0)
    try:
        for i in range(3):
            a.consumer.append(sr0, f"m{i}".encode(), request(f"m{i}"))
        a.consumer.append(ds0, b"m1", _status("m1"))
        a.assign()
        for _ in range(2):
            await a.proc._turn()
        assert a.consumer.commits[sr0] == 3 and a.consumer.commits[ds0] == 1
        a.proc._close_store(0)

        async def handover() -> None:
            await a.proc._on_revoked(a.inputs)
            b.assign()
            a.consumer.append(sr0, b"m3", request("m3"))
            a.consumer.append(ds0, b"m0", _status("m0"))
            for _ in range(3):
                await b.proc._turn()
            assert a.consumer.commits[sr0] == 4 and a.consumer.commits[ds0] == 2
            b.close()
            a.assign()

        a.restorer.during_replay = handover
        for _ in range(4):
            await a.proc._turn()
        assert a.commanded() == ["m0", "m1", "m2"]
        assert all(a.proc.stores[0].get(f"m{i}".encode()) is not None for i in range(4))
    finally:
        a.close()
        b.close()


async def test_a_store_restored_then_away_replays_what_was_written_after_its_restore(tmp_path: Path) -> None:
    """A restore flushes its store at the last record it read; the next record written to the
    changelog (by whichever instance owns the partition next) must be in the next restore's tail."""
    log = Log()
    a = Instance(tmp_path / "a", log)
    b = Instance(tmp_path / "b", log, a.consumer)
    sr0 = TopicPartition(a.topics.send_requests, 0)
    try:
        b.consumer.append(sr0, b"m0", request("m0"))
        b.assign()
        for _ in range(2):
            await b.proc._turn()
        b.close()
        a.assign()
        await a.proc._turn()  # restores m0's flow from the changelog, and nothing more happens
        assert a.proc.stores[0].get(b"m0") is not None
        a.close()
        b.consumer.append(sr0, b"m1", request("m1"))
        b.assign()
        for _ in range(2):
            await b.proc._turn()
        assert b.commanded() == ["m0", "m1"]
        b.close()
        a.assign()
        await a.proc._turn()
        store = a.proc.stores[0]
        assert store.get(b"m1") is not None, "the record after the restore's flush point was skipped"
        assert store.pending_count() == 2
    finally:
        a.close()
        b.close()
