"""Poller: for gateways without webhooks, poll the status endpoint of in-flight attempts.

It learns the attempts in flight from ``delivery-status`` itself: every ACCEPTED the dispatcher
publishes (``attempt`` and ``channel`` set) starts one, polled as ``<messageId>:<attempt>`` (the
customer message id the dispatcher sent). Each poll that shows progress (or a failure) is published
as a DeliveryStatus; a status seen on the topic from elsewhere (a webhook) counts as progress too, so
nothing is published twice by the two ingest paths together.

An attempt ends, and polling stops, at a failure status (ERROR, EXPIRED, REJECTED), at READ, at
DELIVERED unless ``until_read`` (SMS has no read receipts, and DELIVERED is the default
``successStatus``), or after ``max_age`` seconds. Polls back off exponentially per attempt, from
``min_interval`` to ``max_interval`` with 10% jitter, and honour the gateway's wait on 429 (the
longer of ``Retry-After`` and the body's ``retryAfter``; the client also paces itself by
``X-RateLimit-Remaining``).

What the gateway answers is mapped by :mod:`stream_app.gateway.shapes` (CONTRACT.md v1.1):
``RECEIVED`` is published as SENT with ``gatewayStatus: RECEIVED``; ``UNKNOWN``, an unmapped
``statusCode`` or an undocumented word publishes nothing and is counted in metrics, logged once
per kind (never once per poll).

No state of its own: at start it reads ``delivery-status`` from ``max_age`` ago (by timestamp), so a
restart rebuilds the in-flight set from the topic. No consumer group either: every poller instance
reads every partition, so run one (polls are idempotent, a second one only doubles the calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.config import Settings
from stream_app.contracts import (
    FAILURE_STATUSES,
    PROGRESS_RANK,
    Channel,
    DeliveryStatus,
    InvalidRecord,
    decode_status,
    encode,
)
from stream_app.gateway.client import Found, GatewayClient, NotFound, Permanent, RateLimited, StatusResult
from stream_app.gateway.errors import GatewayAuthError, UnknownGatewayShape
from stream_app.gateway.kafka import start_client, started_producer
from stream_app.gateway.metrics import POLL_FAILED, POLL_RETRYABLE, PollerMetrics, poll_result
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.shapes import Ignored, Mapped, OnceLog, normalise
from stream_app.kafka.clients import stop_client
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.topics import require_topics
from stream_app.logs import event
from stream_app.metrics_http import serving

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollOptions:
    #: First poll this long after the ACCEPTED (1 s: DLRs of SMS typically arrive within seconds).
    min_interval: float = 1.0
    #: Cap of the doubling (300 s: a promotional WhatsApp may sit in SENT for hours; 5 min is enough).
    max_interval: float = 300.0
    #: Give up on an attempt after this long (default: the processor's max flow time, 72 h).
    max_age: float = 72 * 3600.0
    #: Keep polling after DELIVERED until READ.
    until_read: bool = False
    #: Status look-ups in flight at once.
    concurrency: int = 16


@dataclass(slots=True)
class InFlight:
    message_id: str
    attempt: int
    channel: Channel
    started: float  # clock seconds
    rank: int = 1  # progress reached (ACCEPTED)
    interval: float = 1.0
    due: float = 0.0
    provider_message_id: str | None = None
    ended: bool = False

    @property
    def command_id(self) -> str:
        return f"{self.message_id}:{self.attempt}"


@dataclass(slots=True)
class Tracker:
    """The in-flight attempts and their poll schedule (a heap of ``(due, commandId)``)."""

    options: PollOptions
    clock: Callable[[], float] = time.time
    attempts: dict[str, InFlight] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    heap: list[tuple[float, str]] = field(default_factory=list)

    def _ends(self, status: str) -> bool:
        if status in FAILURE_STATUSES or status == "READ":
            return True
        return status == "DELIVERED" and not self.options.until_read

    def observe(self, status: DeliveryStatus) -> None:
        """A status seen on ``delivery-status`` (ours, the dispatcher's or a webhook's)."""
        if status.attempt is None:
            return
        cid = f"{status.message_id}:{status.attempt}"
        if cid in self.ended:
            return
        name = status.status.value
        current = self.attempts.get(cid)
        if current is None:
            if self._ends(name):
                self.ended[cid] = self.clock()
                return
            now = self.clock()
            current = InFlight(
                status.message_id,
                status.attempt,
                status.channel,
                started=now,
                interval=self.options.min_interval,
                due=now + self.options.min_interval,
                provider_message_id=status.provider_message_id,
            )
            self.attempts[cid] = current
            heapq.heappush(self.heap, (current.due, cid))
        current.rank = max(current.rank, PROGRESS_RANK.get(name, 0))
        if self._ends(name):
            self.finish(cid)

    def finish(self, cid: str) -> None:
        item = self.attempts.pop(cid, None)
        if item is not None:
            item.ended = True
        self.ended[cid] = self.clock()

    def due(self, limit: int) -> list[InFlight]:
        now = self.clock()
        out: list[InFlight] = []
        while self.heap and self.heap[0][0] <= now and len(out) < limit:
            at, cid = heapq.heappop(self.heap)
            item = self.attempts.get(cid)
            if item is None or item.due != at:
                continue  # ended or rescheduled: a ghost entry
            if now - item.started > self.options.max_age:
                log.info("poller: giving up on %s after %.0f s", cid, now - item.started)
                self.finish(cid)
                continue
            out.append(item)
        return out

    def reschedule(self, item: InFlight, at_least: float = 0.0) -> None:
        if item.ended:
            return
        item.interval = min(self.options.max_interval, item.interval * 2)
        wait = max(at_least, item.interval * random.uniform(0.9, 1.1))
        item.due = self.clock() + wait
        heapq.heappush(self.heap, (item.due, item.command_id))

    def forget_ended(self, older_than: float) -> None:
        """Drop the memory of ended attempts older than ``older_than`` (clock seconds)."""
        for cid in [c for c, t in self.ended.items() if t < older_than]:
            del self.ended[cid]


class Poller:
    def __init__(
        self,
        settings: Settings,
        client: GatewayClient,
        producer: AIOKafkaProducer,
        tracker: Tracker,
        metrics: PollerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.producer = producer
        self.tracker = tracker
        self.metrics = metrics or PollerMetrics()
        self.polls = 0
        self.published = 0
        self._once = OnceLog(log)

    async def poll_one(self, item: InFlight) -> None:
        channel = item.channel.value
        with self.metrics.gateway_seconds.labels("status", channel).time():
            result: StatusResult = await self.client.status(item.command_id, item.channel)
        self.polls += 1
        outcome = poll_result(result)
        self.metrics.polls.labels(channel, outcome).inc()
        if outcome in (POLL_RETRYABLE, POLL_FAILED):
            self.metrics.errors.labels("gateway").inc()
        match result:
            case Found(word, code, reasons, occurred_at, provider_id):
                said = self._normalise(word, code)
                if said is not None:
                    name = said.status.value
                    if name in FAILURE_STATUSES or PROGRESS_RANK.get(name, 0) > item.rank:
                        await self._publish(item, said, code, reasons, occurred_at, provider_id)
                        self.tracker.observe(
                            DeliveryStatus(
                                message_id=item.message_id,
                                attempt=item.attempt,
                                channel=item.channel,
                                status=said.status,
                            )
                        )
                self.tracker.reschedule(item)
            case NotFound():
                self.tracker.reschedule(item)
            case RateLimited(retry_after):
                self.tracker.reschedule(item, retry_after or 0.0)
            case Permanent(code, reason) if code in (401, 403):
                raise GatewayAuthError(f"the gateway refused the API key (HTTP {code}: {reason})")
            case Permanent(code, reason):
                log.warning(
                    "poller: status of %s answered HTTP %d (%s); dropping it", item.command_id, code, reason
                )
                self.tracker.finish(item.command_id)
            case _:
                self.tracker.reschedule(item)

    def _normalise(self, word: str, code: int | None) -> Mapped | None:
        """The contract status of a polled answer; None (counted, logged once per kind) when there is
        none: a known word without one (UNKNOWN) or a word the gateway never documented. Polling goes
        on either way; a log line per poll would repeat every few seconds for hours."""
        try:
            said = normalise(status=word, status_code=code)
        except UnknownGatewayShape as exc:
            self.metrics.errors.labels("unknown_status").inc()
            self._once.note(f"unknown {word}", f"poller: {exc.reason}")
            return None
        if isinstance(said, Ignored):
            self.metrics.ignored.labels(said.kind).inc()
            self._once.note(said.kind, f"poller: gateway status {said.kind} carries no delivery status")
            return None
        return said

    async def _publish(
        self,
        item: InFlight,
        said: Mapped,
        code: int | None,
        reasons: tuple[str, ...],
        occurred_at: str | None,
        provider_id: str,
    ) -> None:
        body = {
            "messageId": item.message_id,
            "attempt": item.attempt,
            "channel": item.channel,
            "status": said.status,
            "statusCode": code,
            "reasons": list(reasons),
            "gatewayStatus": said.gateway_status,
        }
        extra = {"providerMessageId": item.provider_message_id or provider_id, "occurredAt": occurred_at}
        try:
            record = DeliveryStatus.model_validate({**body, **extra})
        except ValueError:  # an unreadable date from the gateway: keep the status, drop the date
            record = DeliveryStatus.model_validate(body)
        await self.producer.send_and_wait(
            self.settings.topics.delivery_status, encode(record), key=item.message_id.encode()
        )
        self.published += 1
        self.metrics.statuses.labels(item.channel.value, record.status.value).inc()


async def _feed(consumer: AIOKafkaConsumer, tracker: Tracker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        batches = await consumer.getmany(timeout_ms=200, max_records=1000)
        for records in batches.values():
            for record in records:
                try:
                    tracker.observe(decode_status(record.value or b""))
                except InvalidRecord:
                    continue  # the processor dead-letters bad statuses; not the poller's job


async def run_poller(
    settings: Settings,
    gateway_settings: GatewaySettings,
    *,
    options: PollOptions | None = None,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    poller: list[Poller] | None = None,
) -> None:
    """Run the poller until ``stop`` is set; raises :class:`GatewayAuthError` on 401/403.

    ``/metrics`` and ``/healthz`` are served on ``gateway_settings.poller_metrics_port`` (0: not).
    """
    options = options or PollOptions(max_age=settings.max_flow_seconds)
    stop = stop or asyncio.Event()
    tracker = Tracker(options, clock)
    metrics = PollerMetrics()
    topic = settings.topics.delivery_status
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
    await start_client(consumer, settings)
    try:
        counts = await topic_partitions(consumer)
        # Before the producer exists: a status published to a missing topic would have the broker
        # auto-create it with its own partition count.
        require_topics(
            counts, settings.bootstrap_servers, [topic], together=[settings.topics.send_requests, topic]
        )
        tps = [TopicPartition(topic, p) for p in range(counts[topic])]
        consumer.assign(tps)
        since = int((clock() - options.max_age) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, since)))
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
        async with (
            started_producer(settings) as producer,
            GatewayClient.from_settings(gateway_settings) as client,
            serving(metrics.registry, gateway_settings.poller_metrics_port, healthy=metrics.healthy),
        ):
            runner = Poller(settings, client, producer, tracker, metrics)
            if poller is not None:
                poller.append(runner)
            feeder = asyncio.create_task(_feed(consumer, tracker, stop))
            if ready is not None:
                ready.set()
            event(
                log,
                logging.INFO,
                "poller_started",
                topic=topic,
                partitions=len(tps),
                gateway=gateway_settings.url,
                min_interval=options.min_interval,
                max_interval=options.max_interval,
                max_age=options.max_age,
                until_read=options.until_read,
            )
            try:
                await _poll_loop(runner, options, stop, feeder)
            finally:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
                event(log, logging.INFO, "poller_stopped", in_flight=len(tracker.attempts))
    finally:
        await stop_client(consumer)


async def _poll_loop(
    runner: Poller, options: PollOptions, stop: asyncio.Event, feeder: asyncio.Task[None]
) -> None:
    sem = asyncio.Semaphore(options.concurrency)
    tasks: set[asyncio.Task[None]] = set()
    failure: list[BaseException] = []
    last_sweep = time.monotonic()

    async def one(item: InFlight) -> None:
        async with sem:
            try:
                await runner.poll_one(item)
            except GatewayAuthError as exc:
                failure.append(exc)
                stop.set()
            except KafkaError as exc:  # the broker is away: poll again later, the change is still there
                runner.metrics.errors.labels("publish").inc()
                log.warning("poller: could not publish the status of %s (%s)", item.command_id, exc)
                runner.tracker.reschedule(item)

    metrics = runner.metrics
    while not stop.is_set():
        metrics.heartbeat.beat()
        metrics.in_flight.set(len(runner.tracker.attempts))
        if feeder.done():
            feeder.result()  # re-raise a consumer failure
        for item in runner.tracker.due(limit=options.concurrency * 4):
            task = asyncio.create_task(one(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if time.monotonic() - last_sweep > 600:  # forget ended attempts hourly-ish, bounded memory
            runner.tracker.forget_ended(runner.tracker.clock() - options.max_age)
            last_sweep = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)  # 100 ms tick: far finer than any poll interval
    if tasks:
        await asyncio.wait(set(tasks), timeout=10)
    for task in tasks:
        task.cancel()
    if failure:
        raise failure[0]
