"""The commit protocol without a broker: a failure injected at each step of a checkpoint.

In the style of Quix Streams' checkpoint tests. Each test runs the processor's turns on fakes that
keep what was produced in one log (which the restore reads back, as it reads the changelog), injects
one failure into the first checkpoint, retries as the loop does (rewind, then turn again), and then
checks the promise: every request got its command, timers survived (every flow falls back to SMS
when its WhatsApp step times out), the input offsets end past every request, and a repeat is only
ever the same commandId with the same bytes; under exactly_once there is no repeat at all.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import TopicPartition

from stream_app.config import Settings
from stream_app.kafka import CommittedOffsetUnknown
from stream_app.runtime import restore as restore_module
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.processor import Processor
from stream_app.store import PartitionStore, StoreLocked
from tests.unit.runtime.fakes import FakeConsumer, FakeProducer, FakeRestorer, Log
from tests.unit.runtime.test_rebalance_races import NOW, request

FLOWS = 6
#: The WhatsApp step's fallbackAfter in request(): past it, every flow's SMS command is due.
FALLBACK_MS = 60_000


class Markers:
    """The transaction coordinator's view of one transactional.id: a committed transaction whose
    markers are not written yet.

    Kafka answers EndTxn(commit) once PrepareCommit is in its transaction log and writes the COMMIT
    markers after (TransactionCoordinator.endTransaction): until they land, a read_committed reader
    of the changelog stops before the transaction's records (last stable offset) and OffsetFetch
    without ``require_stable`` (aiokafka's v0-v3) answers the offsets committed before it. An
    InitProducerId, or the next transaction's first AddPartitionsToTxn, is answered
    CONCURRENT_TRANSACTIONS until they are written. With ``delayed`` False (the default) markers are
    written at once, as before.
    """

    def __init__(self) -> None:
        self.delayed = False
        self.pending: list[Callable[[], None]] = []
        #: Called once a transaction has committed (e.g. a revoke landing mid-commit).
        self.on_commit: Callable[[], None] | None = None
        #: Failures of the next transactions: ``fail[topic] = n`` refuses the next n produces to
        #: topic (every producer's); ``end_txn`` = "lost": the next EndTxn(commit) fails and
        #: nothing is committed, "ambiguous": it commits and its answer is an error anyway;
        #: ``abort_fails``: the next abort's EndTxn fails too (the transaction stays open until
        #: the next InitProducerId aborts it).
        self.fail: dict[str, int] = {}
        self.end_txn: str | None = None
        self.abort_fails = False

    def commit(self, write: Callable[[], None]) -> None:
        if self.delayed:
            self.pending.append(write)
        else:
            write()
        if self.on_commit is not None:
            self.on_commit()

    def written(self) -> None:
        """The markers of every committed transaction are written (what InitProducerId waits for)."""
        while self.pending:
            self.pending.pop(0)()


class FakeTxnProducer(FakeProducer):
    """One partition's transactional producer: records reach the log only when the transaction commits."""

    def __init__(self, log: Log, consumer: FakeConsumer, fenced: list[bool], markers: Markers) -> None:
        super().__init__(Log())  # sends inside a transaction land here first
        self.shared = log
        self.consumer = consumer
        self.fenced = fenced  # shared flag: the next send_offsets_to_transaction is refused once
        self.markers = markers
        self.fail = markers.fail
        self.offsets: dict[TopicPartition, int] = {}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        self.markers.written()  # the next transaction waits for the previous one's markers
        self.log, self.offsets = Log(), {}
        try:
            yield
        except BaseException:
            self.log = Log()  # aborted, or left open and aborted later: never visible
            if self.markers.abort_fails:
                self.markers.abort_fails = False
                raise KafkaError("injected: EndTxn(abort) failed") from None
            raise
        records, offsets = self.log, dict(self.offsets)
        end_txn, self.markers.end_txn = self.markers.end_txn, None
        if end_txn == "lost":
            raise KafkaError("injected: EndTxn(commit) failed, nothing committed")

        def write() -> None:
            for tp, recs in records.records.items():
                for r in recs:
                    self.shared.append(tp.topic, tp.partition, r.key, r.value, r.headers)
            self.consumer.commits.update(offsets)

        self.markers.commit(write)
        if end_txn == "ambiguous":
            raise KafkaError("injected: EndTxn(commit) answered an error, but it committed")

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group: str) -> None:
        if self.fenced and self.fenced[0]:
            self.fenced[0] = False
            raise ProducerFenced()
        self.offsets.update(offsets)

    async def stop(self) -> None:
        pass


