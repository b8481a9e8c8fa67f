"""The fallback processor: aiokafka around the pure core, with a durable keyed timer store.

One asyncio task runs every turn of the loop (DESIGN.md rules 3-6):

1. reconcile: open and restore the store of every newly owned partition, close the others;
2. ``getmany()`` a batch (waiting no longer than the next due timer);
3. decode each record, ``decide()``, stage the new state in the partition's store and buffer effects;
4. fire due timers (at most :data:`TIMER_BATCH` per turn) through the same path;
5. complete: produce outputs and await their delivery, then produce the changelog and await it,
   then commit the input offsets, then ``store.flush(changelog_offset)``. A crash at any point can
   therefore only repeat an effect (same commandId / same outcome), never lose one.

Every changelog record carries the header ``stream-app.input`` = ``b"<send-requests offset>,
<delivery-status offset>"`` (``-1``: no input of that topic; both ``-1``: a timer change). A restore
skips a record whose input offset was never committed, because that input will be processed again
from the committed offset and must meet the state it was decided against.

Any Kafka error inside a turn (broker gone, request timeout, commit refused by a rebalance) is logged
and the turn is retried after a backoff from a clean slate: stores are closed without their staged
writes, positions go back to the committed offsets and the stores are restored from the changelog
tail. The loop never dies on a broker outage or on input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import InvalidRecord, SendRequest, decode_request, decode_status, encode
from stream_app.contracts.trusted import encode_command
from stream_app.errors import BrokerUnreachable
from stream_app.fallback import (
    CancelEvent,
    DeadLetter,
    Decision,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Limits,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    decide,
    decode_state,
    encode_state,
)
from stream_app.kafka_metadata import topic_partitions
from stream_app.runtime.errors import NotCoPartitioned, TransactionsUnsupported
from stream_app.runtime.logs import LOGGER, log, mask
from stream_app.runtime.metrics import Metrics, serve
from stream_app.runtime.topology import check_topics, co_partitioned
from stream_app.store import PartitionStore, StoreLocked

Clock = Callable[[], int]
Headers = list[tuple[str, bytes]]

#: Changelog header naming the input offsets a state change came from (see the module docstring).
INPUT_HEADER = "stream-app.input"
TRACEPARENT = "traceparent"

#: Records per ``getmany()``: large enough that the per-batch round trips (deliver, changelog,
#: commit) are amortised over thousands of records, small enough that a turn stays well under a second.
MAX_RECORDS = 5000
#: Timers fired per turn (DESIGN.md: about 10k) so records, commits and heartbeats are never starved.
TIMER_BATCH = 10_000
#: Longest ``getmany()`` wait when no timer is due sooner: bounds how late a stop or a new clock
#: reading is noticed.
MAX_WAIT_MS = 200
#: How long the group waits for members to rejoin in a rebalance (aiokafka's default is the 10 s
#: session timeout, too tight for a revoke that finishes a batch during a broker hiccup).
REBALANCE_TIMEOUT_MS = 30_000
#: Bound on the revoke listener's wait for the loop to finish its turn: well under the rebalance
#: timeout, so a wedged turn can never stall the whole group's rebalance.
REVOKE_WAIT_S = 20.0
#: A restore replays the changelog without polling the group consumer; 15 minutes leaves room for
#: ten million flows at the measured restore rate before the group would evict the instance.
MAX_POLL_INTERVAL_MS = 900_000
#: Backoff after a failed turn: doubles from 100 ms up to 5 s while the broker is away.
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
#: Grace for the last turn and the final flush when stopping, before the loop task is cancelled.
STOP_GRACE_S = 15.0
#: Restore progress is logged at most this often (seconds).
PROGRESS_EVERY_S = 2.0


def wall_clock() -> int:
    """Epoch milliseconds of the wall clock (the default clock)."""
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _Change:
    """The latest state of one key in the current batch, and the inputs that led to it."""

    record: bytes | None  # the changelog value (state and timer) the store staged; None: deleted
    req_offset: int = -1
    status_offset: int = -1


@dataclass(slots=True)
class _Replay:
    """One partition's changelog replay: offsets to read and the committed input offsets."""

    start: int
    end: int
    req_limit: int
    st_limit: int
    applied: int = 0
    skipped: int = 0
    position: int = 0


@dataclass(slots=True)
class _Out:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    partition: int | None = None  # None: the producer's murmur2 of the key


