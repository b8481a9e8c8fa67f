"""A test clock and driver: one message through the processor's own partition step, every effect seen.

The driver plays the processor's turns for one partition, with a clock that moves only when a test
says so, and runs them through the runtime's own objects, not a copy of its step:

* an input (request, cancel, status) becomes the Kafka record a producer would write (its contract
  bytes, keyed by its messageId, with a ``traceparent``), stepped by
  :meth:`PartitionTask.on_records <stream_app.runtime.task.PartitionTask.on_records>`: decode, get the
  stored state, decode it, ``decide()``, stage the outputs and the new state;
* a timer fires from the store's due index, by :meth:`~stream_app.runtime.task.PartitionTask.fire_due`
  at the clock's ``now``, as the loop fires it;
* a channel-control record goes through the processor's
  :class:`~stream_app.runtime.control.ControlTable` as a live instance owning the partition: into
  the view the task decides with, then the turn's due timers, then the FALLBACK sweep.

The tests assert on the core's effect objects; the task hands each step's ``Decision`` back, and a
subclass of the task (:class:`ObservedTask`) keeps them: the runtime pays nothing for it, and
``PartitionTask`` allows the subclass when mypyc compiles it. After every turn the driver also
checks what the runtime would publish, so a bug of the step fails the core's tests too:

* the staged outputs are, in order, byte for byte ``encode()`` of the effects (the contract's generic
  encoder, against the task's fast ones), keyed by the messageId, on the right topic and partition,
  with the input's ``traceparent``; a dead letter carries the input untouched with its reason, and
  nothing is staged that no effect asked for (a core exception dead-letters the input: the
  assertion names it);
* the changelog record staged for the key is the store's record, and holds the new state and its
  deadline; the state read back from the store (``decode_state(store.get(key))``) is the decided
  one; the store's timer index names the state's deadline.

``state`` is that read-back state of the message last named by an input. ``roundtrip=True`` (the
default) commits every turn: the store flushes, so the next turn reads the state and the timer index
from RocksDB, as across the processor's turns. ``roundtrip=False`` never flushes: every write stays
staged in the store's memory, as the records of one long turn, which the store serves from another
path (its staged view and staged timer heap). The state goes through its bytes either way; replaying
a script both ways must decide the same.

Stores: opening a RocksDB store costs about 7 ms and the property tests create hundreds of drivers,
so a driver borrows a store (in a temp dir, removed at exit) from a per-process pool; a store whose
driver is gone is emptied (every key deleted, flushed) before the next driver gets it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import (
    CancelRequest,
    ChannelControl,
    DeliveryStatus,
    LateStatus,
    Outcome,
    RetryCommand,
    SendRequest,
    encode,
    to_ms,
)
from stream_app.contracts.headers import Headers, dead_letter_headers
from stream_app.fallback import (
    CancelEvent,
    ControlEvent,
    ControlView,
    DeadLetter,
    Decision,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Limits,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    decode_state,
)
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.control import ControlTable
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.processor import TIMER_BATCH
from stream_app.runtime.task import PartitionTask, TaskConfig
from stream_app.store import PartitionStore, parse_changelog_value
from stream_app.store.rocks import open_db

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
#: 2026-04-09T08:15:00Z, the Banca Adriatica example's requestedAt (10:15:00+02:00).
T0 = to_ms(datetime(2026, 4, 9, 8, 15, tzinfo=UTC))
#: The CONTRACT.md defaults.
LIMITS = Limits(
    max_flow_ms=72 * HOUR, orphan_status_ms=600 * SECOND, late_status_ms=24 * HOUR, dedup_ms=24 * HOUR
)

#: The driver's settings: only the topic names and the request size limit are read.
SETTINGS = Settings(topic_prefix="driver.", app_id="driver")
TOPICS = SETTINGS.topics
#: The driver's partition (of every input topic, and of the outputs: same partition counts).
P = 0
#: Every input record carries one, so the check can see it travel to what the input caused.
TRACE = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
#: Timer fires per ``advance``/``drain`` before the driver calls it a core that never settles.
_MAX_TIMERS = 1000
#: One set of metrics for every driver: a new one per driver would build every labelled child again.
_METRICS = Metrics()


def effect_bytes(effect: Effect) -> bytes:
    """A byte form of one effect, for byte-for-byte replay comparisons."""
    if isinstance(effect, SendCommand):
        return b"command " + encode(effect.command)
    if isinstance(effect, EmitOutcome):
        return b"outcome " + encode(effect.outcome)
    if isinstance(effect, EmitLateStatus):
        return b"late " + encode(effect.late)
    assert isinstance(effect, DeadLetter)
    return b"dead-letter " + effect.reason.encode()


def request(
    message_id: str = "msg-1", channels: list[dict[str, Any]] | None = None, **fields: Any
) -> SendRequest:
    """A SendRequest from camelCase JSON fields, validated like the wire would be."""
    body: dict[str, Any] = {
        "messageId": message_id,
        "destination": "+393401234567",
        "channels": channels if channels is not None else [{"channel": "WHATSAPP"}],
    }
    body.update(fields)
    return SendRequest.model_validate(body)


def status(
    channel: str,
    value: str,
    attempt: int | None = None,
    message_id: str = "msg-1",
    **fields: Any,
) -> DeliveryStatus:
    body: dict[str, Any] = {"messageId": message_id, "channel": channel, "status": value, **fields}
    if attempt is not None:
        body["attempt"] = attempt
    return DeliveryStatus.model_validate(body)


def closing(channel: str, **fields: Any) -> ChannelControl:
    """A ChannelControl record from camelCase JSON fields (state CLOSED unless given)."""
    return ChannelControl.model_validate({"channel": channel, "state": "CLOSED", **fields})


def cancel(message_id: str = "msg-1", reason: str | None = None) -> CancelRequest:
    return CancelRequest(type="cancel", message_id=message_id, reason=reason)


# ------------------------------------------------------------------------------------- the stores


@dataclass
class _Pooled:
    store: PartitionStore
    owner: weakref.ref[Driver] | None = None


class _StorePool:
    """RocksDB stores of this process, lent to drivers; one whose driver is gone is emptied and lent again.

    Opening a store costs about 7 ms; emptying one about 0.2 ms. The store object itself is kept too:
    dropping one that wrote was measured at about 4 ms (rocksdict's clean-up of its handles).
    """

    def __init__(self) -> None:
        self._root: Path | None = None
        self._pooled: list[_Pooled] = []

    def lend(self, driver: Driver) -> PartitionStore:
        for pooled in self._pooled:
            if pooled.owner is None or pooled.owner() is None:
                break
        else:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="stream-app-driver-"))
                atexit.register(self.close)
            path = self._root / f"{TOPICS.changelog}-{len(self._pooled)}"
            pooled = _Pooled(PartitionStore(path, open_db(path)))
            self._pooled.append(pooled)
        pooled.owner = weakref.ref(driver)
        # Empty it of what the last driver left, staged or flushed.
        store = pooled.store
        more = True
        while more:
            keys, more = store.keys_after(None, 1000)
            for key in keys:
                store.delete(key)
            store.flush()
        assert store.next_deadline() is None and store.pending_count() == 0
        return store

    def close(self) -> None:
        for pooled in self._pooled:
            pooled.store.close()
        self._pooled.clear()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


_STORES = _StorePool()


# ------------------------------------------------------------------------------------- the driver


class ObservedTask(PartitionTask):
    """The runtime's task, keeping every decision its step hands back (``on_records``, ``fire_due``
    and the control sweeps all go through ``step``)."""

    def __init__(self, store: PartitionStore, limits: Limits) -> None:
        same = frozenset({TOPICS.retry_commands, TOPICS.outcomes})
        super().__init__(P, store, TaskConfig(TOPICS, limits, SETTINGS.max_request_bytes, same), _METRICS)
        self.decisions: list[tuple[bytes, Decision]] = []

    def step(
        self,
        key: bytes,
        event: Event,
        now: int,
        ck: Checkpoint,
        headers: Headers,
        rec: ConsumerRecord | None,
    ) -> Decision | None:
        decision = super().step(key, event, now, ck, headers, rec)
        if decision is not None:
            self.decisions.append((key, decision))
        return decision


class Driver:
    """One message's life under a test-driven clock, through the processor's partition task."""

    def __init__(self, limits: Limits = LIMITS, now: int = T0, *, roundtrip: bool = True) -> None:
        self.limits = limits
        self.now = now
        self.roundtrip = roundtrip  # commit (flush the store) after every turn; see the module docstring
        #: The state of the message last named by an input, as read back from the store.
        self.state: FlowState | None = None
        self.effects: list[Effect] = []
        self.task = ObservedTask(_STORES.lend(self), limits)
        #: The processor's channel-control table; never started, its records are fed here.
        self.table = ControlTable(SETTINGS, self.task.metrics, exactly_once=False)
        self._key: bytes | None = None
        #: Every key's state, as read back from the store after each change.
        self._states: dict[bytes, FlowState] = {}
        #: The store's earliest timer (checked against ``_states`` after each change).
        self._due: int | None = None
        self._offsets: dict[str, int] = {}

    @property
    def controls(self) -> ControlView:
        """The channel-control view every decision sees (the table's, handed to the task)."""
        return self.table.view

    @controls.setter
    def controls(self, view: ControlView) -> None:
        self.table.view = view
        self.task.controls = view

    # ---------------------------------------------------------------------------------- inputs

    def feed(self, event: Event) -> tuple[Effect, ...]:
        """One input as the processor takes it; the core's effects, in order."""
        if isinstance(event, TimerEvent):
            return self.tick()
        if isinstance(event, ControlEvent):
            return self._control(event)
        msg: SendRequest | CancelRequest | DeliveryStatus
        if isinstance(event, RequestEvent):
            msg, topic = event.request, TOPICS.send_requests
        elif isinstance(event, CancelEvent):
            msg, topic = event.cancel, TOPICS.send_requests
        else:
            assert isinstance(event, StatusEvent)
            msg, topic = event.status, TOPICS.delivery_status
        key = msg.message_id.encode()
        self._key = key
        self.state = self._states.get(key)
        rec = self._record(topic, key, encode(msg))
        ck = Checkpoint()
        tp = TopicPartition(topic, P)
        self.task.on_records(tp, [rec], self.now, ck)
        assert ck.offsets[P] == {tp: rec.offset + 1}, "the input offset is staged past the record"
        return self._commit(ck, rec)

    def send(self, req: SendRequest) -> tuple[Effect, ...]:
        return self.feed(RequestEvent(req))

    def report(self, st: DeliveryStatus) -> tuple[Effect, ...]:
        return self.feed(StatusEvent(st))

    def stop(self, c: CancelRequest) -> tuple[Effect, ...]:
        return self.feed(CancelEvent(c))

    def control(self, record: ChannelControl | None, key: str | None = None) -> tuple[Effect, ...]:
        """A channel-control record (``None``: a tombstone of ``key``): into the view, then to the message."""
        if key is None:
            assert record is not None
            key = record.key
        return self.feed(ControlEvent(key, record))

    def tick(self) -> tuple[Effect, ...]:
        """One turn of timers at ``now``: every key the store's due index names (none: no effect)."""
        ck = Checkpoint()
        self.task.fire_due(self.now, TIMER_BATCH, ck)
        return self._commit(ck, None)

    def _control(self, event: ControlEvent) -> tuple[Effect, ...]:
        """The processor's turn for a control record: the view, then the due timers, then the sweep."""
        value = None if event.control is None else encode(event.control)
        rec = self._record(TOPICS.channel_control, event.key.encode(), value)
        refused = self.table.apply(rec, live=True, now=self.now, owned={P})
        assert refused is None, f"the control table refused the record: {refused}"
        self.task.controls = self.table.view
        ck = Checkpoint()
        self.task.fire_due(self.now, TIMER_BATCH, ck)
        if self.table.sweeps:
            self.table.run_sweeps({P: self.task}, self.now, ck)
        assert not self.table.sweeps, "a sweep of one partition of a few flows ends in its turn"
        return self._commit(ck, None)

    def _record(self, topic: str, key: bytes, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
        offset = self._offsets.get(topic, 0)
        self._offsets[topic] = offset + 1
        size = len(value) if value is not None else 0
        return ConsumerRecord(topic, P, offset, self.now, 0, key, value, None, len(key), size, [TRACE])

    # -------------------------------------------------------------------------------- the turn

    def _commit(self, ck: Checkpoint, rec: ConsumerRecord[bytes, bytes] | None) -> tuple[Effect, ...]:
        """Check what the turn staged against the decisions, commit it, read the state back."""
        decisions, self.task.decisions = self.task.decisions, []
        self._check_outputs(ck, decisions, rec)
        if self.roundtrip:
            self.task.store.flush()
        self._check_changes(ck, decisions)
        effects = tuple(e for _, d in decisions for e in d.effects)
        self.effects.extend(effects)
        return effects

    def _check_outputs(
        self,
        ck: Checkpoint,
        decisions: list[tuple[bytes, Decision]],
        rec: ConsumerRecord[bytes, bytes] | None,
    ) -> None:
        """The staged outputs are exactly the effects' records, in order (see the module docstring)."""
        headers: Headers = [TRACE] if rec is not None else []  # a timer or a sweep passes none on
        expected: list[tuple[str, bytes | None, bytes | None, Headers, int | None]] = []
        for _, decision in decisions:
            for e in decision.effects:
                if isinstance(e, SendCommand):
                    c = e.command
                    expected.append((TOPICS.retry_commands, c.message_id.encode(), encode(c), headers, P))
                elif isinstance(e, EmitOutcome):
                    o = e.outcome
                    expected.append((TOPICS.outcomes, o.message_id.encode(), encode(o), headers, P))
                elif isinstance(e, EmitLateStatus):
                    late = e.late
                    expected.append((TOPICS.outcomes, late.message_id.encode(), encode(late), headers, P))
                elif rec is not None:  # a DeadLetter of an input: the record itself, with the reason
                    why = dead_letter_headers(
                        e.reason, rec.topic, rec.partition, rec.offset, "stream_app.fallback.DeadLetter"
                    )
                    expected.append((TOPICS.dead_letters, rec.key, rec.value, [*rec.headers, *why], None))
        got = [(o.topic, o.key, o.value, o.headers, o.partition) for o in ck.outputs.get(P, [])]
        if got != expected:
            unexplained = [
                dict(o[3]).get("__error.reason", b"").decode()
                for o in got
                if o[0] == TOPICS.dead_letters and o not in expected
            ]
            raise AssertionError(
                "the task staged other records than the core's effects: "
                f"dead letters without an effect {unexplained}; staged {got}; expected {expected}"
            )

    def _check_changes(self, ck: Checkpoint, decisions: list[tuple[bytes, Decision]]) -> None:
        """Each changed key's changelog record is the store's record and holds the decided state; the
        store's timer index names the earliest deadline of the states it holds."""
        changes = ck.changes.get(P)
        if not changes:
            return
        last = dict(decisions)  # the latest decision per key
        store, states = self.task.store, self._states
        for key, change in changes.items():
            assert key in last, f"{key!r} changed without a decision: a core failure (the log says which)"
            decided = last[key].state
            if change.record is None:
                assert decided is None and store.get(key) is None, "a deleted state is gone from the store"
                states.pop(key, None)
                continue
            value, deadline = parse_changelog_value(change.record)
            assert store.get(key) == value, "the changelog record is the store's record"
            stored = decode_state(value)
            assert decided is not None and stored == decided, "the stored state is the decided one"
            assert deadline == decided.deadline_ms, "the record's timer is the state's deadline"
            states[key] = stored
        self.state = states.get(self._key) if self._key is not None else None
        deadlines = [st.deadline_ms for st in states.values() if st.deadline_ms is not None]
        self._due = store.next_deadline()
        assert self._due == min(deadlines, default=None), "the store's timer index is the states' deadline"

    # ------------------------------------------------------------------------------------ time

    def advance(self, ms: int) -> tuple[Effect, ...]:
        """Move the clock forward by ``ms``, firing the timer at each deadline on the way."""
        return self.run_until(self.now + ms)

    def run_until(self, when: int) -> tuple[Effect, ...]:
        out: list[Effect] = []
        for _ in range(_MAX_TIMERS):
            due = self._due
            if due is None or due > when:
                self.now = max(self.now, when)
                return tuple(out)
            self.now = max(self.now, due)
            out.extend(self.tick())
        raise AssertionError("timers never stop falling due")

    def drain_until_commands(self, count: int) -> None:
        """Fire timers until ``count`` commands were issued (fails if the state ends first)."""
        for _ in range(100):
            if len(self.commands) >= count:
                return
            due = self._due
            assert self.state is not None and due is not None, "ended before the command"
            self.now = max(self.now, due)
            self.tick()
        raise AssertionError("too many timers")

    def drain(self) -> tuple[Effect, ...]:
        """Fire timers until the state is gone (every message ends and is eventually forgotten)."""
        out: list[Effect] = []
        for _ in range(100):
            if self.state is None:
                return tuple(out)
            due = self._due
            assert due is not None, "a stored state without a timer would live forever"
            self.now = max(self.now, due)
            out.extend(self.tick())
        raise AssertionError("state never went away")

    # -------------------------------------------------------------------------------- findings

    @property
    def commands(self) -> list[RetryCommand]:
        return [e.command for e in self.effects if isinstance(e, SendCommand)]

    @property
    def outcomes(self) -> list[Outcome]:
        return [e.outcome for e in self.effects if isinstance(e, EmitOutcome)]

    @property
    def outcome(self) -> Outcome:
        (only,) = self.outcomes
        return only

    @property
    def lates(self) -> list[LateStatus]:
        return [e.late for e in self.effects if isinstance(e, EmitLateStatus)]

    @property
    def dead_letters(self) -> list[str]:
        return [e.reason for e in self.effects if isinstance(e, DeadLetter)]


def commands_of(effects: tuple[Effect, ...]) -> list[RetryCommand]:
    return [e.command for e in effects if isinstance(e, SendCommand)]


def outcomes_of(effects: tuple[Effect, ...]) -> list[Outcome]:
    return [e.outcome for e in effects if isinstance(e, EmitOutcome)]