class Run:
    """A processor on fakes owning partition 0 of both inputs, with a clock the test moves."""

    def __init__(self, tmp_path: Path, guarantee: str = "at_least_once") -> None:
        s = Settings(
            state_dir=tmp_path / "state",
            topic_prefix="t.",
            app_id="app",
            metrics_port=0,
            partitions=1,
            processing_guarantee=guarantee,
        )
        self.t = s.topics
        self.now = NOW
        self.proc = Processor(s, clock=lambda: self.now)
        self.log = Log()
        self.consumer = FakeConsumer()
        self.producer = FakeProducer(self.log)
        self.fenced = [False]
        self.markers = Markers()
        self.proc._consumer = self.consumer  # type: ignore[assignment]
        self.proc._producer = self.producer  # type: ignore[assignment]
        self.proc._restorer = FakeRestorer(self.log)  # type: ignore[assignment]
        self.proc.partitions = 1
        self.failures: list[str] = []

        async def start_txn_producer(p: int) -> None:
            self.markers.written()  # InitProducerId: CONCURRENT_TRANSACTIONS until they are
            producer = FakeTxnProducer(self.log, self.consumer, self.fenced, self.markers)
            self.proc.txn_producers[p] = producer  # type: ignore[assignment]

        self.proc._start_txn_producer = start_txn_producer  # type: ignore[method-assign]
        sr, ds = TopicPartition(self.t.send_requests, 0), TopicPartition(self.t.delivery_status, 0)
        for i in range(FLOWS):
            self.consumer.append(sr, f"m{i}".encode(), request(f"m{i}"))
        self.consumer.assign_now({sr, ds})
        self.proc._on_assigned({sr, ds})

    async def turns(self, n: int = 6) -> None:
        """Turn as the loop does: a failed turn is logged, rewound and retried."""
        for _ in range(n):
            try:
                await self.proc._turn()
            except (KafkaError, OSError, TimeoutError, StoreLocked, CommittedOffsetUnknown) as exc:
                self.failures.append(type(exc).__name__)
                await self.proc._rewind()
        self.markers.written()  # by now the coordinator has written every marker

    def commands(self) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = defaultdict(list)
        for _, value in self.log.values(self.t.retry_commands):
            assert value is not None
            out[orjson.loads(value)["commandId"]].append(value)
        return out

    async def check(self, *, exactly_once: bool = False) -> None:
        await self.turns()
        self.now += FALLBACK_MS
        await self.turns()
        commands = self.commands()
        wanted = {f"m{i}:{a}" for i in range(FLOWS) for a in (0, 1)}
        assert set(commands) == wanted, "every request got its command, and every timer fired"
        for cid, values in commands.items():
            assert len(set(values)) == 1, f"{cid} was repeated with other bytes"
            if exactly_once:
                assert len(values) == 1, f"{cid} repeated under exactly_once"
        assert self.consumer.commits[TopicPartition(self.t.send_requests, 0)] == FLOWS

    def close(self) -> None:
        for p in list(self.proc.tasks):
            self.proc._close_store(p)


@pytest.fixture
def run(tmp_path: Path) -> Any:
    r = Run(tmp_path)
    yield r
    r.close()


async def test_without_failures(run: Run) -> None:
    await run.check()
    assert run.failures == []


async def test_every_batch_is_closed_before_it_is_handed_over(run: Run) -> None:
    # An open batch waits linger_ms in aiokafka's accumulator before it goes: added to each of the
    # commit's waits (outputs, then changelog) for nothing, since the commit awaits them at once.
    await run.check()
    assert run.log.values(run.t.retry_commands) and run.log.values(run.t.changelog)
    assert run.producer.open_batches == 0


@pytest.mark.parametrize("topic", ["retry_commands", "changelog"])
async def test_a_produce_that_fails(run: Run, topic: str) -> None:
    """Outputs or changelog refused: nothing is committed, the retry redoes the whole checkpoint."""
    run.producer.fail[getattr(run.t, topic)] = 1
    await run.check()
    assert run.failures == ["KafkaConnectionError"]


@pytest.mark.parametrize("topic", ["retry_commands", "changelog"])
async def test_a_delivery_that_fails_after_the_send_was_taken(run: Run, topic: str) -> None:
    """The send is taken but its delivery fails: the changelog (for outputs) and the offsets must wait
    for every delivery, or the commands are lost behind a durable state and a committed input."""
    run.producer.fail_delivery[getattr(run.t, topic)] = 1
    await run.check()
    assert run.failures == ["KafkaTimeoutError"]


async def test_an_offset_commit_that_fails(run: Run) -> None:
    """Outputs and changelog are durable, the offsets are not: the retry repeats the same commands."""
    run.consumer.fail_commits = 1
    await run.check()
    assert run.failures == ["CommitFailedError"]
    assert any(len(v) == 2 for v in run.commands().values()), "the injected failure came too late"


