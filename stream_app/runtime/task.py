"""One partition's processing: input records and due timers through one step into a checkpoint.

A :class:`PartitionTask` owns partition p's store and knows its topics and limits; it holds no Kafka
client, so it runs in a unit test with a store in a temp dir. Both ways in share :meth:`step`:

    get the stored state -> decode it -> decide() -> stage the outputs -> stage the new state

* :meth:`on_records` decodes input records (a bad one is dead-lettered with its reason) and steps
  each; the partition's input offset is staged past the last record;
* :meth:`fire_due` steps every key whose timer is due, within a budget per turn.

The runtime commits the checkpoint (:mod:`stream_app.runtime.checkpoint`); this module never does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, TopicPartition
from mypy_extensions import mypyc_attr

from stream_app.config import Settings, Topics, max_record_bytes
from stream_app.contracts import InvalidRecord, SendRequest, decode_request, decode_status, encode
from stream_app.contracts.headers import Headers, copied_headers, dead_letter_headers
from stream_app.contracts.trusted import encode_command, encode_outcome
from stream_app.fallback import (
    NO_CONTROLS,
    CancelEvent,
    ControlView,
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
from stream_app.fallback.state import seconds_to_ms
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.logs import LOGGER, log, mask
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.produce import Out
from stream_app.store import PartitionStore


def limits_of(settings: Settings) -> Limits:
    """The core's bounds, in milliseconds, from the settings (the core itself knows no settings)."""
    return Limits(
        max_flow_ms=seconds_to_ms(settings.max_flow_seconds),
        orphan_status_ms=seconds_to_ms(settings.orphan_status_seconds),
        late_status_ms=seconds_to_ms(settings.late_status_seconds),
        dedup_ms=seconds_to_ms(settings.dedup_seconds),
    )


@dataclass(frozen=True, slots=True)
class TaskConfig:
    """What every partition's task shares: topics, limits, and where outputs go."""

    topics: Topics
    limits: Limits
    max_request_bytes: int
    #: Output topics with the inputs' partition count: partition p's outputs go to partition p there
    #: (see Processor._start); others are hashed by key.
    same_partitions: frozenset[str] = frozenset()


