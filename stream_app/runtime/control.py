"""The channel-control table of one processor instance (CONTRACT.md v1.1), and its FALLBACK sweeps.

``channel-control`` is a compacted table, not a stream of work: every instance reads ALL of it,
every partition, with a consumer of its own (manual assignment, no group, nothing committed):

1. at start, before the group consumer subscribes (so before any partition is restored, any timer
   fires or any record is processed), :meth:`ControlTable.start` reads it from the beginning up to
   the end offsets it found, building the :class:`~stream_app.fallback.ControlView`;
2. then every loop turn, before its records and timers, :meth:`ControlTable.poll` applies what has
   arrived since (no wait: the consumer fetches in the background), and the tasks decide with the
   new view. A restart reads the table again, so the control state survives any restart and every
   instance holds the same one.

``inFlight: FALLBACK`` must also end attempts already issued on the closed channel, which live in
the partitions' stores, not in any input. A :class:`Sweep` walks each owned partition's store in key
order (:meth:`~stream_app.store.PartitionStore.keys_after`) and steps a ControlEvent through the
partition's task for every flow whose open attempt is on that channel. Cost: one read and one state
decode per flow of the partition, once per FALLBACK record (and once per partition an instance
gains while such a closure is active, so an attempt issued by an instance that had not yet read the
record is caught too); at most :data:`SWEEP_BATCH` flows per turn across all sweeps, so a sweep of
a million flows takes a few hundred turns (seconds to minutes) and never stalls records, timers,
commits or heartbeats. A flow whose attempt the core ends is changed like any other (changelog,
outputs, checkpoint).

The partitions of ``channel-control`` are those it has when the instance starts; partitions added
to the topic later are read after the next restart (the table is a few records: keep its count).

A record that is not a valid ChannelControl (or sits under a key other than its own) changes nothing.
It is dead-lettered by the one instance that owns the same partition number of ``send-requests``
when it reads it live, so a fleet writes one dead letter, not one per instance; one read during
the start-up replay is only logged (it was dead-lettered when it first arrived, unless no processor
was running then). The records of a fetch are all applied before any dead letter is produced, and
a dead letter the broker refuses is tried again on the next turns (:data:`DEAD_LETTER_TRIES`), so
a broker away for a moment never costs the view a record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import (
    ChannelControl,
    ChannelState,
    InFlight,
    InvalidRecord,
    decode_control,
    from_ms,
    to_ms,
)
from stream_app.contracts.headers import dead_letter_headers
from stream_app.fallback import NO_CONTROLS, Closure, ControlEvent, ControlView, Phase, decode_state
from stream_app.fallback.errors import StateDecodeError
from stream_app.kafka.clients import stop_client
from stream_app.kafka.metadata import topic_partitions
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.clients import restore_consumer
from stream_app.runtime.logs import log
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.task import PartitionTask

#: Flows examined per loop turn by all FALLBACK sweeps together (a read and a decode each, about
#: 10 us): a few tens of milliseconds a turn at most.
SWEEP_BATCH = 2_000
#: A control record is a few hundred bytes; anything much larger is not one.
MAX_CONTROL_BYTES = 16 * 1024
#: Records per fetch while following the table.
_MAX_RECORDS = 1000
#: Polls that try a bad record's dead letter before it is given up (logged): enough to ride out a
#: broker away for a while, and a dead letter the broker can never take (too large) is not retried
#: for ever.
DEAD_LETTER_TRIES = 5


@dataclass
class _DeadLetter:
    """A bad control record owed to ``dead-letters``, and how many polls have tried it."""

    rec: ConsumerRecord
    reason: str
    tries: int = 0


@dataclass
class Sweep:
    """One FALLBACK closure being applied to the flows of the owned partitions."""

    key: str
    record: ChannelControl
    #: partition -> the last key examined (None: not started); a finished partition is removed.
    cursors: dict[int, bytes | None] = field(default_factory=dict)


class ControlTable:
    """The instance's copy of ``channel-control`` and the sweeps it owes the owned partitions."""

    def __init__(self, settings: Settings, metrics: Metrics, *, exactly_once: bool) -> None:
        self.settings = settings
        self.topic = settings.topics.channel_control
        self.metrics = metrics
        self.exactly_once = exactly_once
        self.view: ControlView = NO_CONTROLS
        self.sweeps: dict[str, Sweep] = {}
        self._consumer: AIOKafkaConsumer | None = None
        #: Dead letters not yet produced, oldest first (see :meth:`poll`).
        self._dead_letters: list[_DeadLetter] = []

    # --------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Read the whole table up to its current end (call before any partition is processed)."""
        consumer = restore_consumer(self.settings, self.exactly_once)
        self._consumer = consumer
        await consumer.start()
        counts = await topic_partitions(consumer)
        tps = [TopicPartition(self.topic, p) for p in range(counts.get(self.topic, 0))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
        read = 0
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=_MAX_RECORDS)
            for records in batch.values():
                for rec in records:
                    read += 1
                    reason = self.apply(rec, live=False)
                    if reason is not None:
                        log(
                            logging.WARNING,
                            "channel_control_invalid_on_restore",
                            partition=rec.partition,
                            offset=rec.offset,
                            reason=reason,
                        )
            for tp in list(remaining):
                # The fetch position, not the last offset + 1: it steps over compacted-away offsets.
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        self.metrics.channels_closed.set(len(self.view.closures))
        log(
            logging.INFO,
            "channel_control_restored",
            records=read,
            closed=",".join(sorted(self.view.closures)) or "none",
        )

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_client(self._consumer)
            self._consumer = None

    # ------------------------------------------------------------------------------------ follow

    async def poll(
        self,
        now: int,
        owned: set[int],
        partitions: int,
        producer: AIOKafkaProducer,
        dead_letters: str,
    ) -> bool:
        """Apply the records that arrived since the last call; True when the view changed.

        A CLOSED record with ``inFlight`` FALLBACK starts a sweep of every owned partition. A bad
        record is dead-lettered here when this instance owns partition ``record.partition % N`` of
        the inputs (see the module docstring).
        """
        consumer = self._consumer
        if consumer is None:
            return False  # not started (a processor built around test fakes): nothing to follow
        batch = await consumer.getmany(timeout_ms=0, max_records=_MAX_RECORDS)
        changed = False
        # Every record of the fetch is applied before anything is awaited: the consumer has moved
        # past them all, so one left unapplied (a dead letter's produce failing first) would be
        # missed by this instance until it restarts, while the rest of the fleet honours it.
        for records in batch.values():
            for rec in records:
                changed = True
                reason = self.apply(rec, live=True, now=now, owned=owned)
                if reason is None:
                    continue
                log(
                    logging.WARNING,
                    "dead_letter",
                    topic=rec.topic,
                    partition=rec.partition,
                    offset=rec.offset,
                    reason=reason,
                    error_class="stream_app.contracts.InvalidRecord",
                )
                if partitions and rec.partition % partitions in owned:
                    self._dead_letters.append(_DeadLetter(rec, reason))
        if changed:
            self.metrics.channels_closed.set(len(self.view.closures))
        await self._send_dead_letters(producer, dead_letters)
        return changed

    async def _send_dead_letters(self, producer: AIOKafkaProducer, topic: str) -> None:
        """Produce the dead letters owed, in order; one that fails waits for the next poll.

        The record itself is not read again (the consumer is past it), so a failed produce is kept
        here rather than raised: a failed turn would rewind the partitions, not this table.
        """
        while self._dead_letters:
            dead = self._dead_letters[0]
            rec = dead.rec
            headers = dead_letter_headers(
                dead.reason, rec.topic, rec.partition, rec.offset, "stream_app.contracts.InvalidRecord"
            )
            try:
                await producer.send_and_wait(topic, rec.value, key=rec.key, headers=headers)
            except (KafkaError, OSError, TimeoutError) as exc:
                dead.tries += 1
                given_up = dead.tries >= DEAD_LETTER_TRIES
                if given_up:
                    self._dead_letters.pop(0)
                log(
                    logging.ERROR if given_up else logging.WARNING,
                    "channel_control_dead_letter_failed",
                    partition=rec.partition,
                    offset=rec.offset,
                    tries=dead.tries,
                    action="given up" if given_up else "retrying next turn",
                    error=f"{type(exc).__name__}: {exc}",
                )
                if not given_up:
                    return
                continue
            self._dead_letters.pop(0)
            self.metrics.dead_letters.labels(rec.topic).inc()

    def apply(
        self, rec: ConsumerRecord, *, live: bool, now: int = 0, owned: set[int] | None = None
    ) -> str | None:
        """Apply one record to the view; the reason when it is not a valid control record.

        ``live``: read while following the table (not in the start-up read), so a FALLBACK closure
        starts a sweep of the ``owned`` partitions. ``stream-app explain`` replays a message's
        control records through this very method (and :meth:`run_sweeps`), as a live instance.
        """
        if rec.key is None:
            self.metrics.control_records.labels("invalid").inc()
            return "key: required, CHANNEL or tenant/CHANNEL"
        try:
            key = rec.key.decode()
        except UnicodeDecodeError:
            self.metrics.control_records.labels("invalid").inc()
            return "key: must be UTF-8 text, CHANNEL or tenant/CHANNEL"
        record: ChannelControl | None = None
        if rec.value is not None:
            if len(rec.value) > MAX_CONTROL_BYTES:
                self.metrics.control_records.labels("invalid").inc()
                return f"record: {len(rec.value)} bytes, over the {MAX_CONTROL_BYTES} of a control record"
            try:
                record = decode_control(rec.value, rec.key)
            except InvalidRecord as exc:
                self.metrics.control_records.labels("invalid").inc()
                return exc.reason
        self.view = self.view.apply(key, record)
        kind = "tombstone" if record is None else record.state.value.lower()
        self.metrics.control_records.labels(kind).inc()
        log(
            logging.INFO,
            "channel_control",
            key=key,
            state=kind.upper(),
            until=None if record is None or record.until is None else record.until.isoformat(),
            in_flight=None if record is None else record.in_flight.value,
            reason=None if record is None else record.reason,
            live=live,
        )
        if live:
            self.sweeps.pop(key, None)  # a newer record for the key replaces any sweep of the older one
            if record is not None and _sweeping(record, now) and owned:
                self.sweeps[key] = Sweep(key, record, dict.fromkeys(owned))
        return None

    # ------------------------------------------------------------------------------------ sweeps

    def partition_gained(self, p: int, now: int) -> None:
        """Partition p was restored here: sweep it for every FALLBACK closure still in force."""
        for key, closure in self.view.closures.items():
            if closure.in_flight is not InFlight.FALLBACK or not closure.active(now):
                continue
            sweep = self.sweeps.get(key)
            if sweep is None:
                sweep = self.sweeps[key] = Sweep(key, _record_of(closure))
            sweep.cursors[p] = None

    def partition_lost(self, p: int) -> None:
        for sweep in self.sweeps.values():
            sweep.cursors.pop(p, None)

    def run_sweeps(self, tasks: dict[int, PartitionTask], now: int, ck: Checkpoint) -> int:
        """Advance the sweeps by at most :data:`SWEEP_BATCH` flows; returns the flows changed."""
        budget, changed = SWEEP_BATCH, 0
        for key in list(self.sweeps):
            sweep = self.sweeps[key]
            if not _sweeping(sweep.record, now):
                del self.sweeps[key]  # reopened by its until meanwhile: nothing left to cut short
                continue
            event = ControlEvent(key, sweep.record)
            for p in list(sweep.cursors):
                task = tasks.get(p)
                if task is None:
                    del sweep.cursors[p]
                    continue
                if budget <= 0:
                    return changed
                keys, more = task.store.keys_after(sweep.cursors[p], budget)
                budget -= max(len(keys), 1)
                self.metrics.sweep_flows.inc(len(keys))
                for flow_key in keys:
                    if _affected(task, flow_key, sweep.record) and task.step(
                        flow_key, event, now, ck, [], None
                    ):
                        changed += 1
                if keys:
                    sweep.cursors[p] = keys[-1]
                if not more:
                    del sweep.cursors[p]
            if not sweep.cursors:
                del self.sweeps[key]
                log(logging.INFO, "channel_control_sweep_done", key=key)
        return changed