@dataclass(slots=True)
class _Work:
    """Everything one turn produces, grouped by the partition it belongs to."""

    outputs: dict[int, list[_Out]] = field(default_factory=lambda: defaultdict(list))
    changes: dict[int, dict[bytes, _Change]] = field(default_factory=lambda: defaultdict(dict))
    offsets: dict[int, dict[TopicPartition, int]] = field(default_factory=lambda: defaultdict(dict))

    def empty(self) -> bool:
        return not (self.outputs or self.changes or self.offsets)


def _input_offsets(headers: Iterable[tuple[str, bytes]]) -> tuple[int, int] | None:
    for name, value in headers:
        if name == INPUT_HEADER:
            try:
                req, st = value.split(b",", 1)
                return int(req), int(st)
            except ValueError:
                return None
    return None


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, processor: Processor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._processor._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._processor._on_assigned(assigned)


class Processor:
    """One processor instance. Use :func:`run_processor`; this class is its state."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        stop: asyncio.Event | None = None,
        ready: asyncio.Event | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.clock = clock or wall_clock
        self.stop = stop or asyncio.Event()
        self.ready = ready or asyncio.Event()
        self.limits = Limits.from_settings(settings)
        self.metrics = Metrics()
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self.root = Path(settings.state_dir)
        self.stores: dict[int, PartitionStore] = {}
        self.txn_producers: dict[int, AIOKafkaProducer] = {}
        self.partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        self._revoking = False
        self._generation = 0  # +1 per revoke: a turn that straddles one must not flush its stores
        self._idle = asyncio.Event()
        self._fatal: BaseException | None = None
        self._last_gauges = 0.0
        self._same_partitions: set[str] = set()
        # Apache Kafka answers ListOffsets(latest) with the true end; Tansu (the local broker) with
        # the last batch's base offset + 1. Not trusting it costs one fetch per restored partition.
        self._trust_list_offsets = False

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None
        return self._producer

    async def run(self) -> None:
        server = None
        if self.settings.metrics_port:
            server = await serve(self.metrics, self.settings.metrics_port)
        try:
            await self._start()
            loop_task = asyncio.create_task(self._loop(), name="stream-app-processor-loop")
            stop_task = asyncio.create_task(self.stop.wait())
            try:
                await asyncio.wait({loop_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                if not loop_task.done():
                    # The loop notices the stop at its next turn; give the turn in flight time to finish.
                    done, _ = await asyncio.wait({loop_task}, timeout=STOP_GRACE_S)
                    if not done:
                        log(logging.WARNING, "stop_cancelling_turn", grace_s=STOP_GRACE_S)
                        loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task  # re-raises a fatal error of the loop
            finally:
                for task in (loop_task, stop_task):
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
        finally:
            await self._shutdown()
            if server is not None:
                server.close()
                await server.wait_closed()

    async def _start(self) -> None:
        s = self.settings
        kw = s.kafka_client_kwargs()
        self._consumer = AIOKafkaConsumer(
            **kw,
            group_id=s.app_id,
            enable_auto_commit=False,  # DESIGN.md rule 3: we commit after the outputs are durable
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            isolation_level="read_committed" if self.exactly_once else "read_uncommitted",
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        )
        try:
            await self.consumer.start()
            counts = await topic_partitions(self.consumer)
        except KafkaConnectionError as exc:
            raise BrokerUnreachable(s.bootstrap_servers, str(exc)) from None
        self.partitions = check_topics(self.topics, set(counts), counts, s.bootstrap_servers)
        # An output of input partition p goes to partition p of an output topic with the same count:
        # the same partition murmur2(messageId) gives for a correctly keyed input (CONTRACT.md), it
        # stays with its input even when an upstream producer hashes differently, and it saves the
        # producer's pure-Python murmur2 (about 10 us a record). Other counts: hash the key.
        t = self.topics
        self._same_partitions = {
            topic for topic in (t.retry_commands, t.outcomes) if counts[topic] == self.partitions
        }
        if self.exactly_once:
            await self._probe_transactions()
        self._producer = AIOKafkaProducer(
            **kw,
            acks="all",
            linger_ms=2,
            enable_idempotence=False,
            # 256 KiB batches: a turn hands over thousands of records per partition at once, and
            # fewer, larger batches are fewer requests (well under the brokers' 1 MiB default).
            max_batch_size=256 * 1024,
            # Room for the largest output an accepted input can cause (its state, about the input's
            # size plus a few hundred bytes), and never below aiokafka's 1 MiB default.
            max_request_size=max(1024 * 1024, 2 * self.settings.max_request_bytes),
        )
        await self.producer.start()
        self._restorer = AIOKafkaConsumer(
            **kw,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed" if self.exactly_once else "read_uncommitted",
        )
        await self._restorer.start()
        self.consumer.subscribe(
            [self.topics.send_requests, self.topics.delivery_status], listener=_Listener(self)
        )
        log(
            logging.INFO,
            "processor_started",
            app_id=s.app_id,
            bootstrap=s.bootstrap_servers,
            partitions=self.partitions,
            guarantee=s.processing_guarantee,
            state_dir=str(self.root),
        )

    async def _probe_transactions(self) -> None:
        """Refuse exactly_once at start on a broker without transactions (never downgrade silently)."""
        probe = AIOKafkaProducer(
            **self.settings.kafka_client_kwargs(),
            # Unique per start: instances starting together must not fence each other's probe.
            transactional_id=f"{self.settings.app_id}-startup-probe-{uuid.uuid4().hex}",
        )
        try:
            await asyncio.wait_for(probe.start(), 30)
        except (KafkaError, TimeoutError) as exc:
            raise TransactionsUnsupported(
                self.settings.bootstrap_servers, f"{type(exc).__name__}: {exc}".strip()
            ) from None
        finally:
            await probe.stop()

    async def _shutdown(self) -> None:
        for p in list(self.stores):
            self._close_store(p)
        for p in list(self.txn_producers):
            await self._stop_txn_producer(p)
        for client in (self._consumer, self._producer, self._restorer):
            if client is not None:
                try:
                    await asyncio.wait_for(client.stop(), 10)
                except (KafkaError, TimeoutError) as exc:
                    log(logging.WARNING, "client_stop_failed", error=type(exc).__name__)
        log(logging.INFO, "processor_stopped", app_id=self.settings.app_id)

    # ------------------------------------------------------------------------------------ rebalance

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revoking = True
        self._generation += 1
        # The loop sets _idle only between turns (inside getmany or a backoff). Waiting for it is not a
        # lock: the loop never waits for the listener, so this cannot deadlock getmany().
        try:
            await asyncio.wait_for(self._idle.wait(), REVOKE_WAIT_S)
            clean = True
        except TimeoutError:
            clean = False
        if clean:
            # Every completed turn flushed its stores, so closing loses nothing.
            for p in list(self.stores):
                self._close_store(p)
        log(logging.INFO, "partitions_revoked", partitions=len(revoked), clean=clean)

    def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        owned, odd = co_partitioned(assigned, self.topics)
        if odd:
            self._fatal = NotCoPartitioned(sorted(odd))
        self._revoking = False
        self.metrics.assigned_partitions.set(len(owned))
        log(logging.INFO, "partitions_assigned", partitions=",".join(map(str, sorted(owned))))

    async def _reconcile(self) -> None:
        """Close stores of partitions no longer owned; open and restore newly owned ones."""
        owned, odd = co_partitioned(self.consumer.assignment(), self.topics)
        if odd:
            raise NotCoPartitioned(sorted(odd))
        for p in [p for p in self.stores if p not in owned]:
            self._close_store(p)
        for p in [p for p in list(self.txn_producers) if p not in owned]:
            await self._stop_txn_producer(p)
        missing = sorted(owned - self.stores.keys())
        if missing and not (self._revoking or self.stop.is_set()):
            if self.exactly_once:
                # Producers first: a transactional producer's start (InitProducerId) fences the
                # previous owner of p and ends its open transaction, so the restore's read_committed
                # reads and committed offsets are not held up by it until its transaction times out.
                for p in missing:
                    if p not in self.txn_producers:
                        await self._start_txn_producer(p)
            await self._restore(missing)
        if owned and not self.ready.is_set():
            self.ready.set()

    def _close_store(self, p: int) -> None:
        store = self.stores.pop(p, None)
        if store is not None:
            store.close()

    async def _start_txn_producer(self, p: int) -> None:
        # One transactional producer per input partition (the Faust model): aiokafka lacks KIP-447,
        # so fencing a zombie owner of partition p needs a transactional.id that belongs to p.
        producer = AIOKafkaProducer(
            **self.settings.kafka_client_kwargs(),
            transactional_id=f"{self.settings.app_id}-{self.topics.send_requests}-{p}",
            acks="all",
            linger_ms=2,
            max_request_size=max(1024 * 1024, 2 * self.settings.max_request_bytes),
        )
        await producer.start()
        self.txn_producers[p] = producer

    async def _stop_txn_producer(self, p: int) -> None:
        producer = self.txn_producers.pop(p, None)
        if producer is not None:
            with contextlib.suppress(KafkaError, TimeoutError):
                await asyncio.wait_for(producer.stop(), 10)

    # -------------------------------------------------------------------------------------- restore

    async def _restore(self, parts: list[int]) -> None:
        """Open the stores of ``parts`` and replay each changelog tail past its durable offset.

        All partitions are replayed together by one consumer (a partition with nothing to replay costs
        no fetch), with progress logged and exported. A record whose input offset is at or past the
        committed offset of that input is skipped: the input is read again and must meet the state it
        was decided against (DESIGN.md, checkpoint order).
        """
        assert self._restorer is not None
        rc = self._restorer
        changelog = self.topics.changelog
        stores: dict[int, PartitionStore] = {}
        try:
            for p in parts:
                stores[p] = PartitionStore.open(self.root, changelog, p)
            tps = {p: TopicPartition(changelog, p) for p in parts}
            ends = await rc.end_offsets(list(tps.values()))
            begins = await rc.beginning_offsets(list(tps.values()))
            todo: dict[int, _Replay] = {}
            for p, store in stores.items():
                tp, local = tps[p], store.changelog_offset
                start = max(begins[tp], 0 if local is None else local + 1)
                # ends[tp] == 0 is an empty partition. Otherwise fetch even when start >= ends[tp]:
                # some brokers (Tansu) answer ListOffsets(latest) with the last batch's base offset + 1,
                # so the true end is the high watermark of a fetch response (see _replay).
                if ends[tp] > begins[tp] and (start < ends[tp] or not self._trust_list_offsets):
                    todo[p] = _Replay(
                        start=start,
                        end=ends[tp],
                        req_limit=await self._committed(self.topics.send_requests, p),
                        st_limit=await self._committed(self.topics.delivery_status, p),
                    )
            if todo:
                await self._replay(rc, stores, tps, todo)
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        for p, store in stores.items():
            self.stores[p] = store
            self.metrics.pending_timers.labels(str(p)).set(store.pending_count())

    async def _committed(self, topic: str, p: int) -> int:
        offset = await self.consumer.committed(TopicPartition(topic, p))
        return 0 if offset is None else int(offset)

    async def _replay(
        self,
        rc: AIOKafkaConsumer,
        stores: dict[int, PartitionStore],
        tps: dict[int, TopicPartition],
        todo: dict[int, _Replay],
    ) -> None:
        rc.assign([tps[p] for p in todo])
        for p, r in todo.items():
            rc.seek(tps[p], r.start)
            self.metrics.restore_remaining.labels(str(p)).set(r.end - r.start)
        started = last_log = time.monotonic()
        total = 0
        try:
            while todo:
                batch = await rc.getmany(*(tps[p] for p in todo), timeout_ms=1000, max_records=20_000)
                for tp, records in batch.items():
                    p = tp.partition
                    r, store = todo[p], stores[p]
                    for rec in records:
                        src = _input_offsets(rec.headers)
                        if src is not None and (src[0] >= r.req_limit or src[1] >= r.st_limit):
                            r.skipped += 1
                            continue
                        try:
                            store.apply_changelog(rec.key, rec.value, rec.offset)
                            r.applied += 1
                        except Exception as exc:  # a foreign or corrupt record must not stop a restore
                            log(
                                logging.ERROR,
                                "changelog_record_unreadable",
                                partition=p,
                                offset=rec.offset,
                                error=f"{type(exc).__name__}: {exc}",
                            )
                    total += len(records)
                for p in list(todo):
                    r = todo[p]
                    hw = rc.highwater(tps[p])
                    if hw is None:
                        continue  # no fetch response yet: the end is not known
                    r.end = hw
                    r.position = position = await rc.position(tps[p])
                    self.metrics.restore_remaining.labels(str(p)).set(max(0, r.end - position))
                    if position >= r.end:
                        stores[p].flush(r.end - 1)
                        rc.pause(tps[p])
                        del todo[p]
                        self.metrics.restore_records.labels(str(p)).inc(r.applied)
                        self.metrics.restore_skipped.labels(str(p)).inc(r.skipped)
                        log(
                            logging.INFO,
                            "restored",
                            partition=p,
                            applied=r.applied,
                            skipped=r.skipped,
                            from_offset=r.start,
                            end=r.end,
                            seconds=round(time.monotonic() - started, 3),
                            pending_timers=stores[p].pending_count(),
                        )
                now = time.monotonic()
                if todo and now - last_log >= PROGRESS_EVERY_S:
                    last_log = now
                    log(
                        logging.INFO,
                        "restore_progress",
                        partitions=len(todo),
                        records=total,
                        remaining=sum(max(0, r.end - r.position) for r in todo.values()),
                        per_s=int(total / max(now - started, 1e-6)),
                    )
        finally:
            rc.unsubscribe()

    # ----------------------------------------------------------------------------------------- loop

    async def _loop(self) -> None:
        backoff = BACKOFF_MIN_S
        while not self.stop.is_set():
            if self._fatal is not None:
                raise self._fatal
            try:
                await self._turn()
                backoff = BACKOFF_MIN_S
            except (KafkaError, OSError, TimeoutError, StoreLocked) as exc:
                # StoreLocked: the previous owner of a partition (another instance sharing this state
                # dir, or our own turn cut short by a revoke) has not closed it yet; it will.
                self.metrics.errors.labels(type(exc).__name__).inc()
                log(
                    logging.WARNING,
                    "turn_failed_retrying",
                    error=f"{type(exc).__name__}: {exc}",
                    backoff_s=backoff,
                )
                self._idle.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                try:
                    await self._rewind()
                except (KafkaError, OSError, TimeoutError) as again:
                    log(logging.WARNING, "rewind_failed_retrying", error=type(again).__name__)
            finally:
                self.metrics.turned()

    async def _rewind(self) -> None:
        """Start over from what is durable: drop staged store writes, seek inputs to committed."""
        for p in list(self.stores):
            self._close_store(p)
        # A failed transaction may have left its producer fenced or in an abortable state: new ones
        # are started (InitProducerId fences any zombie) when the stores are restored.
        for p in list(self.txn_producers):
            await self._stop_txn_producer(p)
        if self._revoking:
            return
        for tp in self.consumer.assignment():
            offset = await self.consumer.committed(tp)
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)

    def _wait_ms(self, now: int) -> int:
        wait = MAX_WAIT_MS
        for store in self.stores.values():
            nxt = store.next_deadline()
            if nxt is not None:
                wait = min(wait, max(0, nxt - now))
        return wait

    async def _turn(self) -> None:
        consumer = self.consumer
        if self._revoking:
            self._idle.set()
            await consumer.getmany(timeout_ms=100)  # lets the rebalance finish; records are dropped
            return
        await self._reconcile()
        self._idle.set()
        try:
            batch = await consumer.getmany(timeout_ms=self._wait_ms(self.clock()), max_records=MAX_RECORDS)
        finally:
            self._idle.clear()
        if self._revoking or (self.stop.is_set() and not batch):
            return
        generation = self._generation
        started = time.monotonic()
        now = self.clock()
        work = _Work()
        for tp, records in batch.items():
            if tp.partition not in self.stores:
                # Assigned during this very getmany(), so not restored yet: the fetch position has
                # moved past these records, so move it back and read them again after the restore.
                consumer.seek(tp, records[0].offset)
                continue
            self._records(tp, records, now, work)
        fired = self._fire_timers(now, work)
        if not work.empty():
            processed = time.monotonic()
            await self._complete(work, generation)
            self.metrics.batch_seconds.observe(time.monotonic() - started)
            if LOGGER.isEnabledFor(logging.DEBUG):
                log(
                    logging.DEBUG,
                    "turn",
                    records=sum(len(r) for r in batch.values()),
                    timers=fired,
                    process_ms=round((processed - started) * 1000, 1),
                    complete_ms=round((time.monotonic() - processed) * 1000, 1),
                )
        if batch:
            for tp, records in batch.items():
                hw = consumer.highwater(tp)
                if hw is not None and records:
                    self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(0, hw - records[-1].offset - 1)
                    )
        if fired or time.monotonic() - self._last_gauges > 1.0:
            self._last_gauges = time.monotonic()
            for p, store in self.stores.items():
                self.metrics.pending_timers.labels(str(p)).set(store.pending_count())

    # ------------------------------------------------------------------------------------- records

    def _records(self, tp: TopicPartition, records: list[ConsumerRecord], now: int, work: _Work) -> None:
        p = tp.partition
        store = self.stores[p]
        is_request = tp.topic == self.topics.send_requests
        limits = self.limits
        self.metrics.records_in.labels(tp.topic).inc(len(records))
        max_bytes = self.settings.max_request_bytes
        for rec in records:
            try:
                if rec.value is None:
                    raise InvalidRecord("record: value is empty (a tombstone is not a request or status)")
                if len(rec.value) > max_bytes:
                    # Checked before decoding: its state or command could exceed what the broker
                    # takes, and a produce refused for size would stall the partition for good.
                    raise InvalidRecord(
                        f"record: {len(rec.value)} bytes, over the limit of {max_bytes} "
                        "(STREAM_APP_MAX_REQUEST_BYTES)"
                    )
                msg = decode_request(rec.value) if is_request else decode_status(rec.value)
            except InvalidRecord as exc:
                self._dead_letter(work, p, rec, exc.reason, "stream_app.contracts.InvalidRecord")
                continue
            key = msg.message_id.encode()
            if rec.key != key:
                got = "none" if rec.key is None else repr(rec.key[:60].decode("utf-8", "replace"))
                self._dead_letter(
                    work,
                    p,
                    rec,
                    f"key: must be the messageId {msg.message_id!r}, got {got}",
                    "stream_app.runtime.KeyMismatch",
                )
                continue
            event: Event
            if is_request:
                event = RequestEvent(msg) if isinstance(msg, SendRequest) else CancelEvent(msg)  # type: ignore[arg-type]
            else:
                event = StatusEvent(msg)  # type: ignore[arg-type]
            old = store.get(key)
            try:
                state = None if old is None else decode_state(old)
                decision = decide(state, event, now, limits)
            except Exception as exc:  # a core bug must cost one record, never the loop
                log(
                    logging.ERROR,
                    "decide_failed",
                    topic=tp.topic,
                    partition=p,
                    offset=rec.offset,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._dead_letter(
                    work,
                    p,
                    rec,
                    f"processor: {type(exc).__name__}: {exc}",
                    "stream_app.runtime.ProcessingError",
                )
                continue
            headers: Headers = [(n, v) for n, v in rec.headers if n == TRACEPARENT]
            self._apply(work, p, store, key, state, old, decision, headers, rec)
            change = work.changes[p].get(key)
            if change is not None:
                if is_request:
                    change.req_offset = max(change.req_offset, rec.offset)
                else:
                    change.status_offset = max(change.status_offset, rec.offset)
        work.offsets[p][tp] = records[-1].offset + 1

    def _apply(
        self,
        work: _Work,
        p: int,
        store: PartitionStore,
        key: bytes,
        state: FlowState | None,
        old: bytes | None,
        decision: Decision,
        headers: Headers,
        rec: ConsumerRecord | None,
    ) -> None:
        t = self.topics
        outs = work.outputs[p]
        same = self._same_partitions
        cmd_p = p if t.retry_commands in same else None
        out_p = p if t.outcomes in same else None
        for effect in decision.effects:
            if isinstance(effect, SendCommand):
                cmd = effect.command
                outs.append(_Out(t.retry_commands, key, encode_command(cmd), headers, cmd_p))
                if LOGGER.isEnabledFor(logging.DEBUG):
                    log(
                        logging.DEBUG,
                        "command",
                        message_id=cmd.message_id,
                        attempt=cmd.attempt,
                        channel=cmd.channel.value,
                        reason=cmd.reason.value,
                        destination=mask(cmd.destination),
                    )
            elif isinstance(effect, EmitOutcome):
                outs.append(_Out(t.outcomes, key, encode(effect.outcome), headers, out_p))
            elif isinstance(effect, EmitLateStatus):
                outs.append(_Out(t.outcomes, key, encode(effect.late), headers, out_p))
            elif isinstance(effect, DeadLetter):
                if rec is not None:
                    self._dead_letter(work, p, rec, effect.reason, "stream_app.fallback.DeadLetter")
                else:
                    log(
                        logging.ERROR,
                        "dead_letter_without_input",
                        key=key.decode("utf-8", "replace"),
                        reason=effect.reason,
                    )
            # SetTimer / ClearTimer mirror decision.state.deadline_ms, which the store indexes itself.
        new = decision.state
        if new is state and new is not None:
            return  # unchanged
        if new is None:
            if old is None:
                return
            store.delete(key)
            self._changed(work, p, key, None)
            return
        value = encode_state(new)
        if value == old:
            return
        self._changed(work, p, key, store.put(key, value, new.deadline_ms))

    @staticmethod
    def _changed(work: _Work, p: int, key: bytes, record: bytes | None) -> None:
        changes = work.changes[p]
        change = changes.get(key)
        if change is None:
            changes[key] = _Change(record)
        else:
            change.record = record

    def _dead_letter(self, work: _Work, p: int, rec: ConsumerRecord, reason: str, cls: str) -> None:
        headers: Headers = list(rec.headers)
        headers += [
            ("__error.reason", reason.encode()),
            ("__error.source.topic", rec.topic.encode()),
            ("__error.source.partition", str(rec.partition).encode()),
            ("__error.source.offset", str(rec.offset).encode()),
            ("__error.class", cls.encode()),
        ]
        work.outputs[p].append(_Out(self.topics.dead_letters, rec.key, rec.value, headers))
        self.metrics.dead_letters.labels(rec.topic).inc()
        log(
            logging.WARNING,
            "dead_letter",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            reason=reason,
            error_class=cls,
        )

    # -------------------------------------------------------------------------------------- timers

    def _fire_timers(self, now: int, work: _Work) -> int:
        budget = TIMER_BATCH
        fired = 0
        limits = self.limits
        for p, store in self.stores.items():
            if budget <= 0:
                break
            due = store.due(now, budget)
            budget -= len(due)
            for key, deadline in due:
                old = store.get(key)
                if old is None:
                    continue
                try:
                    state = decode_state(old)
                    decision = decide(state, TimerEvent(), now, limits)
                except Exception as exc:
                    # Disarm rather than refire a failing timer every turn; the error is loud.
                    log(
                        logging.ERROR,
                        "timer_failed",
                        partition=p,
                        key=key.decode("utf-8", "replace"),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    self._changed(work, p, key, store.put(key, old, None))
                    continue
                fired += 1
                self.metrics.timer_lateness.observe(max(0, now - deadline) / 1000)
                self._apply(work, p, store, key, state, old, decision, [], None)
        if fired:
            self.metrics.timers_fired.inc(fired)
        return fired

    # ------------------------------------------------------------------------------------ complete

    async def _complete(self, work: _Work, generation: int) -> None:
        if self.exactly_once:
            changelog_offsets = await self._complete_transactional(work)
        else:
            changelog_offsets = await self._complete_at_least_once(work)
        if generation != self._generation:
            # A revoke happened during this turn: the group may already have handed these partitions
            # to another instance. Drop the staged writes; a restore rebuilds them from the changelog.
            for p in list(self.stores):
                self._close_store(p)
            return
        for p in work.changes:
            store = self.stores.get(p)
            if store is not None:
                store.flush(changelog_offsets.get(p))

    def _changelog_outs(self, work: _Work, p: int) -> list[tuple[bytes, bytes | None, Headers]]:
        return [
            (
                key,
                ch.record,
                [(INPUT_HEADER, f"{ch.req_offset},{ch.status_offset}".encode())],
            )
            for key, ch in work.changes[p].items()
        ]

    async def _complete_at_least_once(self, work: _Work) -> dict[int, int]:
        producer = self.producer
        counts: dict[str, int] = defaultdict(int)
        outputs = [o for outs in work.outputs.values() for o in outs]
        for o in outputs:
            counts[o.topic] += 1
        sent = await _produce(producer, outputs)
        t_sent = time.monotonic()
        await _all_delivered([f for f, _ in sent])
        t_delivered = time.monotonic()
        # Only now the changelog: a state must never be durable before the effects it implies.
        changelog = self.topics.changelog
        cl_sent: list[tuple[int, asyncio.Future[Any], int]] = []
        for p in work.changes:
            records = [_Out(changelog, k, v, h, p) for k, v, h in self._changelog_outs(work, p)]
            counts[changelog] += len(records)
            cl_sent.extend((p, fut, n) for fut, n in await _produce(producer, records))
        metas = await _all_delivered([fut for _, fut, _ in cl_sent])
        offsets: dict[int, int] = {}
        for (p, _, n), meta in zip(cl_sent, metas, strict=True):
            offsets[p] = max(offsets.get(p, -1), meta.offset + n - 1)
        t_changelog = time.monotonic()
        commit = {tp: off for parts in work.offsets.values() for tp, off in parts.items()}
        if commit:
            await self.consumer.commit(commit)
        for topic, n in counts.items():
            self.metrics.records_out.labels(topic).inc(n)
        if LOGGER.isEnabledFor(logging.DEBUG):
            log(
                logging.DEBUG,
                "turn_completed",
                outputs=len(outputs),
                changelog=counts[changelog],
                deliver_ms=round((t_delivered - t_sent) * 1000, 1),
                changelog_ms=round((t_changelog - t_delivered) * 1000, 1),
                commit_ms=round((time.monotonic() - t_changelog) * 1000, 1),
            )
        return offsets

    async def _complete_transactional(self, work: _Work) -> dict[int, int]:
        changelog = self.topics.changelog
        group = self.settings.app_id

        async def one(p: int) -> tuple[int, int | None]:
            # Outputs, changelog and input offsets of partition p in one transaction of p's own
            # producer: all durable and committed together, or none (read_committed readers).
            producer = self.txn_producers[p]
            outputs = work.outputs.get(p, [])
            records = [_Out(changelog, k, v, h, p) for k, v, h in self._changelog_outs(work, p)]
            last: int | None = None
            async with producer.transaction():
                sent = await _produce(producer, outputs)
                cl_sent = await _produce(producer, records)
                offsets = work.offsets.get(p)
                if offsets:
                    await producer.send_offsets_to_transaction(offsets, group)
                await _all_delivered([f for f, _ in sent])
                metas = await _all_delivered([f for f, _ in cl_sent])
                for meta, (_, n) in zip(metas, cl_sent, strict=True):
                    last = max(last if last is not None else -1, meta.offset + n - 1)
            for o in outputs:
                self.metrics.records_out.labels(o.topic).inc()
            self.metrics.records_out.labels(changelog).inc(len(records))
            return p, last

        parts = set(work.outputs) | set(work.changes) | set(work.offsets)
        # Every partition's transaction settles (commits or aborts) before a failure is raised: the
        # retry that follows stops producers and rewinds, which must not meet a transaction mid-commit.
        results = await asyncio.gather(*(one(p) for p in sorted(parts)), return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return {p: last for p, last in cast(list[tuple[int, int | None]], results) if last is not None}


async def _produce(producer: AIOKafkaProducer, records: list[_Out]) -> list[tuple[asyncio.Future[Any], int]]:
    """Hand records to the producer; returns ``(delivery future, records it covers)`` pairs.

    Records with a known partition go in whole batches (``create_batch`` / ``send_batch``): one
    future per batch instead of one coroutine and one future per record, which is most of what a
    ``send()`` costs. Order within a partition is kept. The rest (dead letters, outputs to a topic
    with another partition count) go through ``send()`` and the key's murmur2.
    """
    sent: list[tuple[asyncio.Future[Any], int]] = []
    groups: dict[tuple[str, int], list[_Out]] = {}
    for o in records:
        if o.partition is None:
            sent.append((await producer.send(o.topic, o.value, key=o.key, headers=o.headers), 1))
        else:
            groups.setdefault((o.topic, o.partition), []).append(o)
    for (topic, partition), outs in groups.items():
        batch = producer.create_batch()
        for o in outs:
            if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                if batch.record_count():
                    n = batch.record_count()
                    sent.append((await producer.send_batch(batch, topic, partition=partition), n))
                    batch = producer.create_batch()
                if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
                    # Larger than a whole batch: the producer's own path sizes a batch for it.
                    fut = await producer.send(
                        topic, o.value, key=o.key, partition=partition, headers=o.headers
                    )
                    sent.append((fut, 1))
        if batch.record_count():
            n = batch.record_count()
            sent.append((await producer.send_batch(batch, topic, partition=partition), n))
    return sent


async def _all_delivered(futures: list[asyncio.Future[Any]]) -> list[Any]:
    """Await every delivery; raise the first failure only after all have settled (no orphan futures)."""
    if not futures:
        return []
    results = await asyncio.gather(*futures, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


async def run_processor(
    settings: Settings,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run the fallback processor until ``stop`` is set (CONTRACT.md, "Running it").

    ``clock`` returns epoch milliseconds (default: the wall clock); tests inject their own to run
    hours of fallback timeouts in milliseconds. ``ready`` is set once the instance owns partitions and
    has restored their stores. Raises a :class:`~stream_app.errors.StreamAppError` with a one-line
    message when it cannot start (broker unreachable, topics missing or not co-partitioned,
    exactly_once on a broker without transactions).
    """
    await Processor(settings, clock=clock, stop=stop, ready=ready).run()