# The unit tests' driver subclasses the task to keep each step's decision; a mypyc build refuses an
# interpreted subclass of a compiled class without this (a no-op in pure Python, no cost compiled).
@mypyc_attr(allow_interpreted_subclasses=True)
class PartitionTask:
    """Partition p's store, and the one step every input and timer of p goes through."""

    def __init__(self, p: int, store: PartitionStore, config: TaskConfig, metrics: Metrics) -> None:
        self.p = p
        self.store = store
        self.config = config
        self.metrics = metrics
        t, same = config.topics, config.same_partitions
        self._cmd_p = p if t.retry_commands in same else None
        self._out_p = p if t.outcomes in same else None
        #: The channel-control view every decision of this partition sees (set by the processor).
        self.controls: ControlView = NO_CONTROLS

    # ------------------------------------------------------------------------------------ inputs

    def on_records(self, tp: TopicPartition, records: list[ConsumerRecord], now: int, ck: Checkpoint) -> None:
        """Step every record of one fetched batch of ``tp``, then stage the offset past the last one."""
        p, is_request = self.p, tp.topic == self.config.topics.send_requests
        self.metrics.records_in.labels(tp.topic).inc(len(records))
        max_bytes = self.config.max_request_bytes
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
                self.dead_letter(ck, rec, exc.reason, "stream_app.contracts.InvalidRecord")
                continue
            key = msg.message_id.encode()
            if rec.key != key:
                got = "none" if rec.key is None else repr(rec.key[:60].decode("utf-8", "replace"))
                reason = f"key: must be the messageId {msg.message_id!r}, got {got}"
                self.dead_letter(ck, rec, reason, "stream_app.runtime.KeyMismatch")
                continue
            event: Event
            if is_request:
                event = RequestEvent(msg) if isinstance(msg, SendRequest) else CancelEvent(msg)  # type: ignore[arg-type]
            else:
                event = StatusEvent(msg)  # type: ignore[arg-type]
            if self.step(key, event, now, ck, copied_headers(rec.headers), rec) is None:
                continue
            change = ck.changes[p].get(key)
            if change is not None:
                if is_request:
                    change.req_offset = max(change.req_offset, rec.offset)
                else:
                    change.status_offset = max(change.status_offset, rec.offset)
        ck.offsets[p][tp] = records[-1].offset + 1

    # ------------------------------------------------------------------------------------ timers

    def fire_due(self, now: int, budget: int, ck: Checkpoint) -> int:
        """Step every key of this partition whose timer is due at ``now`` (at most ``budget``)."""
        fired = 0
        for key, deadline in self.store.due(now, budget):
            if self.step(key, TimerEvent(), now, ck, [], None) is not None:
                fired += 1
                self.metrics.timer_lateness.observe(max(0, now - deadline) / 1000)
        return fired

    # -------------------------------------------------------------------------------------- step

    def step(
        self,
        key: bytes,
        event: Event,
        now: int,
        ck: Checkpoint,
        headers: Headers,
        rec: ConsumerRecord | None,
    ) -> Decision | None:
        """get -> decode -> decide -> stage outputs and the new state; the decision, None when none.

        The decision is handed back for a caller that checks it (the unit tests' driver); it costs
        the loop nothing, the object exists anyway.

        A failure of the core costs one input (dead-lettered with the error) or disarms one timer,
        never the loop: both are loud, and a timer that failed is not fired again every turn.
        """
        store = self.store
        old = store.get(key)
        if old is None and isinstance(event, TimerEvent):
            return None  # deleted since the index named it
        try:
            state = None if old is None else decode_state(old)
            decision = decide(state, event, now, self.config.limits, self.controls)
        except Exception as exc:  # a core bug must cost one record, never the loop
            error = f"{type(exc).__name__}: {exc}"
            if rec is None and not isinstance(event, TimerEvent):
                # A channel-control sweep's step: logged; the flow's own timer still runs.
                log(logging.ERROR, "control_step_failed", partition=self.p, key=_text(key), error=error)
            elif rec is None:
                log(logging.ERROR, "timer_failed", partition=self.p, key=_text(key), error=error)
                assert old is not None
                ck.changed(self.p, key, store.put(key, old, None))
            else:
                log(
                    logging.ERROR,
                    "decide_failed",
                    topic=rec.topic,
                    partition=self.p,
                    offset=rec.offset,
                    error=error,
                )
                self.dead_letter(ck, rec, f"processor: {error}", "stream_app.runtime.ProcessingError")
            return None
        self._outputs(ck, key, decision.effects, headers, rec)
        self._stage(ck, key, state, old, decision.state)
        return decision

    def _outputs(
        self,
        ck: Checkpoint,
        key: bytes,
        effects: tuple[object, ...],
        headers: Headers,
        rec: ConsumerRecord | None,
    ) -> None:
        t = self.config.topics
        outs = ck.outputs[self.p]
        for effect in effects:
            if isinstance(effect, SendCommand):
                cmd = effect.command
                outs.append(Out(t.retry_commands, key, encode_command(cmd), headers, self._cmd_p))
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
                outs.append(Out(t.outcomes, key, encode_outcome(effect.outcome), headers, self._out_p))
            elif isinstance(effect, EmitLateStatus):
                outs.append(Out(t.outcomes, key, encode(effect.late), headers, self._out_p))
            elif isinstance(effect, DeadLetter):
                if rec is not None:
                    self.dead_letter(ck, rec, effect.reason, "stream_app.fallback.DeadLetter")
                else:
                    log(logging.ERROR, "dead_letter_without_input", key=_text(key), reason=effect.reason)

    def _stage(
        self, ck: Checkpoint, key: bytes, state: FlowState | None, old: bytes | None, new: FlowState | None
    ) -> None:
        """Stage the new state in the store and its changelog record (one per key per checkpoint)."""
        if new is state and new is not None:
            return  # unchanged: decide() hands back the very same object
        if new is None:
            if old is not None:
                self.store.delete(key)
                ck.changed(self.p, key, None)
            return
        value = encode_state(new)
        if value != old:
            # The store indexes the timer from the state's deadline: the core's timer is data.
            ck.changed(self.p, key, self.store.put(key, value, new.deadline_ms))

    def dead_letter(self, ck: Checkpoint, rec: ConsumerRecord, reason: str, cls: str) -> None:
        """Stage the input record, untouched, on ``dead-letters`` with its reason (CONTRACT.md).

        Unless it would be too large to produce: an input topic may take larger records than the
        processor's producer does (``max_record_bytes``), and a produce refused for size fails the
        turn at every retry, so the partition would stall for good. Such a dead letter leaves out
        its value, then if still too large the input's own headers, then its key; its reason says
        what was left out, and its ``__error.source.*`` headers say where the record is. Dead
        letters are rare: sizing each one costs nothing that counts.
        """
        key, value, theirs = rec.key, rec.value, list(rec.headers)
        own = dead_letter_headers(reason, rec.topic, rec.partition, rec.offset, cls)
        limit = max_record_bytes(self.config.max_request_bytes)
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes
        if size(key, value, theirs + own) > limit:
            room = limit - _REASON_ROOM  # the reason grows by what it says was left out
            left_out = [f"the value ({len(value or b'')} bytes)"]
            value = None
            if size(key, None, theirs + own) > room:
                left_out.append("the record's own headers")
                theirs = []
            if size(key, None, own) > room:
                left_out.append(f"the key ({len(key or b'')} bytes)")
                key = None
            what = left_out[0] if len(left_out) == 1 else f"{', '.join(left_out[:-1])} and {left_out[-1]}"
            reason = (
                f"{reason}; {what} {'is' if len(left_out) == 1 else 'are'} not carried: a dead letter "
                f"may be at most {limit} bytes, read the record at its source offset"
            )
            own = dead_letter_headers(reason, rec.topic, rec.partition, rec.offset, cls)
        headers: Headers = theirs + own
        ck.outputs[self.p].append(Out(self.config.topics.dead_letters, key, value, headers))
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


#: Bytes kept free when a dead letter is cut to size, for the words its reason gains (what was left
#: out and the limit: under 200 bytes).
_REASON_ROOM = 512


def _text(key: bytes) -> str:
    return key.decode("utf-8", "replace")
