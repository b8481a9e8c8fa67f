"""The dispatcher: ``retry-commands`` -> gateway sends -> ACCEPTED/REJECTED on ``delivery-status``.

Per command (record of ``retry-commands``):

1. Decode it; an invalid record goes to ``dead-letters`` with Connect headers, and the loop goes on.
2. Look its commandId up in the :class:`~stream_app.gateway.sentlog.SentLog` of its partition. DONE: a
   repeat from the processor, dropped. RESULT: publish the recorded status again. SENDING: a previous
   owner crashed or gave the partition up around the call, so ask the gateway's status endpoint
   whether it has the message before anything else (found: ACCEPTED; not found: send).
3. Record SENDING (acknowledged on the sent-log topic), call the gateway (per-channel concurrency and
   rate limits), record RESULT, publish the status, record DONE.
4. 429, 5xx, timeouts and resets are retried with exponential backoff and full jitter, at least the
   ``Retry-After`` the gateway asked for. After an answer that may have been lost (a timeout, a reset,
   a 5xx) the status endpoint is asked before the next send, so a lost answer is never a second send.
5. A command that cannot be sent before its ``notAfter`` becomes REJECTED with reason
   ``NOT_SENT_BEFORE_NOT_AFTER``: never a silent drop.

Offsets are committed by hand, per partition, up to the lowest offset still in flight, so a crash
re-reads only unfinished commands and the sent-log makes those safe. 401/403 from the gateway stop
the dispatcher with a one-line error: with a wrong API key every send would fail.

Channel outages: every send answer also goes to the channel's circuit breaker
(:mod:`stream_app.gateway.breaker`, :mod:`stream_app.gateway.control`), which publishes a
ChannelControl ``CLOSED`` with an ``until`` on ``channel-control`` when too many of a channel's calls
fail (5xx, timeouts, resets), probes the channel after ``until``, and publishes ``OPEN`` when a probe
succeeds. It never holds a send back itself: the processor stops issuing on a closed channel.

Rebalances (any number of dispatchers in the group ``<app-id>-dispatcher``): a newly assigned
partition's sent-log is restored from its changelog before any of its commands is handled; a
revoked partition takes no new command, its calls in flight finish (bounded by the HTTP timeout) and
their answers are recorded and published, its offsets are committed, and only then is it released.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from stream_app.config import Settings
from stream_app.contracts import (
    Channel,
    DeliveryStatus,
    InvalidRecord,
    RetryCommand,
    Status,
    decode_command,
    decode_status,
    encode,
    exactjson,
    from_ms,
    gateway_fallback_keys,
    to_ms,
)
from stream_app.contracts.headers import copied_headers, dead_letter_headers
from stream_app.gateway.client import (
    Accepted,
    Found,
    GatewayClient,
    NotFound,
    Permanent,
    RateLimited,
    Rejected,
    StatusResult,
    Transient,
    build_body,
)
from stream_app.gateway.control import Breakers, ControlView
from stream_app.gateway.errors import GatewayAuthError
from stream_app.gateway.kafka import start_client, started_producer
from stream_app.gateway.metrics import DispatcherMetrics, send_result
from stream_app.gateway.reconcile import reconcile_results
from stream_app.gateway.sentlog import PartitionLog, SendState, SentLog, restore
from stream_app.gateway.settings import GatewaySettings
from stream_app.kafka import install_fixes
from stream_app.kafka.clients import stop_client
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.outage import outage_filter
from stream_app.kafka.topics import require_topics
from stream_app.logs import event as log_event
from stream_app.metrics_http import serving

log = logging.getLogger(__name__)

NOT_SENT_BEFORE_NOT_AFTER = "NOT_SENT_BEFORE_NOT_AFTER"
#: A command whose content would make the gateway run its own fallback chain (UC-005's fallbackRcs /
#: fallbackSms): never sent, since our chain already has those steps and the person would get two.
GATEWAY_FALLBACK_REFUSED = "GATEWAY_FALLBACK_REFUSED"
#: A send whose answer was lost and whose status the gateway would not tell before notAfter.
SEND_OUTCOME_UNKNOWN = "SEND_OUTCOME_UNKNOWN"
#: A command whose content cannot be written as JSON (an integer beyond 64 bits: pydantic keeps it,
#: orjson refuses it). No call can ever carry it, so it is REJECTED without one (see _send).
CONTENT_NOT_JSON = "CONTENT_NOT_JSON"
#: How often offsets are committed while commands complete (1 s: a crash re-reads at most about
#: one second of finished commands, which the sent-log then drops).
COMMIT_INTERVAL = 1.0
#: Bound on waiting for in-flight sends at shutdown; what is left is re-read after a restart.
SHUTDOWN_GRACE = 10.0
#: Beyond the HTTP timeout, how long a revoke waits for a partition's calls in flight to record their
#: answers (two acknowledged sent-log writes and one status publication: well under a second on a
#: healthy broker; 5 s leaves room for a slow one).
REVOKE_MARGIN_S = 5.0
#: DONE entries older than the dedup window are deleted this often (seconds).
PRUNE_EVERY_S = 600.0


class _Stopped(Exception):
    """The dispatcher is stopping; the command stays uncommitted and is re-read after a restart."""


@dataclass(slots=True)
class _Limiter:
    """Per-channel concurrency (a semaphore) and rate (evenly spaced start times)."""

    sem: asyncio.Semaphore
    interval: float
    next_at: float = 0.0

    async def acquire(self) -> None:
        await self.sem.acquire()
        if self.interval > 0:
            now = time.monotonic()
            slot = max(now, self.next_at)
            self.next_at = slot + self.interval
            if slot > now:
                await asyncio.sleep(slot - now)

    def release(self) -> None:
        self.sem.release()


class Dispatcher:
    """Commands in, sends out, statuses back. Transport-agnostic apart from the producer it is given."""

    def __init__(
        self,
        settings: Settings,
        gateway: GatewaySettings,
        client: GatewayClient,
        producer: AIOKafkaProducer,
        sent: SentLog | None = None,
        *,
        stop: asyncio.Event,
        clock: Callable[[], float] = time.time,
        metrics: DispatcherMetrics | None = None,
        breakers: Breakers | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.client = client
        self.producer = producer
        self.sent = sent or SentLog(self._write_sentlog)
        self.stop = stop
        self.clock = clock
        self.topics = settings.topics
        self.limiters = {
            ch: _Limiter(
                asyncio.Semaphore(int(gateway.concurrency[ch])),
                1.0 / rate if (rate := gateway.rate[ch]) else 0.0,
            )
            for ch in Channel
        }
        self.active: dict[str, asyncio.Task[None]] = {}
        #: Partitions being given up: no new gateway call for their commands (see _halted).
        self.releasing: set[int] = set()
        self._halts: dict[int, asyncio.Event] = {}
        self.fatal: BaseException | None = None
        self.counts: Counter[str] = Counter()
        self.metrics = metrics or DispatcherMetrics()
        #: The channels' circuit breakers (None: not watched, as in unit tests of the send path).
        self.breakers = breakers

    # ------------------------------------------------------------------------------------ entry
    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Process one command record to its end. False when it was abandoned (stopping)."""
        self.metrics.commands_in.inc()
        try:
            command = decode_command(record.value or b"")
            expected = f"{command.message_id}:{command.attempt}"
            if command.command_id != expected:
                raise InvalidRecord(f"commandId: must be '<messageId>:<attempt>' ({expected!r})")
        except InvalidRecord as exc:
            await self._dead_letter(record, exc.reason)
            return True
        cid = command.command_id
        running = self.active.get(cid)
        if running is not None:  # the same command twice in flight: the repeat waits for the first
            await asyncio.wait({running})
            self.counts["repeats"] += 1
            self.metrics.sentlog_skips.labels("in_flight").inc()
            return not running.cancelled() and running.exception() is None
        task = asyncio.current_task()
        assert task is not None
        self.active[cid] = task
        try:
            await self._dispatch(command, record)
            return True
        except _Stopped:
            return False
        finally:
            self.active.pop(cid, None)

    async def _dispatch(self, command: RetryCommand, record: ConsumerRecord[bytes, bytes]) -> None:
        cid, p = command.command_id, record.partition
        if not self.sent.owns(p):  # given up meanwhile: the next owner handles it, with its sent-log
            raise _Stopped
        entry = self.sent.get(p, cid)
        headers = copied_headers(record.headers)
        if entry is not None and entry.state is SendState.DONE:
            self.counts["repeats"] += 1
            self.metrics.sentlog_skips.labels("done").inc()
            log.debug("command %s already sent: repeat dropped", cid)
            return
        if entry is not None and entry.state is SendState.RESULT:
            self.metrics.sentlog_skips.labels("result").inc()
            await self._publish(p, command, entry.payload, headers, decode_status(entry.payload).status)
            return
        maybe_sent = entry is not None  # SENDING: the previous owner may have sent it
        status = await self._send(p, command, maybe_sent)
        payload = encode(status)
        await self.sent.put(p, cid, SendState.RESULT, self._now_ms(), payload)
        await self._publish(p, command, payload, headers, status.status)

    async def publish_control(self, key: bytes, value: bytes) -> None:
        """A breaker's ChannelControl record onto ``channel-control`` (dropped only when stopping)."""
        with contextlib.suppress(_Stopped):
            await self._produce(self.topics.channel_control, value, key, None)

    async def _write_sentlog(self, p: int, key: bytes, value: bytes | None) -> None:
        await self._produce(self.topics.sentlog, value, key, None, partition=p)

    async def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[tuple[str, bytes]] | None,
        *,
        partition: int | None = None,
    ) -> None:
        """Produce and await the acknowledgement, riding out a broker outage until stopping.

        The record is already safe (RESULT in the sent-log, or the input offset not committed), so a
        failed produce is retried with backoff rather than ending the dispatcher.
        """
        failures = 0
        while True:
            try:
                await self.producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)
                return
            except KafkaError as exc:
                failures += 1
                self.counts["produce_retries"] += 1
                self.metrics.produce_retries.inc()
                log.warning("producing to %s failed (%s); retrying", topic, exc)
                await self._pause(self._backoff(failures), None)

    async def _publish(
        self, p: int, command: RetryCommand, payload: bytes, headers: list[tuple[str, bytes]], status: Status
    ) -> None:
        await self._produce(
            self.topics.delivery_status, payload, command.message_id.encode(), headers or None
        )
        await self.sent.put(p, command.command_id, SendState.DONE, self._now_ms())
        self.counts["published"] += 1
        self.metrics.statuses.labels(command.channel.value, status.value).inc()

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], reason: str) -> None:
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        headers = dead_letter_headers(reason, record.topic, record.partition, record.offset, "InvalidRecord")
        await self._produce(self.topics.dead_letters, record.value, record.key, headers)
        self.counts["dead_letters"] += 1
        self.metrics.dead_letters.inc()

    # ------------------------------------------------------------------------------------ send
    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _status(
        self, command: RetryCommand, status: Status, *, reasons: list[str], provider_id: str | None = None
    ) -> DeliveryStatus:
        return DeliveryStatus(
            message_id=command.message_id,
            attempt=command.attempt,
            channel=command.channel,
            status=status,
            reasons=reasons,
            provider_message_id=provider_id,
            occurred_at=from_ms(self._now_ms()),
        )

    def _backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2**failures)] (AWS architecture blog)."""
        cap = min(self.gateway.backoff_max, self.gateway.backoff_base * 2 ** min(failures, 30))
        return random.uniform(0, cap)

    def halt(self, p: int) -> asyncio.Event:
        """Set when partition ``p`` is being given up (or the dispatcher stops)."""
        event = self._halts.get(p)
        if event is None:
            event = self._halts[p] = asyncio.Event()
            if self.stop.is_set() or p in self.releasing:
                event.set()
        return event

    def release(self, parts: set[int]) -> None:
        """Partitions ``parts`` take no new gateway call from now on; calls in flight finish."""
        self.releasing |= parts
        for p in parts:
            self.halt(p).set()

    def adopt(self, parts: set[int]) -> None:
        """Partitions ``parts`` (their sent-log restored) are dispatched again."""
        self.releasing -= parts
        for p in parts:
            self._halts.pop(p, None)

    def halt_all(self) -> None:
        for halted in self._halts.values():
            halted.set()

    def _halted(self, p: int) -> bool:
        return self.stop.is_set() or p in self.releasing

    async def _pause(self, seconds: float, deadline_ms: int | None, p: int | None = None) -> None:
        """Sleep ``seconds`` (not past the deadline); raise :class:`_Stopped` if stopping, or if
        partition ``p`` is being given up (its command is then re-read by the next owner)."""
        if deadline_ms is not None:
            seconds = min(seconds, max(0.0, (deadline_ms - self._now_ms()) / 1000))
        event = self.stop if p is None else self.halt(p)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        if self.stop.is_set() or (p is not None and self._halted(p)):
            raise _Stopped

    async def _ask_status(self, command: RetryCommand) -> StatusResult:
        with self.metrics.gateway_seconds.labels("status", command.channel.value).time():
            result = await self.client.status(command.command_id, command.channel)
        if self.breakers is not None:
            self.breakers.observe(command.channel, result)
        if isinstance(result, Permanent) and result.status in (401, 403):
            raise GatewayAuthError(
                f"the gateway refused the API key on the status endpoint (HTTP {result.status})"
            )
        return result

    async def _send(self, p: int, command: RetryCommand, maybe_sent: bool) -> DeliveryStatus:
        """Send ``command`` once, retrying what may be retried; the ACCEPTED/REJECTED status."""
        cid, channel = command.command_id, command.channel
        refused = gateway_fallback_keys(command.content)
        if refused:
            log.warning("command %s refused: its content holds %s", cid, ", ".join(refused))
            return self._status(
                command, Status.REJECTED, reasons=[f"{GATEWAY_FALLBACK_REFUSED}: {', '.join(refused)}"]
            )
        deadline = to_ms(command.not_after) if command.not_after is not None else None
        body = build_body(command)
        try:
            # Encoded here, before the intent is written, not in the call: a body that cannot be
            # encoded raised there after SENDING, so it stopped the dispatcher at every restart.
            # REJECTED (like GATEWAY_FALLBACK_REFUSED) rather than a dead letter: the processor then
            # moves the chain on at once instead of waiting out fallbackAfter for a step that can
            # never be sent, and the reason says why on delivery-status and in the outcome. The
            # client encodes it again for the call: a microsecond next to an HTTP round trip.
            exactjson.dumps(body)  # an integer beyond 64 bits in content too: it travels unchanged
        except orjson.JSONEncodeError as exc:
            log.warning("command %s refused: its content is not JSON (%s)", cid, exc)
            return self._status(command, Status.REJECTED, reasons=[f"{CONTENT_NOT_JSON}: {exc}"])
        failures = 0
        while True:
            if self._halted(p):
                raise _Stopped
            if maybe_sent:
                found = await self._ask_status(command)
                if isinstance(found, Found):
                    self.counts["resolved_by_status"] += 1
                    self.metrics.sentlog_skips.labels("status").inc()
                    provider_id = found.provider_message_id
                    return self._status(command, Status.ACCEPTED, reasons=[], provider_id=provider_id)
                if isinstance(found, NotFound):
                    maybe_sent = False
                elif deadline is not None and self._now_ms() >= deadline:
                    self.metrics.not_after.labels(channel.value).inc()
                    return self._status(
                        command, Status.REJECTED, reasons=[NOT_SENT_BEFORE_NOT_AFTER, SEND_OUTCOME_UNKNOWN]
                    )
                else:
                    failures += 1
                    wait = found.retry_after if isinstance(found, RateLimited) and found.retry_after else 0.0
                    await self._pause(max(wait, self._backoff(failures)), deadline, p)
                    continue
            if deadline is not None and self._now_ms() >= deadline:
                self.counts["not_after"] += 1
                self.metrics.not_after.labels(channel.value).inc()
                return self._status(command, Status.REJECTED, reasons=[NOT_SENT_BEFORE_NOT_AFTER])
            limiter = self.limiters[channel]
            await limiter.acquire()
            if deadline is not None and self._now_ms() >= deadline:  # the wait for a slot ran past it
                limiter.release()
                continue
            try:
                if self._halted(p):
                    raise _Stopped
                # The intent, acknowledged by the brokers before the call: whoever owns the
                # partition next knows this command may have reached the gateway.
                await self.sent.put(p, cid, SendState.SENDING, self._now_ms())
                if self._halted(p):  # given up while the intent was written: no call
                    raise _Stopped
                with self.metrics.gateway_seconds.labels("send", channel.value).time():
                    result = await self.client.send(channel, body)
            finally:
                limiter.release()
            self.counts["calls"] += 1
            self.metrics.sends.labels(channel.value, send_result(result)).inc()
            if self.breakers is not None:
                self.breakers.observe(channel, result, body)
            match result:
                case Accepted(provider_id, _parts):
                    self.counts["accepted"] += 1
                    return self._status(command, Status.ACCEPTED, reasons=[], provider_id=provider_id)
                case Rejected(reasons, _):
                    self.counts["rejected"] += 1
                    return self._status(command, Status.REJECTED, reasons=list(reasons))
                case Permanent(code, reason) if code in (401, 403):
                    raise GatewayAuthError(
                        f"the gateway refused the API key (HTTP {code}: {reason}); "
                        "check STREAM_APP_GATEWAY_API_KEY"
                    )
                case Permanent(code, reason):
                    self.counts["rejected"] += 1
                    return self._status(command, Status.REJECTED, reasons=[f"HTTP_{code}: {reason}"])
                case RateLimited(retry_after):
                    failures += 1
                    self.counts["rate_limited"] += 1
                    await self._pause(max(retry_after or 0.0, self._backoff(failures)), deadline, p)
                case Transient(error, maybe):
                    failures += 1
                    self.counts["transient"] += 1
                    maybe_sent = maybe_sent or maybe
                    log.info("send of %s failed (%s); retrying", cid, error)
                    await self._pause(self._backoff(failures), deadline, p)


class _Offsets:
    """Per-partition offsets in flight; the committable offset is the lowest one not finished."""

    def __init__(self) -> None:
        self.pending: dict[TopicPartition, Counter[int]] = {}
        self.next: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        self.pending.setdefault(tp, Counter())[offset] += 1
        self.next[tp] = max(self.next.get(tp, 0), offset + 1)

    def finish(self, tp: TopicPartition, offset: int) -> None:
        pending = self.pending.get(tp)
        if pending is None or offset not in pending:
            return
        pending[offset] -= 1
        if pending[offset] <= 0:
            del pending[offset]

    def committable(self, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        out = {}
        for tp in assigned:
            if tp not in self.next:
                continue
            pending = self.pending.get(tp)
            offset = min(pending) if pending else self.next[tp]
            if self.committed.get(tp) != offset:
                out[tp] = offset
        return out

    def forget(self, tps: set[TopicPartition]) -> None:
        for tp in tps:
            self.pending.pop(tp, None)
            self.next.pop(tp, None)
            self.committed.pop(tp, None)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: _Loop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.loop.release(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.loop.adopt(set(assigned))


class _Loop:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        dispatcher: Dispatcher,
        max_in_flight: int,
        *,
        restorer: AIOKafkaConsumer | None = None,
        revoke_wait_s: float = 15.0,
    ) -> None:
        self.consumer = consumer
        self.dispatcher = dispatcher
        self.restorer = restorer
        self.revoke_wait_s = revoke_wait_s
        self.offsets = _Offsets()
        self.tasks: set[asyncio.Task[None]] = set()
        self.by_partition: dict[int, set[asyncio.Task[None]]] = {}
        #: Sent-logs of partitions revoked in this rebalance: kept in case they come straight back.
        self.parked: dict[int, PartitionLog] = {}
        self.max_in_flight = max_in_flight
        self.paused = False

    async def commit(self, tps: set[TopicPartition] | None = None) -> None:
        assigned = tps if tps is not None else set(self.consumer.assignment())
        offsets = self.offsets.committable(assigned)
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # a commit during a rebalance fails; the next one carries it
            log.warning("offset commit failed (%s); will retry", exc)
            return
        self.offsets.committed.update(offsets)

    async def release(self, revoked: set[TopicPartition]) -> None:
        """Give partitions up: no new call, calls in flight record their answers, offsets committed.

        Called by aiokafka before the group reassigns them (the group waits for it, within the
        rebalance timeout). A call still running after ``revoke_wait_s`` (past the HTTP timeout, so
        only when the broker is too slow to take the answers) is cancelled; its command is then in
        doubt for the next owner, which asks the gateway's status endpoint instead of sending.
        """
        disp = self.dispatcher
        parts = {tp.partition for tp in revoked}
        disp.release(parts)
        running = {t for p in parts for t in self.by_partition.get(p, ())}
        if running:
            _, late = await asyncio.wait(running, timeout=self.revoke_wait_s)
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "revoke: cancelled %d calls still running after %.0f s", len(late), self.revoke_wait_s
                )
                await asyncio.wait(late)
        await self.commit(revoked)
        self.offsets.forget(revoked)
        for p in parts:
            part = disp.sent.partitions.pop(p, None)
            if part is not None:
                self.parked[p] = part
        if parts:  # aiokafka revokes an empty set on a first join: nothing to say then
            log.info(
                "dispatcher released partitions %s (%d calls finished first)", _names(parts), len(running)
            )

    async def adopt(self, assigned: set[TopicPartition]) -> None:
        """Restore the sent-log of each newly owned partition before any of its commands runs."""
        disp = self.dispatcher
        parts = {tp.partition for tp in assigned}
        # A partition revoked and assigned back in the same rebalance had no other owner meanwhile.
        kept = {p: self.parked.pop(p) for p in parts if p in self.parked}
        self.parked.clear()
        fresh = sorted(parts - kept.keys())
        restored: dict[int, PartitionLog] = {}
        if fresh and self.restorer is not None:
            restored = await restore(self.restorer, disp.topics.sentlog, fresh)
        elif fresh:
            restored = {p: PartitionLog() for p in fresh}
        if restored:
            # Before the partitions count as owned: their commands wait until it is done.
            await reconcile_results(disp.settings, disp.sent.detached(restored))
        disp.sent.partitions.update(kept)
        disp.sent.partitions.update(restored)
        disp.adopt(parts)
        log.info("dispatcher assigned partitions %s (%d restored)", _names(parts), len(restored))

    def _spawn(self, record: ConsumerRecord[bytes, bytes]) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self.offsets.start(tp, record.offset)
        p = record.partition

        async def run() -> None:
            try:
                done = await self.dispatcher.handle(record)
            except GatewayAuthError as exc:
                self.dispatcher.fatal = exc
                self.dispatcher.stop.set()
                return
            except asyncio.CancelledError:
                return  # given up by a revoke or a stop: the offset stays uncommitted
            except Exception as exc:  # a bug must not kill the loop silently, nor commit past it
                log.exception("command at %s[%d]@%d failed", record.topic, record.partition, record.offset)
                self.dispatcher.fatal = exc
                self.dispatcher.stop.set()
                return
            if done:
                self.offsets.finish(tp, record.offset)

        task = asyncio.create_task(run())
        self.tasks.add(task)
        group = self.by_partition.setdefault(p, set())
        group.add(task)

        def forget(t: asyncio.Task[None]) -> None:
            self.tasks.discard(t)
            group.discard(t)

        task.add_done_callback(forget)

    def _flow_control(self) -> None:
        assigned = list(self.consumer.assignment())
        if not self.paused and len(self.tasks) >= self.max_in_flight:
            self.consumer.pause(*assigned)
            self.paused = True
        # Resume once half have finished; at least one must have (max_in_flight 1: 1 // 2 is 0,
        # which no count of tasks is below, so the consumer stayed paused for good).
        elif self.paused and len(self.tasks) < max(1, self.max_in_flight // 2):
            self.consumer.resume(*assigned)
            self.paused = False

    async def run(self, stop: asyncio.Event) -> None:
        last_commit = last_prune = time.monotonic()
        disp = self.dispatcher
        metrics = disp.metrics
        outage = outage_filter()
        while not stop.is_set():
            metrics.heartbeat.beat()
            outage.tick()
            self._flow_control()
            batches = await self.consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batches.items():
                if not records:
                    continue
                p = tp.partition
                if not disp.sent.owns(p) or p in disp.releasing:
                    # Not restored yet (fetched while its assignment callback runs) or being given
                    # up: not handled here. One still ours is read again from here once restored.
                    if not disp.sent.owns(p) and p not in disp.releasing and tp in self.consumer.assignment():
                        self.consumer.seek(tp, records[0].offset)
                    continue
                for record in records:
                    self._spawn(record)
                hw = self.consumer.highwater(tp)
                if hw is not None:
                    metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                        max(0, hw - records[-1].offset - 1)
                    )
            metrics.in_flight.set(len(self.tasks))
            if time.monotonic() - last_commit >= COMMIT_INTERVAL or not batches:
                await self.commit()
                last_commit = time.monotonic()
            if time.monotonic() - last_prune >= PRUNE_EVERY_S:
                last_prune = time.monotonic()
                horizon = disp._now_ms() - int(disp.settings.dedup_seconds * 1000)
                pruned = await disp.sent.prune(horizon)
                if pruned:
                    log.info("sent-log: forgot %d commands older than the dedup window", pruned)
        disp.halt_all()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=SHUTDOWN_GRACE)
        for task in list(self.tasks):
            task.cancel()
        await self.commit()


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Wait for the side tasks (they end at ``stop``), at most a few seconds."""
    _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    """A side task that failed says so at once (the dispatcher goes on sending without it)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log_event(log, logging.ERROR, "side_task_failed", task=task.get_name(), error=repr(exc))


def _names(parts: set[int]) -> str:
    return ",".join(map(str, sorted(parts))) or "none"


async def run_dispatcher(
    settings: Settings,
    gateway_settings: GatewaySettings,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    dispatcher: list[Dispatcher] | None = None,
) -> None:
    """Run the dispatcher until ``stop`` is set; raises :class:`GatewayAuthError` on 401/403.

    ``dispatcher``, when given, receives the :class:`Dispatcher` (its ``counts`` are for tests).
    ``/metrics`` and ``/healthz`` are served on ``gateway_settings.dispatcher_metrics_port`` (0: not).
    """
    stop = stop or asyncio.Event()
    install_fixes()  # a coordinator's group-level offset error is not "nothing committed"
    metrics = DispatcherMetrics()
    t = settings.topics
    restorer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
    await start_client(restorer, settings)
    try:
        # It writes statuses and dead letters, and its sent-log partition p belongs to command partition p.
        require_topics(
            await topic_partitions(restorer),
            settings.bootstrap_servers,
            [t.delivery_status, t.dead_letters, t.channel_control],
            together=[t.retry_commands, t.sentlog],
        )
        # The endpoint comes up once the broker answered: an unreachable broker is the news then,
        # not a metrics port.
        async with (
            started_producer(settings) as producer,
            GatewayClient.from_settings(gateway_settings) as client,
            serving(metrics.registry, gateway_settings.dispatcher_metrics_port, healthy=metrics.healthy),
        ):
            disp = Dispatcher(
                settings, gateway_settings, client, producer, stop=stop, clock=clock, metrics=metrics
            )
            view = ControlView()
            disp.breakers = Breakers(
                gateway_settings.breaker,
                client,
                disp.publish_control,
                clock=clock,
                metrics=metrics,
                view=view,
            )
            if dispatcher is not None:
                dispatcher.append(disp)
            revoke_wait = gateway_settings.timeout + REVOKE_MARGIN_S
            consumer = AIOKafkaConsumer(
                **settings.kafka_client_kwargs(),
                group_id=f"{settings.app_id}-dispatcher",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                # Under exactly_once the processor publishes commands in transactions: those of an open
                # or aborted one were never published and must not reach the gateway. Whatever this
                # process's own STREAM_APP_PROCESSING_GUARANTEE says (it is the processor's setting);
                # on a topic without transactions this reads exactly what read_uncommitted does.
                isolation_level="read_committed",
                # The group waits this long for members to give partitions up: past the revoke's own
                # bound, so a member finishing its calls is not thrown out of the group for it.
                rebalance_timeout_ms=int((revoke_wait + 30) * 1000),
            )
            loop = _Loop(
                consumer, disp, gateway_settings.max_in_flight, restorer=restorer, revoke_wait_s=revoke_wait
            )
            consumer.subscribe([t.retry_commands], listener=_Rebalance(loop))
            await start_client(consumer, settings, bounded=False)  # a group member: see start_client
            # The breakers read channel-control whole (no group: every dispatcher reads all of it).
            control_reader = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
            await start_client(control_reader, settings)
            side = [
                asyncio.create_task(view.follow(settings, stop, control_reader), name="channel-control"),
                asyncio.create_task(disp.breakers.run(stop), name="breakers"),
            ]
            for task in side:
                task.add_done_callback(_log_failure)
            try:
                if ready is not None:
                    ready.set()
                log.info("dispatcher consuming %s -> %s", t.retry_commands, gateway_settings.url)
                await loop.run(stop)
            finally:
                stop.set()
                await _finish(side)
                await stop_client(control_reader)
                await stop_client(consumer)
            if disp.fatal is not None:
                raise disp.fatal
    finally:
        await stop_client(restorer)