def _sweeping(record: ChannelControl, now: int) -> bool:
    """A record that cuts open attempts short: CLOSED, FALLBACK, and its until not passed."""
    return (
        record.state is ChannelState.CLOSED
        and record.in_flight is InFlight.FALLBACK
        and (record.until is None or now < to_ms(record.until))
    )


def _record_of(closure: Closure) -> ChannelControl:
    """The record a view entry came from (as the ControlEvent of a sweep started on assignment)."""
    return ChannelControl(
        channel=closure.channel,
        tenant=closure.tenant,
        state=ChannelState.CLOSED,
        reason=closure.reason,
        until=None if closure.until_ms is None else from_ms(closure.until_ms),
        in_flight=closure.in_flight,
        at=None if closure.at_ms is None else from_ms(closure.at_ms),
    )


def _affected(task: PartitionTask, key: bytes, record: ChannelControl) -> bool:
    """Whether the flow under ``key`` has an open attempt on the record's channel (and tenant).

    A cheap look before the full step: most flows of a partition are on other channels or ended.
    """
    value = task.store.get(key)
    if value is None:
        return False
    try:
        state = decode_state(value)
    except StateDecodeError:
        return False  # the step would fail the same way; a timer of this flow reports it
    if state.phase is not Phase.RUNNING or not state.attempts or state.attempts[-1].ended_by is not None:
        return False
    if record.tenant is not None and record.tenant != state.tenant:
        return False
    return state.steps[len(state.attempts) - 1].channel == record.channel
