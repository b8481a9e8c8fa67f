"""exactly_once against librdkafka's mock cluster: a SMOKE test of the transactional code path.

Neither test broker we can run here has transactions (Tansu answers InitProducerId with an error, so
``test_exactly_once.py`` skips) and no Apache Kafka can be obtained, so without this test the
``STREAM_APP_PROCESSING_GUARANTEE=exactly_once`` path has never run. librdkafka's mock cluster (the
confluent-kafka wheel bundles it, ``tests/support/mock_kafka.py``) does answer every transactional
request aiokafka sends, so the real processor runs against it here, end to end:

- it starts, and its startup probe (a transactional InitProducerId) passes;
- it owns all 4 partitions and starts one transactional producer per partition, each with the
  ``<app-id>-<send-requests>-<p>`` transactional.id and its own producer id;
- a batch of send requests yields exactly one attempt-0 command per message on partition p of
  ``retry-commands``, one changelog record per message tagged with its input offset, and one dead
  letter for a malformed request; then a REJECTED status per partition (the other input) yields the
  SMS attempt 1 and a changelog record tagged with the status offset, in a second transaction;
- every one of those records was written by partition p's transactional producer, and each
  partition holds one COMMIT marker per transaction and no ABORT marker: the processor ended its
  transactions with EndTxn(commit) (read from the raw batches, which the mock stores like a broker);
- it stops cleanly (the run returns, every producer is stopped, no turn failed).

What this test does NOT show, because the mock cannot (see ``tests/support/mock_kafka.py``):

- atomicity: the mock keeps whatever it was sent; an aborted transaction's records stay readable;
- read_committed filtering: the mock's last stable offset is its high watermark and it returns no
  aborted-transaction list, so the processor's read_committed consumers are not exercised as such
  (this test reads read_uncommitted, so as not to suggest otherwise);
- input offsets committed in the transaction: TxnOffsetCommit is acknowledged but not stored, so
  nothing here checks ``send_offsets_to_transaction`` took effect, and a restart or restore on the
  mock would start from no committed offset (hence no restart here: ``test_exactly_once.py`` has
  that, on a real Kafka);
- fencing of a zombie instance, and transaction timeouts.

``test_stop_returns_while_a_transaction_cannot_deliver_regression`` runs the mock through
``injecting_mock_cluster`` (``tests/support/mock_kafka.py``), which makes it refuse requests with
the error codes a test pushes.

``test_start_reads_the_real_partition_counts`` is the regression test of a start-up bug the mock
exposed: the co-partitioning check saw 0 partitions on a broker with Kafka's Metadata v1+ semantics.

It runs wherever confluent-kafka is installed (the ``dev`` extra, so in CI) and skips, saying why,
only where it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer.transaction_manager import TransactionState

from stream_app.config import Settings
from stream_app.lifecycle import wait_started
from stream_app.runtime import processor as processor_module
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.processor import Processor
from stream_app.runtime.produce import Out
from stream_app.store import INPUT_HEADER
from tests.integration.runtime.helpers import WAIT_S, publish, send_request, settings_for, status
from tests.support.mock_kafka import (
    MOCK_PARTITIONS,
    NOT_ENOUGH_REPLICAS,
    PRODUCE_API_KEY,
    auto_create,
    batch_log,
    injecting_mock_cluster,
    mock_cluster,
    read_all,
)
from tests.support.wait import until

try:
    import confluent_kafka  # noqa: F401  (only its presence matters here)

    _NOT_IMPORTABLE = ""
except ImportError as exc:
    _NOT_IMPORTABLE = f"{type(exc).__name__}: {exc}"

pytestmark = pytest.mark.skipif(
    bool(_NOT_IMPORTABLE),
    reason=f"confluent_kafka is not importable ({_NOT_IMPORTABLE}; pip install -e '.[dev]'): its "
    "bundled librdkafka mock cluster is the only broker with Kafka transactions available here",
)

#: Messages per partition: every partition's transactional producer must commit at least once.
PER_PARTITION = 3


@pytest.fixture
def mock_bootstrap() -> Iterator[str]:
    with mock_cluster() as bootstrap:
        yield bootstrap


def _ids_by_partition() -> dict[int, list[str]]:
    """PER_PARTITION messageIds for each partition, by the murmur2 every producer of ours uses."""
    ids: dict[int, list[str]] = {p: [] for p in range(MOCK_PARTITIONS)}
    n = 0
    while any(len(v) < PER_PARTITION for v in ids.values()):
        mid = f"eo-{n}"
        n += 1
        p = (murmur2(mid.encode()) & 0x7FFFFFFF) % MOCK_PARTITIONS
        if len(ids[p]) < PER_PARTITION:
            ids[p].append(mid)
    return ids


def _settings(bootstrap: str, tmp_path: Path) -> Settings:
    return settings_for(
        bootstrap, tmp_path / "state", partitions=MOCK_PARTITIONS, processing_guarantee="exactly_once"
    )


async def _make_topics(bootstrap: str, s: Settings) -> None:
    t = s.topics
    topics = [t.send_requests, t.delivery_status, t.changelog, t.retry_commands, t.outcomes, t.dead_letters]
    topics.append(t.channel_control)  # read whole at start by every instance (v1.1)
    # The mock has no CreateTopics; a Metadata request creates a topic, always with 4 partitions, so
    # every topic is co-partitioned as the processor's start requires.
    assert await auto_create(bootstrap, topics) == dict.fromkeys(topics, MOCK_PARTITIONS)


@contextlib.asynccontextmanager
async def _running(processor: Processor) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``processor`` in this loop until the block ends, then stop it the way SIGTERM does."""
    task = asyncio.create_task(processor.run())
    try:
        await wait_started(task, processor.ready, "processor", WAIT_S)
        yield task
    finally:
        processor.stop.set()
        # A clean stop: run() returns (it re-raises a fatal error of the loop) within its grace.
        await asyncio.wait_for(task, 60)