async def test_a_store_flush_that_fails(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything is committed but the local store is not: the restore replays the changelog."""
    calls = {"n": 0}

    # A subclass the restore opens, not a patched method: a compiled store's callers would not see one.
    class FailingStore(PartitionStore):
        def flush(self, changelog_offset: int | None = None) -> None:
            calls["n"] += 1
            if calls["n"] == 2:  # the first checkpoint's (the first call is the restore's own)
                raise OSError("injected: disk full")
            super().flush(changelog_offset)

    monkeypatch.setattr(restore_module, "PartitionStore", FailingStore)
    await run.check()
    assert run.failures == ["OSError"]


async def test_a_revoke_in_the_middle_of_a_checkpoint(run: Run) -> None:
    """The group moved on while the checkpoint committed: the stores are dropped, then restored."""

    def revoke() -> None:
        run.proc._generation += 1
        run.consumer.on_commit = None

    run.consumer.on_commit = revoke
    await run.check()
    assert run.failures == []


async def test_a_changelog_record_without_a_key_does_not_stop_the_restore_regression(run: Run) -> None:
    # Not one of ours (each change is keyed by its messageId). The pure-Python store staged it and
    # its flush at the end of the restore failed, on every try; now it is logged and passed over.
    run.log.append(run.t.changelog, 0, None, b"\x10not a state", [])
    await run.check()
    assert run.failures == []


async def test_a_fenced_transactional_producer(tmp_path: Path) -> None:
    """exactly_once: the transaction aborts, a new producer takes over, and nothing repeats."""
    r = Run(tmp_path, "exactly_once")
    try:
        r.fenced[0] = True
        await r.check(exactly_once=True)
        assert r.failures == ["ProducerFenced"]
    finally:
        r.close()


async def test_exactly_once_without_failures(tmp_path: Path) -> None:
    r = Run(tmp_path, "exactly_once")
    try:
        await r.check(exactly_once=True)
        assert r.failures == []
    finally:
        r.close()


class _Revoked:
    """A committer during whose commit a revoke begins (the generation moves on)."""

    def __init__(self, generation: list[int]) -> None:
        self.generation = generation

    async def commit(self, ck: Checkpoint) -> dict[int, int]:
        self.generation[0] += 1
        return {0: 7}


async def test_a_checkpoint_a_revoke_overtook_flushes_no_store(tmp_path: Path) -> None:
    """The partition may be another instance's by now: its store must not move past what that
    instance writes, so nothing is flushed and the caller drops the staged writes."""
    store = PartitionStore.open(tmp_path, "t.app-flows-changelog", 0)
    try:
        ck = Checkpoint(generation=3)
        ck.changed(0, b"m0", store.put(b"m0", b"state", NOW))
        generation = [3]
        assert await ck.commit(_Revoked(generation), {0: store}, lambda: generation[0]) is False
        assert store.changelog_offset is None
        store.close()
        with PartitionStore.open(tmp_path, "t.app-flows-changelog", 0) as again:
            assert again.get(b"m0") is None and again.changelog_offset is None
    finally:
        store.close()


async def test_a_revoke_during_a_commit_whose_markers_are_not_written_yet_regression(tmp_path: Path) -> None:
    """exactly_once: a revoke lands while a transaction commits and the partition comes straight back.

    The turn's stores are dropped unflushed (the group may have moved on), so the restore must read
    the committed transaction back. Kafka answered EndTxn before writing its markers, so right then
    neither the changelog (read_committed) nor the committed offsets show it. The producer kept from
    before the revoke never asks the coordinator again: the restore read the state and offsets of
    before the transaction, the inputs were processed again and every command was published twice
    (the second transaction waited for the first one's markers, then committed too). A producer
    started again for the restored partition (InitProducerId) waits for those markers first.
    """
    r = Run(tmp_path, "exactly_once")
    try:
        r.markers.delayed = True

        def revoke() -> None:
            # The revoke and the reassignment of the same partitions (eager protocol) both land
            # while the transaction commits; the turn then sees a new generation.
            r.proc._generation += 1
            r.markers.on_commit = None

        r.markers.on_commit = revoke
        await r.proc._turn()
        assert r.markers.pending, "the first turn did not commit a transaction"
        assert r.proc.tasks == {}, "the revoke did not drop the turn's stores"
        await r.check(exactly_once=True)
        assert r.failures == []
    finally:
        r.close()


@pytest.mark.parametrize(
    "step", ["outputs", "changelog", "offsets", "commit_lost", "commit_ambiguous", "abort_too", "flush"]
)
async def test_exactly_once_with_a_failure_at_each_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """exactly_once: whatever step of the first transaction fails (its answer lost included), the
    retry restores what was committed, and nothing is missing or repeated."""
    r = Run(tmp_path, "exactly_once")
    try:
        m = r.markers
        if step in ("outputs", "abort_too"):
            m.fail[r.t.retry_commands] = 1
            m.abort_fails = step == "abort_too"
        elif step == "changelog":
            m.fail[r.t.changelog] = 1
        elif step == "offsets":
            r.fenced[0] = True
        elif step in ("commit_lost", "commit_ambiguous"):
            m.end_txn = step.removeprefix("commit_")
        else:
            calls = {"n": 0}

            class FailingStore(PartitionStore):
                def flush(self, changelog_offset: int | None = None) -> None:
                    calls["n"] += 1
                    if calls["n"] == 2:  # the first checkpoint's (the first is the restore's own)
                        raise OSError("injected: disk full")
                    super().flush(changelog_offset)

            monkeypatch.setattr(restore_module, "PartitionStore", FailingStore)
        await r.check(exactly_once=True)
        assert len(r.failures) == 1, r.failures
    finally:
        r.close()
