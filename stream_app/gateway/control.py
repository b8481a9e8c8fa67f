"""The dispatcher's side of ``channel-control``: what its circuit breakers publish, and when.

:mod:`stream_app.gateway.breaker` decides when a channel's circuit trips and recovers; this module
turns those transitions into ChannelControl records (CONTRACT.md v1.1, key ``CHANNEL``: the gateway
is shared by every tenant, so a trip closes the channel for all), probes a tripped channel once its
``until`` has passed, and keeps the metrics and the log lines of every state change.

Several dispatchers (one group, each with its share of the partitions) each keep their own breakers
over their own calls, and each reads the whole topic (:class:`ControlView`) before it publishes, so
that (:func:`record_for`, pure):

* a trip publishes ``CLOSED`` unless the channel is already closed at least as long (an operator's
  close, or another dispatcher's trip; within :data:`COVER_SLACK_MS`): the first dispatcher to trip
  closes it, the others add nothing, and one whose close would last longer extends ``until``;
* a successful probe publishes ``OPEN`` only over a breaker's own ``CLOSED`` (any dispatcher's,
  recognised by its reason, :data:`BREAKER_REASON`). An operator's close is never lifted by a probe,
  and once one dispatcher has reopened the channel the others' successes add nothing;
* a failed probe publishes ``CLOSED`` again, with a later ``until``, even over an ``OPEN`` (its
  evidence is the newest), unless the channel is already closed at least that long.

Records are ``inFlight: WAIT``: the dispatcher keeps retrying the sends already issued until their
``notAfter``, and ``FALLBACK`` would start the next step while one of those retries may still get
through (a double delivery). The probe (:meth:`Breakers.probe`) is a send of the channel's most
recent command body with ``simulation: true`` and the customer messageId ``breaker-probe:CHANNEL:ms``:
it goes through the channel's send path at the gateway, which sends nothing to anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.config import Settings
from stream_app.contracts import (
    Channel,
    ChannelControl,
    InvalidRecord,
    decode_control,
    encode,
    from_ms,
    to_ms,
)
from stream_app.contracts.models import ChannelState, InFlight, control_key
from stream_app.gateway.breaker import CallOutcome, Cause, ChannelBreaker, Circuit, Transition, classify
from stream_app.gateway.client import GatewayClient, RateLimited, SendResult, StatusResult
from stream_app.gateway.metrics import DispatcherMetrics
from stream_app.gateway.settings import BreakerConfig
from stream_app.logs import event

log = logging.getLogger(__name__)

#: The reason of every record a breaker publishes: how a dispatcher tells its kind's closes from an
#: operator's (``stream-app channel close --reason ...``), which it never lifts.
BREAKER_REASON = "circuit breaker"
#: The customer messageId of a probe (``breaker-probe:CHANNEL:ms``): a simulation send, so the
#: gateway keeps no message under it, and the name says where it came from in the gateway's logs.
PROBE_ID = "breaker-probe"
#: How long a probe that was rate limited (or raised) waits before the next one (seconds).
PROBE_RETRY_S = 5.0
#: A close that ends no more than this before ours covers it (ms): two dispatchers tripping on one
#: outage a moment apart publish one CLOSED, not two that differ by milliseconds.
COVER_SLACK_MS = 5_000
#: How long a transition waits for the view of channel-control to be read whole before deciding
#: anyway (a trip in the first seconds of a dispatcher; the topic is small, so this is plenty).
VIEW_WAIT_S = 10.0
#: Value of ``stream_app_dispatcher_breaker_state`` per circuit state.
STATE_VALUE = {Circuit.CLOSED: 0, Circuit.HALF_OPEN: 1, Circuit.OPEN: 2}


def is_breakers(record: ChannelControl) -> bool:
    return (record.reason or "").startswith(BREAKER_REASON)


def record_for(t: Transition, current: ChannelControl | None) -> ChannelControl | None:
    """The ChannelControl a transition publishes, given the topic's current record for its channel
    (``CHANNEL`` key, tenant null); None when nothing needs saying (see the module's rules)."""
    at = from_ms(int(t.at * 1000))
    if t.after is Circuit.OPEN:
        assert t.until is not None
        until_ms = int(t.until * 1000)
        if (
            current is not None
            and current.state is ChannelState.CLOSED
            and (current.until is None or to_ms(current.until) >= until_ms - COVER_SLACK_MS)
        ):
            return None  # already closed at least that long, by an operator or a dispatcher
        if t.cause is Cause.TRIPPED:
            why = f"{BREAKER_REASON}: {t.failures} of {t.calls} gateway calls failed"
        else:
            why = f"{BREAKER_REASON}: probe failed"
        return ChannelControl(
            channel=t.channel,
            state=ChannelState.CLOSED,
            reason=why,
            until=from_ms(until_ms),
            in_flight=InFlight.WAIT,
            at=at,
        )
    if t.after is Circuit.CLOSED:
        if current is None or current.state is not ChannelState.CLOSED or not is_breakers(current):
            return None
        return ChannelControl(
            channel=t.channel, state=ChannelState.OPEN, reason=f"{BREAKER_REASON}: probe succeeded", at=at
        )
    return None  # HALF_OPEN: a probe goes out, nothing is published


class ControlView:
    """The last global (tenant null) record of each channel on ``channel-control``, kept current.

    The dispatcher reads it only to decide whether to publish (:func:`record_for`); it never applies
    it to sends (the processor does). Bad records are skipped here: the processor dead-letters them.
    """

    def __init__(self) -> None:
        self.current: dict[Channel, ChannelControl] = {}
        self.ready = asyncio.Event()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        if value is None:  # a tombstone: the key's state is gone
            for channel in Channel:
                if control_key(channel, None).encode() == key:
                    self.current.pop(channel, None)
            return
        try:
            record = decode_control(value, key)
        except InvalidRecord as exc:
            log.debug("channel-control: skipping a bad record (%s)", exc.reason)
            return
        if record.tenant is None:
            self.current[record.channel] = record

    async def follow(self, settings: Settings, stop: asyncio.Event, consumer: AIOKafkaConsumer) -> None:
        """Read the whole topic (every partition, from the start), then keep up until ``stop``."""
        topic = settings.topics.channel_control
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps) if tps else {}
        behind = {tp for tp in tps if ends[tp] > 0}
        if not behind:
            self.ready.set()
        while not stop.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        self.apply(record.key, record.value)
                # The position, not the last record: it moves past a transaction's marker and past
                # offsets the log cleaner emptied, where no record is returned (as in reconcile.py).
                for tp in list(behind):
                    if await consumer.position(tp) >= ends[tp]:
                        behind.discard(tp)
            except KafkaError as exc:  # the broker away: the view waits, the breakers keep counting
                event(log, logging.WARNING, "channel_control_read_failed", error=str(exc), action="retrying")
                await asyncio.sleep(1.0)
                continue
            if not behind:
                self.ready.set()