async def test_exactly_once_path_runs_end_to_end_on_the_librdkafka_mock(
    mock_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="stream_app.runtime")
    s = _settings(mock_bootstrap, tmp_path)
    t = s.topics
    await _make_topics(mock_bootstrap, s)
    ids = _ids_by_partition()
    bad_partition = (murmur2(b"bad") & 0x7FFFFFFF) % MOCK_PARTITIONS
    rejected = {p: ids[p][0] for p in ids}  # one message per partition gets a second transaction

    processor = Processor(s)
    async with _running(processor) as task:
        # Each partition's transactional producer initialised (InitProducerId answered): aiokafka
        # keeps the transactional state in its (private) transaction manager.
        assert sorted(processor.txn_producers) == list(range(MOCK_PARTITIONS))
        pids: dict[int, int] = {}
        for p, producer in processor.txn_producers.items():
            txn = producer._txn_manager
            assert txn.transactional_id == f"{s.app_id}-{t.send_requests}-{p}"
            assert txn.producer_id >= 0
            pids[p] = txn.producer_id
        assert len(set(pids.values())) == MOCK_PARTITIONS

        # records_out counts a partition's records only once its transaction block has exited, that
        # is after EndTxn(commit) was answered.
        def out(topic: str) -> float:
            value = processor.metrics.registry.get_sample_value(
                "stream_app_records_out_total", {"topic": topic}
            )
            return value or 0.0

        async def committed(what: str, commands: int, dead: int) -> None:
            deadline = time.monotonic() + WAIT_S
            while out(t.retry_commands) < commands or out(t.dead_letters) < dead:
                assert not task.done(), "the processor stopped on its own"
                assert time.monotonic() < deadline, f"{what}: not committed after {WAIT_S:g} s"
                await asyncio.sleep(0.05)

        requests = [
            (mid.encode(), send_request(mid, [("WHATSAPP", 600), ("SMS", None)]))
            for p in sorted(ids)
            for mid in ids[p]
        ]
        await publish(s, t.send_requests, [*requests, (b"bad", b"{nope")])
        await committed("attempt 0 of every message", len(requests), 1)
        # A second transaction on every producer, from the other input: WhatsApp refused -> SMS.
        await publish(
            s,
            t.delivery_status,
            [(mid.encode(), status(mid, "WHATSAPP", "REJECTED", 0)) for mid in rejected.values()],
        )
        await committed("attempt 1 after REJECTED", len(requests) + len(rejected), 1)
    assert processor.txn_producers == {}, "a transactional producer was left running"
    messages = [r.getMessage() for r in caplog.records]
    started = [m for m in messages if m.startswith("event=processor_started")]
    assert len(started) == 1 and "guarantee=exactly_once" in started[0]
    assert not [m for m in messages if "turn_failed" in m or "rewind_failed" in m], messages
    assert any(m.startswith("event=processor_stopped") for m in messages)

    inputs = [t.send_requests, t.delivery_status]
    got = await read_all(mock_bootstrap, [*inputs, t.retry_commands, t.changelog, t.dead_letters])
    offset_of = {(tp.topic, r.key): r.offset for tp, recs in got.items() if tp.topic in inputs for r in recs}
    for p in range(MOCK_PARTITIONS):
        # One attempt-0 command per message, then attempt 1 (SMS) of the rejected one, on the
        # input's own partition, in input order.
        commands = [orjson.loads(r.value) for r in got[TopicPartition(t.retry_commands, p)]]
        assert [(c["commandId"], c["channel"]) for c in commands] == [
            *((f"{mid}:0", "WHATSAPP") for mid in ids[p]),
            (f"{rejected[p]}:1", "SMS"),
        ]
        # One changelog record per state change, on partition p, naming the input offset it came from.
        changelog = got[TopicPartition(t.changelog, p)]
        expected = [(mid.encode(), f"{offset_of[(t.send_requests, mid.encode())]},-1") for mid in ids[p]]
        key = rejected[p].encode()
        expected.append((key, f"-1,{offset_of[(t.delivery_status, key)]}"))
        assert [(r.key, dict(r.headers)[INPUT_HEADER].decode()) for r in changelog] == expected
        assert all(r.value is not None for r in changelog)
    dead = [r for tp, recs in got.items() if tp.topic == t.dead_letters for r in recs]
    assert [(r.key, r.partition) for r in dead] == [(b"bad", bad_partition)]

    # The raw batches: partition p's outputs and changelog come from p's transactional producer, and
    # its transactions were committed, never aborted.
    written: dict[int, list[TopicPartition]] = defaultdict(list)
    for p in range(MOCK_PARTITIONS):
        written[p] += [TopicPartition(t.retry_commands, p), TopicPartition(t.changelog, p)]
    written[bad_partition].append(TopicPartition(t.dead_letters, bad_partition))
    for p, tps in written.items():
        for tp in tps:
            batches = await batch_log(mock_bootstrap, tp)
            data = [b for b in batches if b.marker is None]
            markers = [b.marker for b in batches if b.marker is not None]
            assert data, f"{tp}: no data"
            assert all(b.transactional and b.producer_id == pids[p] for b in data), (tp, batches)
            assert set(markers) == {"COMMIT"}, (tp, batches)
            assert batches[-1].marker == "COMMIT", f"{tp}: the last transaction was not committed"
            if tp.topic != t.dead_letters:
                assert len(markers) >= 2, f"{tp}: expected two committed transactions: {batches}"


