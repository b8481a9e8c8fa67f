"""Replay one message's inputs through the processor's own partition step, timers included.

The replay drives a real :class:`~stream_app.runtime.task.PartitionTask` over a throw-away store:
the very code that decodes, dead-letters, decides and stages in the processor, not a copy of it.
What it staged (commands, outcomes, late statuses, dead letters) is what the processor would have
published; :mod:`stream_app.explain.compare` holds it against what it did publish.

Time: an input is stepped at its record's timestamp (the processor steps it at its clock when it
reads it, a little later; like that clock, the replay's never goes back). Each partition's records
are stepped in offset order, as the processor reads them. A timer fires at its deadline, the
earliest moment the processor's loop fires it (``fire_due(now)`` with ``now`` >= the deadline), and
before any input stamped at or after it. Timers fire up to ``horizon_ms`` (the end of the time range
asked for, or now); a later one is reported as pending.

Input kinds: :data:`FEEDERS` maps a catalogue id to the step of the processor that takes such a
record; a new input topic is one entry there (and one in :mod:`stream_app.explain.records`).
``channel-control`` (v1.1, a global input keyed by channel) goes through the processor's own
:class:`~stream_app.runtime.control.ControlTable`, as a live instance that owns the message's
partition: :meth:`~stream_app.runtime.control.ControlTable.apply` puts the record into the table's
view (a bad one changes nothing), the task decides with that view from then on, and a FALLBACK
closure's sweep (:meth:`~stream_app.runtime.control.ControlTable.run_sweeps`) ends the message's
open attempt on that channel. Control records are replayed in timestamp order with the message's
inputs, from the oldest read (a channel closed before the message still applies to it) up to the
end of the replay (``controls_until_ms``): a later one cannot have changed what was published.
"""

from __future__ import annotations

import heapq
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import (
    CancelRequest,
    ChannelControl,
    ChannelState,
    DeliveryStatus,
    InvalidRecord,
    Outcome,
    SendRequest,
    decode_command,
    decode_control,
    decode_outcome,
    decode_request,
    decode_status,
    format_ms,
    to_ms,
)
from stream_app.contracts.catalogue import DEAD_LETTER_HEADERS
from stream_app.explain.records import INPUT_IDS, Record, topic_names
from stream_app.fallback import (
    CancelEvent,
    ControlEvent,
    DeadLetter,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    decode_state,
)
from stream_app.fallback.why import Rule, Why, control_change, explain
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.control import ControlTable
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.produce import Out
from stream_app.runtime.task import PartitionTask, TaskConfig, limits_of
from stream_app.store import PartitionStore

#: The dead-letter header holding the one-line reason (the first of Kafka Connect's ``__error.*``).
_REASON = DEAD_LETTER_HEADERS[0]
#: The replay's one partition: the store and the task are the message's alone, so any number does.
_P = 0
#: Timers fired at one moment at most: a message has one timer, so this only bounds a logic error.
_MAX_TIMERS = 1000


@dataclass(slots=True)
class Runtime:
    """The processor's own objects the replay drives: the message's partition task and a control table."""

    task: PartitionTask
    control: ControlTable


#: ``(runtime, record, now, checkpoint)``: steps one input record as the processor does; returns
#: the reason when the processor refuses the record without a dead letter of the task's own.
Feeder = Callable[[Runtime, ConsumerRecord, int, Checkpoint], str | None]


def _partitioned_input(rt: Runtime, rec: ConsumerRecord, now: int, ck: Checkpoint) -> str | None:
    """A record of a co-partitioned input topic: the processor's ``on_records`` for a batch of one."""
    rt.task.on_records(TopicPartition(rec.topic, rec.partition), [rec], now, ck)
    return None


def _control_input(rt: Runtime, rec: ConsumerRecord, now: int, ck: Checkpoint) -> str | None:
    """A ``channel-control`` record: the processor's turn for it (``ControlTable.poll``, then the sweeps).

    Into the table's view, and a FALLBACK closure starts a sweep of the owned partition; the task
    decides with the new view; the sweep steps the message with the control event if its open
    attempt is on that channel. A bad record's reason is returned (the processor dead-letters it).
    """
    reason = rt.control.apply(rec, live=True, now=now, owned={rt.task.p})
    rt.task.controls = rt.control.view
    if rt.control.sweeps:
        rt.control.run_sweeps({rt.task.p: rt.task}, now, ck)
    return reason


#: Catalogue id of an input topic -> the step of the processor that takes its records.
FEEDERS: dict[str, Feeder] = {
    "send_requests": _partitioned_input,
    "delivery_status": _partitioned_input,
    "channel_control": _control_input,
}


@dataclass(frozen=True, slots=True)
class Output:
    """One record the replay staged: ``kind`` is command, outcome, late-status or dead-letter."""

    kind: str
    topic_id: str
    value: bytes | None
    data: dict[str, Any] | None  # the JSON value (None for a dead letter)
    reason: str | None = None  # a dead letter's reason