class Breakers:
    """One :class:`ChannelBreaker` per channel, the dispatcher's hands on them.

    :meth:`observe` is called on the send path with each gateway answer (cheap, never awaits);
    transitions go through a queue to :meth:`run`, which publishes their records in order, ticks the
    open circuits and sends the probes.
    """

    def __init__(
        self,
        config: BreakerConfig,
        client: GatewayClient,
        publish: Callable[[bytes, bytes], Awaitable[None]],
        *,
        clock: Callable[[], float],
        metrics: DispatcherMetrics,
        view: ControlView | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.publish = publish
        self.clock = clock
        self.metrics = metrics
        self.view = view or ControlView()
        self.circuits = {ch: ChannelBreaker(ch, config) for ch in Channel}
        self.last_body: dict[Channel, dict[str, Any]] = {}
        self._changes: asyncio.Queue[Transition] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._probes: dict[Channel, asyncio.Task[None]] = {}
        #: Transitions seen and records published, for tests.
        self.transitions: list[Transition] = []
        self.published: list[ChannelControl] = []
        for ch in Channel:
            metrics.breaker_state.labels(ch.value).set(0)

    # ------------------------------------------------------------------------------ send path
    def observe(
        self, channel: Channel, result: SendResult | StatusResult, body: dict[str, Any] | None = None
    ) -> None:
        """One answer on ``channel``: a send's (``body``: its request, kept for probes) or a status
        look-up's."""
        if body is not None:
            self.last_body[channel] = body
        t = self.circuits[channel].record(classify(result), self.clock())
        if t is not None:
            self._changed(t)

    def _changed(self, t: Transition) -> None:
        self.transitions.append(t)
        self.metrics.breaker_transitions.labels(t.channel.value, t.cause.value).inc()
        self.metrics.breaker_state.labels(t.channel.value).set(STATE_VALUE[t.after])
        ch = t.channel.value
        match t.cause:
            case Cause.TRIPPED:
                event(
                    log,
                    logging.WARNING,
                    "breaker_tripped",
                    channel=ch,
                    failures=t.failures,
                    calls=t.calls,
                    ratio=round(t.ratio, 3),
                    threshold=self.config.failure_ratio,
                    window_s=self.config.window_seconds,
                    until=_text(t.until),
                )
            case Cause.PROBE_DUE:
                event(log, logging.INFO, "breaker_half_open", channel=ch, action="probing the gateway")
            case Cause.PROBE_FAILED:
                event(log, logging.WARNING, "breaker_probe_failed", channel=ch, until=_text(t.until))
            case Cause.PROBE_SUCCEEDED:
                event(log, logging.WARNING, "breaker_recovered", channel=ch, action="channel open again")
        self._changes.put_nowait(t)
        self._wake.set()

    # ------------------------------------------------------------------------------ background
    async def run(self, stop: asyncio.Event) -> None:
        """Publish transitions, tick open circuits, send probes; until ``stop``."""

        async def relay() -> None:
            await stop.wait()
            self._wake.set()

        relay_task = asyncio.create_task(relay())
        try:
            while not stop.is_set():
                now = self.clock()
                for breaker in self.circuits.values():
                    if (t := breaker.tick(now)) is not None:
                        self._changed(t)
                while not self._changes.empty():
                    await self._publish(self._changes.get_nowait())
                dues = [d for b in self.circuits.values() if (d := b.next_due()) is not None]
                wait = min([1.0, *(max(0.0, d - now) for d in dues)])
                if self._changes.empty():
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            relay_task.cancel()
            for task in self._probes.values():
                task.cancel()
            for task in list(self._probes.values()):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _publish(self, t: Transition) -> None:
        if t.after is Circuit.HALF_OPEN:
            self._start_probe(t.channel)
            return
        if not self.view.ready.is_set():  # decide on the topic's state, not on a half-read one
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.view.ready.wait(), VIEW_WAIT_S)
        current = self.view.current.get(t.channel)
        record = record_for(t, current)
        if record is None:
            event(
                log,
                logging.INFO,
                "breaker_nothing_to_publish",
                channel=t.channel.value,
                current=current.state.value if current else None,
                reason=current.reason if current else None,
            )
            return
        await self.publish(record.key.encode(), encode(record))
        self.view.current[t.channel] = record  # our own write, before the topic shows it
        self.published.append(record)
        self.metrics.channel_control.labels(t.channel.value, record.state.value).inc()
        event(
            log,
            logging.INFO,
            "breaker_published",
            channel=t.channel.value,
            state=record.state.value,
            until=record.until.strftime("%Y-%m-%dT%H:%M:%SZ") if record.until else None,
        )

    def _start_probe(self, channel: Channel) -> None:
        running = self._probes.get(channel)
        if running is None or running.done():
            self._probes[channel] = asyncio.create_task(self.probe(channel), name=f"probe {channel}")

    async def probe(self, channel: Channel) -> None:
        """Probe ``channel`` until an answer decides (a 429 decides nothing: wait and try again)."""
        breaker = self.circuits[channel]
        while breaker.state is Circuit.HALF_OPEN:
            body = dict(self.last_body.get(channel) or {})
            body["simulation"] = True
            body["messageId"] = f"{PROBE_ID}:{channel.value}:{int(self.clock() * 1000)}"
            try:
                with self.metrics.gateway_seconds.labels("probe", channel.value).time():
                    result = await self.client.send(channel, body)
            except Exception as exc:  # the probe's task must outlive any one probe
                # A probe that raised decides nothing. Let it end the task and the breaker stayed
                # HALF_OPEN with no probe, silently, until a real send came (once the CLOSED's until
                # had passed); instead say why and probe again, as after a 429.
                event(log, logging.WARNING, "breaker_probe_error", channel=channel.value, error=repr(exc))
                self.metrics.breaker_probes.labels(channel.value, _probe_label(None)).inc()
                await asyncio.sleep(PROBE_RETRY_S)
                continue
            outcome = classify(result)
            self.metrics.breaker_probes.labels(channel.value, _probe_label(outcome)).inc()
            if breaker.state is not Circuit.HALF_OPEN:  # a real send decided meanwhile
                return
            t = breaker.record(outcome, self.clock())
            if t is not None:
                self._changed(t)
                return
            wait = result.retry_after if isinstance(result, RateLimited) and result.retry_after else 0.0
            await asyncio.sleep(max(wait, PROBE_RETRY_S))


def _probe_label(outcome: CallOutcome | None) -> str:
    return {CallOutcome.SUCCESS: "ok", CallOutcome.FAILURE: "failed", None: "undecided"}[outcome]


def _text(seconds: float | None) -> str:
    return "never" if seconds is None else from_ms(int(seconds * 1000)).strftime("%Y-%m-%dT%H:%M:%SZ")