async def test_start_reads_the_real_partition_counts(mock_bootstrap: str, tmp_path: Path) -> None:
    s = _settings(mock_bootstrap, tmp_path)
    await _make_topics(mock_bootstrap, s)
    processor = Processor(s)
    async with _running(processor):
        assert processor.partitions == MOCK_PARTITIONS


async def test_transactional_producer_starts_before_restore_regression(
    mock_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newly owned partition's transactional producer starts (and so fences the previous owner)
    before the restore that opens its store: restoring first could wait, read_committed, on the
    previous owner's open transaction until it timed out.

    The mock cannot show that wait (it ignores read_committed and has no zombie), so this test holds
    the processor to the order itself, recorded on the instance.
    """
    s = _settings(mock_bootstrap, tmp_path)
    await _make_topics(mock_bootstrap, s)
    processor = Processor(s)
    calls: list[tuple[str, list[int], list[int]]] = []  # (call, its partitions, producers running)
    real_start = processor._start_txn_producer
    real_restore = processor._restore

    async def start(p: int) -> None:
        calls.append(("start", [p], sorted(processor.txn_producers)))
        await real_start(p)

    async def restore(parts: list[int]) -> None:
        calls.append(("restore", sorted(parts), sorted(processor.txn_producers)))
        await real_restore(parts)

    monkeypatch.setattr(processor, "_start_txn_producer", start)
    monkeypatch.setattr(processor, "_restore", restore)
    async with _running(processor):
        assert sorted(processor.stores) == list(range(MOCK_PARTITIONS))
        assert sorted(processor.txn_producers) == list(range(MOCK_PARTITIONS))

    every = list(range(MOCK_PARTITIONS))
    assert sorted(p for call, parts, _ in calls if call == "start" for p in parts) == every, calls
    assert sorted(p for call, parts, _ in calls if call == "restore" for p in parts) == every, calls
    for i, (call, parts, running) in enumerate(calls):
        if call != "restore":
            continue
        started_before = {p for c, ps, _ in calls[:i] if c == "start" for p in ps}
        assert set(parts) <= started_before, f"restore of {parts} before its producers started: {calls}"
        # Started means started: InitProducerId answered, not merely begun.
        assert set(parts) <= set(running), f"restore of {parts} with only {running} running: {calls}"


class _InjectedTxnFailure(KafkaError):
    """The failure injected into one partition's transaction."""


async def test_failed_partition_transaction_lets_the_others_settle_regression(
    mock_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one partition's transaction fails, every other partition's transaction has committed (or
    aborted) before the failure leaves ``_complete_transactional``: the retry that follows stops the
    producers and rewinds, which must not meet a transaction mid-commit. It used to raise out of
    gather() at once, with the other transactions still open.

    Deterministic: the other partitions add their input offsets to their transactions only once the
    failing partition's transaction has ended (aborted), so each still has a round trip or two to
    the broker to go when the failure is raised.
    """
    s = _settings(mock_bootstrap, tmp_path)
    t = s.topics
    await _make_topics(mock_bootstrap, s)
    failing = 1
    processor = Processor(s)
    async with _running(processor):
        # No input is published: the processor's own turns stay empty and never touch a producer.
        producers = dict(processor.txn_producers)
        assert sorted(producers) == list(range(MOCK_PARTITIONS))
        ended = {p: asyncio.Event() for p in producers}
        outcome: dict[int, str] = {}

        def recorded(p: int, producer: AIOKafkaProducer) -> Callable[[], AbstractAsyncContextManager[None]]:
            real = producer.transaction

            @contextlib.asynccontextmanager
            async def transaction() -> AsyncIterator[None]:
                try:
                    async with real():
                        yield
                except BaseException:
                    outcome[p] = "aborted"
                    raise
                else:
                    outcome[p] = "committed"
                finally:
                    ended[p].set()

            return transaction

        def offsets_to_transaction(p: int, producer: AIOKafkaProducer) -> Callable[..., Awaitable[None]]:
            real = producer.send_offsets_to_transaction

            async def send_offsets_to_transaction(offsets: Any, group_id: str) -> None:
                if p == failing:
                    raise _InjectedTxnFailure(f"partition {p}: injected")
                await ended[failing].wait()
                await real(offsets, group_id)

            return send_offsets_to_transaction

        for p, producer in producers.items():
            monkeypatch.setattr(producer, "transaction", recorded(p, producer))
            monkeypatch.setattr(producer, "send_offsets_to_transaction", offsets_to_transaction(p, producer))

        # One command and the input offset of each partition, as a turn over all 4 would have them.
        ck = Checkpoint()
        for p in producers:
            ck.outputs[p].append(Out(t.retry_commands, f"m{p}".encode(), b"{}", [], p))
            ck.offsets[p][TopicPartition(t.send_requests, p)] = 1

        escaped: dict[int, str] | None = None
        states: dict[int, TransactionState] = {}
        try:
            await asyncio.wait_for(processor._complete_transactional(ck), WAIT_S)
        except _InjectedTxnFailure:
            # The moment the failure escapes: what had ended, and each producer's transaction state.
            escaped = dict(outcome)
            states = {p: producer._txn_manager.state for p, producer in producers.items()}
        # Whatever was still open (the old behaviour) ends before the processor is stopped.
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ended.values())), WAIT_S)
        assert escaped is not None, "the failed transaction did not fail _complete_transactional"
        assert escaped == {p: "aborted" if p == failing else "committed" for p in producers}, (
            f"the failure was raised while other partitions' transactions were open: ended {escaped}, "
            f"states {states}"
        )
        assert set(states.values()) == {TransactionState.READY}, states

    # On the broker: the failed partition's transaction aborted, every other one committed.
    for p in producers:
        batches = await batch_log(mock_bootstrap, TopicPartition(t.retry_commands, p))
        markers = [b.marker for b in batches if b.marker is not None]
        assert markers == ["ABORT" if p == failing else "COMMIT"], (p, batches)


async def test_stop_returns_while_a_transaction_cannot_deliver_regression(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while a partition refuses every produce (NOT_ENOUGH_REPLICAS: min.insync.replicas not
    met, retriable) and a transaction waits for its records: the processor still stops.

    The turn outlives the stop grace and is cancelled; aiokafka's transaction context then aborts,
    and its abort first waits for the transaction's records in flight, which the partition keeps
    refusing: the cancelled turn never ended and ``run()`` never returned.
    """
    monkeypatch.setattr(processor_module, "STOP_GRACE_S", 0.2)
    with injecting_mock_cluster() as mock:
        s = _settings(mock.bootstrap, tmp_path)
        t = s.topics
        await _make_topics(mock.bootstrap, s)
        await publish(s, t.send_requests, [(b"m1", send_request("m1", [("WHATSAPP", 600), ("SMS", None)]))])
        # From now on every Produce, of every client, is refused (for far longer than this test).
        mock.push_request_errors(PRODUCE_API_KEY, [NOT_ENOUGH_REPLICAS] * 100_000)
        processor = Processor(s)
        task = asyncio.create_task(processor.run())
        producers: list[AIOKafkaProducer] = []
        try:
            await wait_started(task, processor.ready, "processor", WAIT_S)
            producers = list(processor.txn_producers.values())

            def stuck() -> bool:
                assert not task.done(), "the processor stopped on its own"
                return TransactionState.IN_TRANSACTION in [p._txn_manager.state for p in producers]

            await until(stuck, "a transaction waiting for its refused records")
            processor.stop.set()
            done, _ = await asyncio.wait({task}, timeout=WAIT_S)
            assert done, f"run() did not return {WAIT_S:g} s after the stop"
            task.result()
            assert processor.txn_producers == {}
        finally:
            # The partition takes records again: the abandoned producer's sender delivers them and
            # ends its abort, so it can be closed (its stop timed out, leaving its connections open).
            mock.clear_request_errors(PRODUCE_API_KEY)
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, WAIT_S)
            await until(
                lambda: all(p._txn_manager.state is TransactionState.READY for p in producers),
                "the abandoned transaction's abort, once its records are taken",
            )
            for producer in producers:
                await asyncio.wait_for(producer._sender.close(), WAIT_S)
                await producer.client.close()


#: Kafka API keys of the transactional requests, and the coordinator errors a client must retry.
TXN_APIS = {
    "InitProducerId": 22,
    "AddPartitionsToTxn": 24,
    "AddOffsetsToTxn": 25,
    "EndTxn": 26,
    "TxnOffsetCommit": 28,
}
NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE = 16, 14, 15


@pytest.mark.parametrize("api", sorted(TXN_APIS))
async def test_a_coordinator_moving_or_loading_only_delays_the_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, api: str
) -> None:
    """NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS and COORDINATOR_NOT_AVAILABLE answered to a
    transactional request (the transaction or group coordinator moved, or is loading its log after
    a restart): aiokafka finds the coordinator again and retries, no turn fails, every command is
    committed once."""
    caplog.set_level(logging.INFO, logger="stream_app.runtime")
    with injecting_mock_cluster() as mock:
        s = _settings(mock.bootstrap, tmp_path)
        t = s.topics
        await _make_topics(mock.bootstrap, s)
        errors = [NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE]
        mock.push_request_errors(TXN_APIS[api], errors)
        mock.start_request_tracking()
        processor = Processor(s)
        async with _running(processor):
            request = send_request("m1", [("WHATSAPP", 600), ("SMS", None)])
            await publish(s, t.send_requests, [(b"m1", request)])

            def committed() -> bool:
                value = processor.metrics.registry.get_sample_value(
                    "stream_app_records_out_total", {"topic": t.retry_commands}
                )
                return (value or 0.0) >= 1

            await until(committed, "the command's transaction committed")
        got = await read_all(mock.bootstrap, [t.retry_commands])
        commands = [orjson.loads(r.value)["commandId"] for recs in got.values() for r in recs]
        assert commands == ["m1:0"]
        assert mock.requests(TXN_APIS[api]) > len(errors), "the errors were not all answered"
        messages = [r.getMessage() for r in caplog.records]
        assert not [m for m in messages if "turn_failed" in m], messages