@dataclass(slots=True)
class Entry:
    """One line of the timeline: an input or a timer, the rules it applied and what it staged."""

    at_ms: int
    kind: str  # "input" or "timer"
    record: Record | None
    summary: str
    whys: tuple[Why, ...]
    outputs: list[Output] = field(default_factory=list)
    #: For an input: how long before the message's timer it came (ms), when that timer was armed.
    #: A short one is a race the processor, reading it a little later, may have seen the other way.
    before_timer_ms: int | None = None


@dataclass(slots=True)
class Replay:
    entries: list[Entry]
    pending_timer_ms: int | None  # the next timer after the horizon, if any
    horizon_ms: int


def replay(
    settings: Settings,
    message_id: str,
    inputs: list[Record],
    horizon_ms: int,
    controls_until_ms: int | None = None,
) -> Replay:
    """Step ``inputs`` (this message's input records, any order) and the timers due up to ``horizon_ms``.

    A global input (``channel-control``) stamped after ``controls_until_ms`` (default: the horizon)
    is left out: the replay ends before it.
    """
    key = message_id.encode()
    names = topic_names(settings)
    last_control = horizon_ms if controls_until_ms is None else controls_until_ms
    with tempfile.TemporaryDirectory(prefix="stream-app-explain-") as tmp:
        store = PartitionStore.open(Path(tmp), names["send_requests"], _P)
        try:
            config = TaskConfig(settings.topics, limits_of(settings), settings.max_request_bytes)
            metrics = Metrics()
            task = PartitionTask(_P, store, config, metrics)
            control = ControlTable(settings, metrics, exactly_once=False)  # never started: fed here
            stepper = _Stepper(Runtime(task, control), key, settings)
            clock = 0
            for rec in in_order(inputs):
                if not rec.keyed and rec.timestamp_ms > last_control:
                    continue
                # The processor's clock never goes back: a record stamped earlier than the one before
                # it (another producer's clock) is stepped at the time already reached.
                clock = max(clock, rec.timestamp_ms)
                stepper.timers_until(clock)
                stepper.input(rec, names[rec.kind], clock)
            stepper.timers_until(horizon_ms)
            pending = stepper.state()
            return Replay(stepper.entries, pending.deadline_ms if pending is not None else None, horizon_ms)
        finally:
            store.close()


def in_order(inputs: list[Record]) -> Iterator[Record]:
    """The inputs in the order the processor reads them: each partition in offset order, the
    partitions interleaved by timestamp (a request before statuses of the same millisecond)."""
    order = {k: n for n, k in enumerate(INPUT_IDS)}
    streams: dict[tuple[str, int], list[Record]] = {}
    for rec in inputs:
        streams.setdefault((rec.topic, rec.partition), []).append(rec)
    for stream in streams.values():
        stream.sort(key=lambda r: r.offset)
    return heapq.merge(*streams.values(), key=lambda r: (r.timestamp_ms, order.get(r.kind, len(order))))


class _Stepper:
    """The task, the message's key and the timeline so far."""

    def __init__(self, rt: Runtime, key: bytes, settings: Settings) -> None:
        self.rt = rt
        self.task = rt.task
        self.key = key
        self.topics = settings.topics
        self.entries: list[Entry] = []

    def state(self) -> FlowState | None:
        raw = self.task.store.get(self.key)
        return decode_state(raw) if raw is not None else None

    def input(self, rec: Record, topic: str, now: int) -> None:
        feeder = FEEDERS[rec.kind]
        before = self.state()
        ck = Checkpoint()
        crec = ConsumerRecord(
            topic,
            rec.partition,
            rec.offset,
            rec.timestamp_ms,
            0,
            rec.key,
            rec.value,
            None,
            len(rec.key or b""),
            len(rec.value or b""),
            list(rec.headers),
        )
        refused = feeder(self.rt, crec, now, ck)
        self.task.store.flush()
        after = self.state()
        outputs = self._outputs(ck.outputs.get(_P, []))
        event = _event(rec)
        effects = _effects(outputs)
        controls = self.task.controls
        if refused is not None:
            whys: tuple[Why, ...] = (
                Why(Rule.DEAD_LETTER, f"refused, it changes nothing (dead-lettered): {refused}"),
            )
        elif event is None:
            whys = tuple(Why(Rule.DEAD_LETTER, f"input dead-lettered: {o.reason}") for o in outputs)
        elif isinstance(event, ControlEvent):
            whys = (
                control_change(event.key, event.control, now),
                *explain(before, event, after, effects, controls),
            )
        else:
            whys = explain(before, event, after, effects, controls)
        due = before.deadline_ms if before is not None else None
        ahead = due - now if due is not None and due >= now else None
        self.entries.append(Entry(now, "input", rec, _describe(rec), whys, outputs, ahead))

    def timers_until(self, until_ms: int) -> None:
        for _ in range(_MAX_TIMERS):
            before = self.state()
            due = before.deadline_ms if before is not None else None
            if due is None or due > until_ms:
                return
            ck = Checkpoint()
            self.task.fire_due(due, _MAX_TIMERS, ck)
            self.task.store.flush()
            after = self.state()
            outputs = self._outputs(ck.outputs.get(_P, []))
            whys = explain(before, TimerEvent(), after, _effects(outputs), self.task.controls)
            self.entries.append(
                Entry(due, "timer", None, "the message's timer, at its deadline", whys, outputs)
            )
            if after is not None and after.deadline_ms is not None and after.deadline_ms <= due:
                return  # the timer did not move on: a core bug; stop rather than spin (shown as is)

    def _outputs(self, outs: list[Out]) -> list[Output]:
        t = self.topics
        out: list[Output] = []
        for o in outs:
            if o.topic == t.dead_letters:
                reason = next(
                    (v.decode("utf-8", "replace") for k, v in o.headers if k == "__error.reason" and v),
                    "?",
                )
                out.append(Output("dead-letter", "dead_letters", o.value, None, reason))
                continue
            data = orjson.loads(o.value) if o.value is not None else None
            if o.topic == t.retry_commands:
                out.append(Output("command", "retry_commands", o.value, data))
            elif o.topic == t.outcomes:
                kind = (
                    "late-status"
                    if isinstance(data, dict) and data.get("type") == "late-status"
                    else "outcome"
                )
                out.append(Output(kind, "outcomes", o.value, data))
        return out


