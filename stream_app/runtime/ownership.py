"""Which partitions this processor instance owns, and bringing a newly owned one up to date.

The half of the processor that rebalances drive (:class:`PartitionOwnership`, a base of
:class:`~.processor.Processor`): the revoke and assign callbacks, the reconcile at the start of each
turn (close what is no longer ours, restore what is new), the per-partition transactional producers
of exactly_once, and the rewind to what is durable after a failed turn. The loop, the turn and the
commit stay in :mod:`.processor`; the attributes below are set by ``Processor.__init__``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from stream_app.config import Settings, Topics
from stream_app.kafka import committed_offsets
from stream_app.kafka.clients import stop_client
from stream_app.runtime.clients import transactional_producer
from stream_app.runtime.control import ControlTable
from stream_app.runtime.errors import NotCoPartitioned
from stream_app.runtime.logs import log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.positions import Positions
from stream_app.runtime.restore import restore
from stream_app.runtime.task import PartitionTask, TaskConfig
from stream_app.runtime.topology import co_partitioned
from stream_app.store import PartitionStore

#: Bound on the revoke listener's wait for the loop to finish its turn: well under the rebalance
#: timeout, so a wedged turn can never stall the whole group's rebalance.
REVOKE_WAIT_S = 20.0


class PartitionOwnership:
    """The owned partitions' tasks and producers, and the rebalance callbacks that change them."""

    settings: Settings
    topics: Topics
    clock: Callable[[], int]
    stop: asyncio.Event
    ready: asyncio.Event
    metrics: Metrics
    exactly_once: bool
    root: Path
    #: One task per owned partition whose store is restored (its store, its step).
    tasks: dict[int, PartitionTask]
    task_config: TaskConfig
    txn_producers: dict[int, AIOKafkaProducer]
    control: ControlTable
    #: Expected next offset of every input partition whose store is restored (the skip guard).
    positions: Positions
    _consumer: AIOKafkaConsumer | None
    _restorer: AIOKafkaConsumer | None
    _revoking: bool
    _assigned: asyncio.Event  # set by an assignment, cleared by a revoke
    _generation: int  # +1 per revoke: a turn that straddles one must not flush its stores
    _idle: asyncio.Event
    _fatal: BaseException | None
    _trust_list_offsets: bool

    @property
    def stores(self) -> dict[int, PartitionStore]:
        return {p: task.store for p, task in self.tasks.items()}

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None
        return self._consumer

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        self._revoking = True
        self._assigned.clear()
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
        self._assigned.set()
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
                # A producer kept from before (a revoke gave p straight back) is started again too:
                # Kafka answers EndTxn before it writes the COMMIT markers, and until they are
                # written the changelog's last stable offset and the committed offsets (aiokafka's
                # OffsetFetch has no require_stable) still show the state before p's last
                # transaction. InitProducerId is answered CONCURRENT_TRANSACTIONS until then.
                for p in missing:
                    await self._stop_txn_producer(p)
                    await self._start_txn_producer(p)
            await self._restore(missing)
        if owned and not self.ready.is_set():
            self.ready.set()

    def _close_store(self, p: int) -> None:
        task = self.tasks.pop(p, None)
        if task is not None:
            task.store.close()
        self.control.partition_lost(p)
        for topic in (self.topics.send_requests, self.topics.delivery_status):
            self.positions.forget(TopicPartition(topic, p))

    async def _start_txn_producer(self, p: int) -> None:
        producer = transactional_producer(self.settings, p)
        try:
            await producer.start()
        except Exception:
            # Its connections and sender would stay open: one client lost per retry of the turn
            # for as long as the brokers cannot start it (an outage). Not on a cancel: that is a
            # stop, and the process is ending.
            await stop_client(producer)
            raise
        self.txn_producers[p] = producer

    async def _stop_txn_producer(self, p: int) -> None:
        producer = self.txn_producers.pop(p, None)
        if producer is not None:
            await stop_client(producer)

    async def _restore(self, parts: list[int]) -> None:
        """Open and restore the stores of ``parts``, then read their inputs from the committed offsets.

        One committed-offset answer serves both the restore's skip rule and the input positions, so
        the two always agree; an offset the coordinator does not answer stops here with
        :class:`CommittedOffsetUnknown` (the turn is retried), never as "nothing committed".

        A rebalance during the restore (it can outlast the revoke listener's wait) may have handed
        a partition to another instance that processed and committed its inputs, and handed it
        back: the answer is then stale. Nothing restored is used then (the loop drops every store
        after such a turn and restores again, :meth:`Processor._turn`), and a store whose replay
        skipped records against a stale answer is reset first (:meth:`_drop_overtaken`).
        """
        assert self._restorer is not None
        consumer = self.consumer
        t = self.topics
        inputs = [TopicPartition(topic, p) for p in parts for topic in (t.send_requests, t.delivery_status)]
        generation = self._generation
        committed = await committed_offsets(consumer, inputs, group=self.settings.app_id)
        fresh = [tp for tp, off in committed.items() if off is None]
        beginnings = await consumer.beginning_offsets(fresh) if fresh else {}
        skipped: dict[int, int] = {}
        stores = await restore(
            self._restorer,
            committed,
            root=self.root,
            topics=self.topics,
            parts=parts,
            metrics=self.metrics,
            trust_list_offsets=self._trust_list_offsets,
            skipped=skipped,
        )
        if generation != self._generation:
            await self._drop_overtaken(stores, committed, skipped)
            return
        now = self.clock()
        for p, store in stores.items():
            task = self.tasks[p] = PartitionTask(p, store, self.task_config, self.metrics)
            task.controls = self.control.view
            self.control.partition_gained(p, now)
            self.metrics.pending_timers.labels(str(p)).set(store.pending_count())
        for tp in inputs:
            off = committed[tp]
            start = int(beginnings[tp]) if off is None else off
            # Our own seek, not aiokafka's position: records it fetched for this partition before
            # now are dropped with the old position, and the skip guard starts from this offset.
            consumer.seek(tp, start)
            self.positions.start(tp, start)

    async def _drop_overtaken(
        self,
        stores: dict[int, PartitionStore],
        committed: dict[TopicPartition, int | None],
        skipped: dict[int, int],
    ) -> None:
        """Close the stores of a restore a rebalance overtook; reset those it made wrong first.

        A store whose replay skipped records as uncommitted has its durable offset past them: when
        the committed offsets have moved since (another owner processed those inputs), those
        records are its committed changes, which only a replay from the start reads again.
        """
        try:
            now = await committed_offsets(self.consumer, committed, group=self.settings.app_id)
        except BaseException:
            for store in stores.values():
                store.close()
            raise
        moved = {tp.partition for tp, off in now.items() if off != committed[tp]}
        reset = sorted(p for p in moved if skipped.get(p))
        for p, store in stores.items():
            if p in reset:
                store.reset()
            store.close()
        log(
            logging.WARNING,
            "restore_overtaken_by_rebalance",
            partitions=",".join(map(str, sorted(moved))) or "none",
            reset=",".join(map(str, reset)) or "none",
        )

    async def _rewind(self) -> None:
        """Start over from what is durable: drop staged store writes and every input position.

        The next turn restores every owned partition and seeks its inputs to the committed offsets
        (:meth:`_restore`), so nothing staged by the failed turn survives it.
        """
        for p in list(self.stores):
            self._close_store(p)
        self.positions.clear()
        # A failed transaction may have left its producer fenced or in an abortable state: new ones
        # are started (InitProducerId fences any zombie) when the stores are restored.
        for p in list(self.txn_producers):
            await self._stop_txn_producer(p)
