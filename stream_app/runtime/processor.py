"""The fallback processor: lifecycle, rebalances and the loop around the partition tasks.

One asyncio task runs every turn of the loop (DESIGN.md rules 3-6):

1. reconcile: open and restore the store of every newly owned partition, close the others;
2. ``getmany()`` a batch (waiting no longer than the next due timer), admitting only records that
   follow what was processed (:mod:`.positions`: an input is never skipped);
3. each partition's :class:`~.task.PartitionTask` steps its records and then its due timers (at
   most :data:`TIMER_BATCH` per turn) into one :class:`~.checkpoint.Checkpoint`;
4. the checkpoint commits: outputs and their delivery, then the changelog, then the input offsets
   (or one transaction per partition), then each store's flush. A crash at any point can therefore
   only repeat an effect (same commandId / same outcome), never lose one.

Channel control (v1.1): before the group consumer subscribes, :class:`~.control.ControlTable`
reads the whole ``channel-control`` table; each turn then applies what arrived since, before the
batch's records and timers, and advances the ``inFlight: FALLBACK`` sweeps (:mod:`.control`).

The rest of the runtime, one concern a module: ``ownership`` (rebalances: which partitions are
ours, and the restore of a new one), ``task`` (one partition's step), ``checkpoint`` (what
a turn stages and its commit in both guarantees), ``produce`` (batches to the producer),
``positions`` (the skip guard), ``restore`` (step 1's replay), ``topology`` (co-partitioning),
``metrics`` and ``logs``. The changelog record and the restore's skip rule live with the store
(:mod:`stream_app.store.changelog`).

Any Kafka error inside a turn (broker gone, request timeout, commit refused by a rebalance) is logged
and the turn is retried after a backoff from a clean slate: stores are closed without their staged
writes, and the next turn restores them and reads the inputs from the committed offsets. The loop
never dies on a broker outage or on input.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import TopicPartition

from stream_app import compiled
from stream_app.config import Settings
from stream_app.errors import BrokerUnreachable
from stream_app.kafka import CommittedOffsetUnknown, install_fixes
from stream_app.kafka.clients import stop_client
from stream_app.kafka.connect import describe
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.outage import outage_filter
from stream_app.metrics_http import serving
from stream_app.runtime.checkpoint import AtLeastOnce, Checkpoint, Committer, Transactional
from stream_app.runtime.clients import (
    group_consumer,
    output_producer,
    probe_transactions,
    restore_consumer,
)
from stream_app.runtime.control import ControlTable
from stream_app.runtime.inputs import admit, put_back
from stream_app.runtime.logs import LOGGER, log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.ownership import PartitionOwnership
from stream_app.runtime.positions import Positions
from stream_app.runtime.task import PartitionTask, TaskConfig, limits_of
from stream_app.runtime.topology import check_topics
from stream_app.store import StoreLocked

Clock = Callable[[], int]


#: Records per ``getmany()``: large enough that the per-batch round trips (deliver, changelog,
#: commit) are amortised over thousands of records, small enough that a turn stays well under a second.
MAX_RECORDS = 5000
#: Timers fired per turn (DESIGN.md: about 10k) so records, commits and heartbeats are never starved.
TIMER_BATCH = 10_000
#: Longest ``getmany()`` wait when no timer is due sooner: bounds how late a stop or a new clock
#: reading is noticed.
MAX_WAIT_MS = 200
#: Backoff after a failed turn: doubles from 100 ms up to 5 s while the broker is away.
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.1, 5.0
#: Grace for the last turn and the final flush when stopping, before the loop task is cancelled.
STOP_GRACE_S = 15.0
#: Grace for a cancelled turn to end. Cancelled inside a transaction, a turn aborts it, and
#: aiokafka's abort first waits for the transaction's records still in flight: for ever when their
#: partition keeps refusing them (NOT_ENOUGH_REPLICAS, leader gone). After this the turn is
#: cancelled again, which leaves the transaction open: the coordinator aborts it after
#: ``transaction.timeout.ms``, or at once when the partition's next owner starts its producer.
ABORT_GRACE_S = 5.0


def wall_clock() -> int:
    """Epoch milliseconds of the wall clock (the default clock)."""
    return time.time_ns() // 1_000_000


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, processor: Processor) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._processor._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._processor._on_assigned(assigned)


class Processor(PartitionOwnership):
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
        self.limits = limits_of(settings)
        self.metrics = Metrics()
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self.root = Path(settings.state_dir)
        #: One task per owned partition whose store is restored (its store, its step).
        self.tasks: dict[int, PartitionTask] = {}
        self.task_config = TaskConfig(settings.topics, self.limits, settings.max_request_bytes)
        self.txn_producers: dict[int, AIOKafkaProducer] = {}
        self.partitions = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._restorer: AIOKafkaConsumer | None = None
        #: The channel-control table (v1.1), read whole before any partition is processed.
        self.control = ControlTable(settings, self.metrics, exactly_once=self.exactly_once)
        self._revoking = False
        self._assigned = asyncio.Event()  # set by an assignment, cleared by a revoke
        #: Expected next offset of every input partition whose store is restored (the skip guard).
        self.positions = Positions()
        self._generation = 0  # +1 per revoke: a turn that straddles one must not flush its stores
        self._idle = asyncio.Event()
        self._fatal: BaseException | None = None
        self._last_gauges = 0.0
        # Apache Kafka answers ListOffsets(latest) with the true end; Tansu (the local broker) with
        # the last batch's base offset + 1. Not trusting it costs one fetch per restored partition.
        self._trust_list_offsets = False
        install_fixes()

    # ------------------------------------------------------------------------------------ lifecycle

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None
        return self._producer

    async def run(self) -> None:
        async with serving(self.metrics.registry, self.settings.metrics_port, healthy=self.metrics.healthy):
            await self._run()

    async def _run(self) -> None:
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
                        while not (await asyncio.wait({loop_task}, timeout=ABORT_GRACE_S))[0]:
                            log(logging.WARNING, "stop_abandoning_transactions", grace_s=ABORT_GRACE_S)
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

    async def _start(self) -> None:
        s = self.settings
        self._consumer = group_consumer(s, self.exactly_once)
        aiokafka_log = logging.getLogger("aiokafka")
        level = aiokafka_log.level
        aiokafka_log.setLevel(logging.CRITICAL)  # our one line says it; not aiokafka's "Unable connect" too
        try:
            await self.consumer.start()
            counts = await topic_partitions(self.consumer)
        except KafkaConnectionError as exc:
            raise BrokerUnreachable(s.bootstrap_servers, describe(exc)) from None
        finally:
            aiokafka_log.setLevel(level)
        self.partitions = check_topics(self.topics, counts, s.bootstrap_servers)
        # An output of input partition p goes to partition p of an output topic with the same count:
        # the same partition murmur2(messageId) gives for a correctly keyed input (CONTRACT.md), it
        # stays with its input even when an upstream producer hashes differently, and it saves the
        # producer's pure-Python murmur2 (about 10 us a record). Other counts: hash the key.
        t = self.topics
        same = frozenset(
            topic for topic in (t.retry_commands, t.outcomes) if counts[topic] == self.partitions
        )
        self.task_config = TaskConfig(self.topics, self.limits, s.max_request_bytes, same)
        if self.exactly_once:
            await probe_transactions(s)
        self._producer = output_producer(s)
        await self.producer.start()
        self._restorer = restore_consumer(s, self.exactly_once)
        await self._restorer.start()
        # The control table first: no partition is restored, no timer fires and no record is
        # decided before the channels closed at start are known.
        await self.control.start()
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
            hot_path=compiled.mode(),  # "compiled" after scripts/compile.sh, else "pure"
        )

    async def _shutdown(self) -> None:
        for p in list(self.stores):
            self._close_store(p)
        # Together: a producer whose transaction was abandoned above takes its whole stop timeout.
        await asyncio.gather(*(self._stop_txn_producer(p) for p in list(self.txn_producers)))
        await self.control.stop()
        for client in (self._consumer, self._producer, self._restorer):
            if client is not None:
                await stop_client(client)
        if self._producer is not None:  # it had started: a refusal at start is its one error line
            log(logging.INFO, "processor_stopped", app_id=self.settings.app_id)

    # ----------------------------------------------------------------------------------------- loop

    async def _loop(self) -> None:
        backoff = BACKOFF_MIN_S
        outage = outage_filter()
        while not self.stop.is_set():
            outage.tick()
            if self._fatal is not None:
                raise self._fatal
            try:
                await self._turn()
                backoff = BACKOFF_MIN_S
            except (KafkaError, OSError, TimeoutError, StoreLocked, CommittedOffsetUnknown) as exc:
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

    def _wait_ms(self, now: int) -> int:
        if self.control.sweeps:
            return 0  # a FALLBACK sweep has work for this very turn
        wait = MAX_WAIT_MS
        for store in self.stores.values():
            nxt = store.next_deadline()
            if nxt is not None:
                wait = min(wait, max(0, nxt - now))
        return wait

    async def _turn(self) -> None:
        consumer = self.consumer
        if self._revoking:
            # Wait for the new assignment without fetching: a fetch now could return the first
            # records of a partition assigned meanwhile, which this turn could not process.
            self._idle.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._assigned.wait(), MAX_WAIT_MS / 1000)
            return
        self._idle.clear()  # busy until getmany(): a revoke now waits for the restore to finish
        before = self._generation
        await self._reconcile()
        if before != self._generation:
            # A revoke came during the restore. When the restore outlasted its wait
            # (REVOKE_WAIT_S), the listener left the stores open: a partition kept may have been
            # another instance's meanwhile, whose committed changes this store lacks. Every store is
            # closed (each completed turn flushed it, so nothing is lost) and the next turn restores
            # all from the changelog and seeks to the committed offsets.
            for p in list(self.tasks):
                self._close_store(p)
            return
        generation = self._generation
        self._idle.set()
        try:
            batch = await consumer.getmany(timeout_ms=self._wait_ms(self.clock()), max_records=MAX_RECORDS)
        finally:
            self._idle.clear()
        if self._revoking or generation != self._generation:
            # A rebalance began (or ended) inside getmany(): nothing of this batch is processed, so
            # none of it may stay consumed. Partitions still ours are read again from its first
            # records; revoked ones restart from their committed offsets wherever they go.
            put_back(consumer, batch)
            return
        if self.stop.is_set() and not batch:
            return
        started = time.monotonic()
        now = self.clock()
        if await self.control.poll(
            now, set(self.tasks), self.partitions, self.producer, self.topics.dead_letters
        ):
            for task in self.tasks.values():
                task.controls = self.control.view
        ck = Checkpoint(generation)
        taken: list[TopicPartition] = []
        for tp, records in batch.items():
            admitted = admit(consumer, self.positions, self.metrics, tp, records)
            if admitted:
                self.tasks[tp.partition].on_records(tp, admitted, now, ck)
                taken.append(tp)
        for tp in taken:
            # The fetch position, not last offset + 1: it already steps over transaction markers
            # inside the fetch, so only a hole between fetches is checked by the next _admit().
            self.positions.advance(tp, await consumer.position(tp))
        fired = self._fire_timers(now, ck)
        if self.control.sweeps:
            self.control.run_sweeps(self.tasks, now, ck)
        if not ck.empty():
            processed = time.monotonic()
            await self._complete(ck)
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

    # ------------------------------------------------------------------------------------ complete

    def _fire_timers(self, now: int, ck: Checkpoint) -> int:
        """Fire due timers across the owned partitions, at most TIMER_BATCH a turn."""
        budget, fired = TIMER_BATCH, 0
        for task in self.tasks.values():
            if budget <= 0:
                break
            n = task.fire_due(now, budget, ck)
            fired += n
            budget -= n
        if fired:
            self.metrics.timers_fired.inc(fired)
        return fired

    def _committer(self) -> Committer:
        t = self.topics
        if self.exactly_once:
            return Transactional(self.txn_producers, t.changelog, self.settings.app_id, self.metrics)
        return AtLeastOnce(self.producer, self.consumer, t.changelog, self.metrics)

    async def _complete(self, ck: Checkpoint) -> None:
        if not await ck.commit(self._committer(), self.stores, lambda: self._generation):
            # A revoke happened during this turn: the group may already have handed these partitions
            # to another instance. Drop the staged writes; a restore rebuilds them from the changelog.
            for p in list(self.tasks):
                self._close_store(p)

    async def _complete_transactional(self, ck: Checkpoint) -> dict[int, int]:
        """One checkpoint's transactions alone (tests inject failures into them)."""
        return await Transactional(
            self.txn_producers, self.topics.changelog, self.settings.app_id, self.metrics
        ).commit(ck)


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