def _effects(outputs: list[Output]) -> tuple[Effect, ...]:
    """The core's effects again, from what the task staged (its own bytes, read back)."""
    effects: list[Effect] = []
    for o in outputs:
        if o.kind == "dead-letter":
            effects.append(DeadLetter(o.reason or "?"))
        elif o.value is not None and o.kind == "command":
            effects.append(SendCommand(decode_command(o.value)))
        elif o.value is not None:
            rec = decode_outcome(o.value)
            effects.append(EmitOutcome(rec) if isinstance(rec, Outcome) else EmitLateStatus(rec))
    return tuple(effects)


def _event(rec: Record) -> Event | None:
    """The input as the core's event, read with the contracts' decoders; None when it does not decode."""
    if rec.kind == "channel_control":
        try:
            key = (rec.key or b"").decode()
            return ControlEvent(key, None if rec.value is None else decode_control(rec.value, rec.key))
        except (InvalidRecord, UnicodeDecodeError):
            return None
    if rec.value is None:
        return None
    try:
        if rec.kind == "send_requests":
            msg = decode_request(rec.value)
            return RequestEvent(msg) if isinstance(msg, SendRequest) else CancelEvent(msg)
        if rec.kind == "delivery_status":
            return StatusEvent(decode_status(rec.value))
    except InvalidRecord:
        return None
    return None


def _describe(rec: Record) -> str:
    """The input in one line: what a support engineer needs to recognise it."""
    if rec.value is None:
        shown = rec.key.decode("utf-8", "replace") if rec.key is not None else None
        return f"tombstone of {shown!r}" if rec.kind == "channel_control" else "empty value (tombstone)"
    try:
        if rec.kind == "channel_control":
            return _describe_control(decode_control(rec.value, rec.key))
        if rec.kind == "send_requests":
            msg = decode_request(rec.value)
            return _describe_request(msg)
        if rec.kind == "delivery_status":
            return _describe_status(decode_status(rec.value))
    except InvalidRecord as exc:
        return f"undecodable: {exc.reason}"
    text = " ".join(rec.value.decode("utf-8", "replace").split())
    return text[:120]


def _describe_control(c: ChannelControl) -> str:
    bits = [f"channel {c.channel.value} {c.state.value}"]
    bits.append(f"tenant {c.tenant}" if c.tenant is not None else "for all")
    if c.state is ChannelState.CLOSED:
        bits.append(f"inFlight {c.in_flight.value}")
        if c.until is not None:
            bits.append(f"until {format_ms(to_ms(c.until))}")
    if c.reason:
        bits.append(f"reason {c.reason!r}")
    return ", ".join(bits)


def _describe_request(msg: SendRequest | CancelRequest) -> str:
    if isinstance(msg, CancelRequest):
        return f"cancel{f' ({msg.reason})' if msg.reason else ''}"
    steps = []
    for s in msg.channels:
        after = f" {s.fallback_after:g} s" if s.fallback_after is not None else ""
        steps.append(f"{s.channel.value}{after}")
    bits = [f"send {' > '.join(steps)}"]
    if msg.ttl is not None:
        bits.append(f"ttl {msg.ttl:g} s")
    if msg.expires_at is not None:
        bits.append(f"expiresAt {msg.expires_at.isoformat()}")
    if msg.initial_attempt is not None:
        bits.append("initialAttempt")
    return ", ".join(bits)


def _describe_status(s: DeliveryStatus) -> str:
    parts = [f"status {s.channel.value} {s.status.value}"]
    if s.attempt is not None:
        parts.append(f"attempt {s.attempt}")
    if s.reasons:
        parts.append(f"reasons {'; '.join(s.reasons)}")
    if s.occurred_at is not None:
        parts.append(f"occurredAt {format_ms(to_ms(s.occurred_at))}")
    return ", ".join(parts)
