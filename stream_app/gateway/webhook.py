"""Webhook receiver: the gateway's delivery callbacks -> DeliveryStatus records on ``delivery-status``.

Starlette + uvicorn, like the simulator: Starlette is a small, well-kept, ASGI-native toolkit (routing,
requests, responses and nothing else we would have to secure), uvicorn is its standard server, and
together they take 1,000 concurrent callbacks on one core without threads.

``POST /dlr`` (``--path``) takes one callback as JSON, in any of the gateway's documented shapes
(:class:`Callback`; the mapping to statuses is :mod:`stream_app.gateway.shapes`, CONTRACT.md v1.1):

* the status answer: ``{"customerMessageId", "channel", "deliveryStatus", "statusCode", "reasons",
  "messageId", "eventDate"}``;
* the webhook guide's events: ``{"eventType": "DELIVERY", "messageId", "customerMessageId",
  "destination", "statusCode": 3, "description", "channel", "timestamp"}``; ``{"eventType": "READ",
  "messageId", "destination", "channel", "timestamp"}`` (no ``customerMessageId``); ``INBOUND``;
* the older guide's ``{"messageId", "customerMessageId", "phoneNumber", "status", "timestamp",
  "channel": "sms", "error"}``;
* the SMS Universal API's ``{"channel": "SMS", "eventType": "DELIVERY", "messageId", "statusCode"
  (3 delivered, 6 not delivered), "statusDescription", "price", "numPart", "totalParts",
  "timestamp"}`` (one per part; placed through ``messageId`` like the READ event).

Rules:

* Authentication (``STREAM_APP_WEBHOOK_AUTH``): ``hmac`` (default with a secret) wants
  ``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed with ``STREAM_APP_WEBHOOK_SECRET``;
  ``token`` wants the secret in ``X-Webhook-Token`` or ``?token=`` (what a gateway that signs
  nothing can still send: it is part of the registered callback URL); ``none`` checks nothing (behind
  a proxy that authenticates). A refused call: 401, nothing published, nothing dead-lettered (an
  unauthenticated flood must not fill a topic).
* Bodies over 64 KiB: 413 (a callback is a few hundred bytes; the limit stops memory abuse). A body
  not wholly received within 10 s of its headers: 408 and the connection closed (a stalled or
  slow client must not hold a socket for ever; the gateway itself wants an answer within 5 s). A
  connection that does not complete a request's headers within 10 s is closed
  (:data:`~stream_app.gateway.serve.HEADER_TIMEOUT`).
* A body that is not one of the shapes (bad JSON, no status, a status word outside the gateway's
  vocabulary, an unknown ``eventType``, a bad channel or timestamp): 400 with a one-line reason, and
  the raw body goes to ``dead-letters`` with Connect headers (source topic ``webhook:<path>``,
  partition and offset -1) so nothing the gateway said is lost.
* A callback with no status for us (``UNKNOWN``, an unmapped ``statusCode``, an ``INBOUND`` reply):
  200, nothing published, counted by kind in ``stream_app_webhook_ignored`` and logged once per kind.
* ``customerMessageId`` is our commandId ``<messageId>:<attempt>`` (the dispatcher sends it so); it is
  split back into messageId and attempt. An id without a numeric ``:<attempt>`` suffix is taken whole
  as the messageId, without attempt (the processor then applies it to the latest attempt on the channel).
* A callback with only the gateway's ``messageId`` is resolved through
  :class:`~stream_app.gateway.providers.ProviderIndex`; not yet resolvable, it is kept durably and
  answered 202, then published when its attempt becomes known, or dead-lettered after
  ``STREAM_APP_ORPHAN_STATUS_SECONDS``. A repeat of a body already held is answered the same and
  not kept twice.
* The gateway's own word is kept in ``gatewayStatus``; the status is published whether or not its
  ACCEPTED has been seen: a DLR may beat the dispatcher's acknowledgement, and the processor orders them.
* 200 only after the broker acknowledged the record; 503 when it did not, so the gateway retries.
* ``GET /metrics`` (Prometheus, :class:`~stream_app.gateway.metrics.WebhookMetrics`) and
  ``GET /healthz`` are served by the same app on the same port: the receiver is already an HTTP
  server, and a second port would be one more thing to open and to keep apart. ``/healthz`` is 503
  once the broker has refused every record for STALL_SECONDS (an idle receiver is healthy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from stream_app.config import Settings
from stream_app.contracts import (
    FAILURE_STATUSES,
    MAX_STEPS,
    DeliveryStatus,
    InvalidRecord,
    Status,
    decode_status,
    encode,
    reason_of,
)
from stream_app.contracts.headers import dead_letter_headers
from stream_app.contracts.models import Timestamp
from stream_app.gateway.errors import GatewayConfigError, UnknownGatewayShape
from stream_app.gateway.kafka import start_client, started_producer
from stream_app.gateway.metrics import WebhookMetrics
from stream_app.gateway.providers import Attempt, Held, ProviderIndex
from stream_app.gateway.serve import serve_app
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.shapes import MAX_STATUS_CODE, MIN_STATUS_CODE, Ignored, Mapped, OnceLog, normalise
from stream_app.gateway.signing import SIGNATURE_HEADER, verify
from stream_app.kafka.clients import stop_client
from stream_app.kafka.metadata import topic_partitions
from stream_app.kafka.topics import require_topics
from stream_app.metrics_http import render

log = logging.getLogger(__name__)

#: 64 KiB: a DLR is a few hundred bytes; anything near this is not a DLR.
MAX_BODY = 64 * 1024
#: Seconds a caller has to send the whole body once its headers are in. The gateway wants our answer
#: within 5 s of its call, so a body still arriving after 10 s is no gateway: a stalled or
#: deliberately slow client, which must not hold a socket and a handler for ever (uvicorn has no
#: body timeout of its own).
BODY_TIMEOUT = 10.0
DEFAULT_PATH = "/dlr"
TOKEN_HEADER = "X-Webhook-Token"
TOKEN_QUERY = "token"
#: Held callbacks at most; beyond, 503 (the gateway retries) rather than an unbounded disk.
MAX_HELD = 10_000
#: How often held callbacks are tried against the index (and aged out).
RESOLVE_INTERVAL = 0.2
#: How often the index forgets pairs older than its horizon.
PRUNE_INTERVAL = 3600.0


class Callback(BaseModel):
    """One gateway callback, in any documented shape: every field optional, unknown ones ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    event_type: str | None = Field(default=None, alias="eventType", max_length=32)
    customer_message_id: str | None = Field(
        default=None, alias="customerMessageId", min_length=1, max_length=255
    )
    #: The gateway's own id of the message (``messageId`` in every callback shape).
    provider_message_id: str | None = Field(default=None, alias="messageId", min_length=1, max_length=255)
    channel: str | None = None
    delivery_status: str | None = Field(default=None, alias="deliveryStatus", max_length=32)
    status: str | None = Field(default=None, max_length=32)
    status_code: int | None = Field(default=None, alias="statusCode", ge=MIN_STATUS_CODE, le=MAX_STATUS_CODE)
    reasons: list[str] = Field(default_factory=list)
    error: str | None = None
    description: str | None = None
    #: The SMS Universal API's name for ``description`` (its callback: ``statusCode`` 3 or 6).
    status_description: str | None = Field(default=None, alias="statusDescription")
    timestamp: Timestamp | None = None
    event_date: Timestamp | None = Field(default=None, alias="eventDate")
    read_date: Timestamp | None = Field(default=None, alias="readDate")
    delivery_date: Timestamp | None = Field(default=None, alias="deliveryDate")

    @field_validator("reasons", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    def occurred_at(self, mapped: Mapped) -> datetime | None:
        """The event's own time, else the date of what it reports: ``readDate`` dates a READ only
        (the status answer carries it beside ``deliveryDate``, and a DELIVERED may have one)."""
        read = self.read_date if mapped.status is Status.READ else None
        return self.timestamp or self.event_date or read or self.delivery_date

    def reasons_for(self, mapped: Mapped) -> list[str]:
        """``reasons``, else the older shape's ``error``, else a failure's ``description`` (or
        ``statusDescription``, the SMS Universal API's callback)."""
        if self.reasons:
            return self.reasons
        if self.error:
            return [self.error]
        text = self.description or self.status_description
        if text and mapped.status.value in FAILURE_STATUSES:
            return [text]
        return []


def split_customer_id(customer_id: str) -> tuple[str, int | None]:
    """``"txn-1:2"`` -> ``("txn-1", 2)``; an id without a numeric attempt suffix is taken whole."""
    head, sep, tail = customer_id.rpartition(":")
    if sep and head and tail.isdigit() and int(tail) < MAX_STEPS:
        return head, int(tail)
    return customer_id, None


def interpret(body: bytes) -> tuple[Callback, Mapped | Ignored]:
    """The callback of ``body`` and what it says; raises :class:`UnknownGatewayShape` (one line)."""
    try:
        cb = Callback.model_validate_json(body)
    except ValidationError as exc:
        raise UnknownGatewayShape(reason_of(exc)) from None
    word = cb.delivery_status if cb.delivery_status is not None else cb.status
    return cb, normalise(status=word, status_code=cb.status_code, event_type=cb.event_type)


def to_status(cb: Callback, mapped: Mapped, where: Attempt | None = None) -> DeliveryStatus:
    """The DeliveryStatus of a callback, placed by its customer id or by ``where`` (the index's answer).

    Raises :class:`UnknownGatewayShape` when a field breaks the contract or nothing names the message.
    """
    attempt: int | None
    channel: str | None
    if where is not None:
        message_id, attempt, channel = where.message_id, where.attempt, where.channel.value
    elif cb.customer_message_id is not None:
        message_id, attempt = split_customer_id(cb.customer_message_id)
        channel = cb.channel
    else:
        raise UnknownGatewayShape(
            "customerMessageId: required (or messageId: the gateway's id of a message the dispatcher sent)"
        )
    fields: dict[str, Any] = {} if channel is None else {"channel": channel}  # absent: "required"
    try:
        return DeliveryStatus.model_validate(
            {
                **fields,
                "messageId": message_id,
                "attempt": attempt,
                "status": mapped.status,
                "statusCode": cb.status_code,
                "reasons": cb.reasons_for(mapped),
                "providerMessageId": cb.provider_message_id,
                "occurredAt": cb.occurred_at(mapped),
                "gatewayStatus": mapped.gateway_status,
            }
        )
    except ValidationError as exc:
        raise UnknownGatewayShape(reason_of(exc)) from None


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


class WebhookReceiver:
    """The receiver's Starlette app over one producer (and the provider-id index, when given)."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        secret: bytes,
        path: str = DEFAULT_PATH,
        *,
        auth: str = "hmac",
        index: ProviderIndex | None = None,
        clock: Callable[[], float] = time.time,
        max_held: int = MAX_HELD,
        body_timeout: float = BODY_TIMEOUT,
    ):
        if auth != "none" and not secret:
            raise GatewayConfigError(
                "STREAM_APP_WEBHOOK_SECRET: required (the shared secret the gateway signs callbacks with)"
            )
        self.settings = settings
        self.producer = producer
        self.secret = secret
        self.path = path
        self.auth = auth
        self.index = index
        self.clock = clock
        self.max_held = max_held
        self.body_timeout = body_timeout
        self.published = 0
        self.refused = 0
        self.dead_letters = 0
        self.ignored = 0
        self.metrics = WebhookMetrics()
        self._once = OnceLog(log)
        self.app = Starlette(
            routes=[
                Route(path, self.receive, methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/metrics", self.metrics_page, methods=["GET"]),
            ]
        )

    async def healthz(self, request: Request) -> Response:
        if self.metrics.healthy():
            return _json(200, {"status": "ok"})
        return _json(503, {"status": "stalled", "error": "the broker has refused every record lately"})

    async def metrics_page(self, request: Request) -> Response:
        body, content_type = render(self.metrics.registry)
        return Response(body, headers={"Content-Type": content_type})

    async def _read(self, request: Request) -> bytes | None:
        """The body, or None when it is over the limit (read no further than the limit)."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return None
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.body_timeout):  # TimeoutError: the caller is too slow
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    return None
                chunks.append(chunk)
        return b"".join(chunks)

    def _refusal(self, request: Request, body: bytes) -> str | None:
        """Why the caller is not authenticated, or None when it is."""
        if self.auth == "none":
            return None
        if self.auth == "token":
            given = request.headers.get(TOKEN_HEADER) or request.query_params.get(TOKEN_QUERY)
            if not given:
                return f"missing {TOKEN_HEADER} header or ?{TOKEN_QUERY}= query"
            if not hmac.compare_digest(given.encode(), self.secret):
                return "token does not match"
            return None
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            return f"missing {SIGNATURE_HEADER} header"
        if not verify(self.secret, body, signature):
            return "signature does not match the body"
        return None

    async def receive(self, request: Request) -> Response:
        try:
            body = await self._read(request)
        except ClientDisconnect:
            self._count("disconnected")
            return _json(400, {"error": "client disconnected"})
        except TimeoutError:
            self.refused += 1
            self._count("too_slow")
            return _json(
                408,
                {"error": f"body not received within {self.body_timeout:g} s"},
                headers={"Connection": "close"},  # the rest of its body must not be read as a request
            )
        if body is None:
            self.refused += 1
            self._count("too_large")
            return _json(413, {"error": f"body over {MAX_BODY} bytes"})
        refusal = self._refusal(request, body)
        if refusal is not None:
            self.refused += 1
            self._count("bad_signature")
            return _json(401, {"error": refusal})
        try:
            cb, said = interpret(body)
            if isinstance(said, Ignored):
                return self._ignore(said.kind)
            where = None
            if (
                cb.customer_message_id is None
                and cb.provider_message_id is not None
                and self.index is not None
            ):
                where = self.index.lookup(cb.provider_message_id)
                if where is None:
                    return self._hold(cb.provider_message_id, body)
            status = to_status(cb, said, where)
        except UnknownGatewayShape as exc:
            return await self._dead_letter(body, exc.reason)
        try:
            await self._publish(status)
        except KafkaError as exc:
            log.warning("could not publish a DLR (%s); the gateway will retry", exc)
            self._unavailable()
            return _json(503, {"error": "could not publish; retry later"})
        self._count("accepted")
        return _json(200, {"status": "published"})

    async def _publish(self, status: DeliveryStatus) -> None:
        await self.producer.send_and_wait(
            self.settings.topics.delivery_status, encode(status), key=status.message_id.encode()
        )
        self.published += 1
        self.metrics.published()
        self.metrics.statuses.labels(status.channel.value, status.status.value).inc()

    def _ignore(self, kind: str) -> Response:
        self.ignored += 1
        self._count("ignored")
        self.metrics.ignored.labels(kind).inc()
        self._once.note(kind, f"webhook: a callback with {kind} carries no delivery status; not published")
        return _json(200, {"status": "ignored", "reason": kind})

    def _hold(self, provider_id: str, body: bytes) -> Response:
        assert self.index is not None
        if self.index.held_count >= self.max_held and not self.index.holds(provider_id, body):
            self._count("unavailable")
            return _json(
                503, {"error": f"{self.max_held} callbacks already wait for their message; retry later"}
            )
        if not self.index.hold(provider_id, body, int(self.clock() * 1000)):
            log.debug("webhook: a repeat of a held callback for %r; held once", provider_id)
        self._count("held")
        self.metrics.held.set(self.index.held_count)
        return _json(202, {"status": "held", "reason": f"messageId {provider_id!r} not yet known"})

    async def resolve_held(self) -> int:
        """Publish the held callbacks whose attempt is now known; dead-letter those past the orphan
        window. Returns how many ended (either way). A publish that fails leaves its callback held."""
        if self.index is None or not self.index.held_count:
            return 0
        ended = 0
        now_ms = int(self.clock() * 1000)
        orphan_ms = int(self.settings.orphan_status_seconds * 1000)
        for held in self.index.held():
            where = self.index.lookup(held.provider_id)
            if where is None and now_ms - held.at_ms < orphan_ms:
                continue
            if not await self._end_held(held, where):
                break  # the broker is away: try again on the next round
            ended += 1
        self.metrics.held.set(self.index.held_count)
        return ended

    async def _end_held(self, held: Held, where: Attempt | None) -> bool:
        assert self.index is not None
        try:
            if where is None:
                orphan = self.settings.orphan_status_seconds
                raise UnknownGatewayShape(
                    f"messageId: the gateway's id {held.provider_id!r} matched no attempt on "
                    f"delivery-status within {orphan:g} s"
                )
            cb, said = interpret(held.body)
            if isinstance(said, Ignored):  # cannot happen for a held body; kept total
                self.index.release(held)
                return True
            await self._publish(to_status(cb, said, where))
            self.metrics.held_results.labels("resolved").inc()
        except UnknownGatewayShape as exc:
            if (await self._dead_letter(held.body, exc.reason)).status_code != 400:
                return False
            if where is None:
                self.metrics.held_results.labels("orphaned").inc()
        except KafkaError as exc:
            log.warning("could not publish a held DLR (%s); will retry", exc)
            self._unavailable()
            return False
        self.index.release(held)
        return True

    def _count(self, result: str) -> None:
        self.metrics.callbacks.labels(result).inc()

    def _unavailable(self) -> None:
        self.metrics.publish_failed()
        self._count("unavailable")

    async def _dead_letter(self, body: bytes, reason: str) -> Response:
        try:
            await self.producer.send_and_wait(
                self.settings.topics.dead_letters,
                body,
                headers=dead_letter_headers(reason, f"webhook:{self.path}", -1, -1, "InvalidDlr"),
            )
        except KafkaError as exc:
            log.warning("could not dead-letter a bad DLR (%s)", exc)
            self._unavailable()
            return _json(503, {"error": "could not record the bad DLR; retry later"})
        self.dead_letters += 1
        self.metrics.published()
        self._count("invalid_body")
        return _json(400, {"error": reason})


def index_horizon(settings: Settings) -> float:
    """How far back a gateway id may still matter: the max flow time plus the late-status window."""
    return settings.max_flow_seconds + settings.late_status_seconds


async def feed_index(
    consumer: AIOKafkaConsumer, index: ProviderIndex, settings: Settings, clock: Callable[[], float]
) -> None:
    """Teach ``index`` every (providerMessageId, attempt) pair on ``delivery-status``, for ever.

    Starts where the index stopped, or ``index_horizon`` back by timestamp on a fresh index.
    """
    topic = settings.topics.delivery_status
    counts = await topic_partitions(consumer)
    require_topics(counts, settings.bootstrap_servers, [topic])
    tps = [TopicPartition(topic, p) for p in range(counts[topic])]
    consumer.assign(tps)
    known = index.positions()
    fresh = [tp for tp in tps if tp.partition not in known]
    starts: dict[TopicPartition, Any] = {}
    ends: dict[TopicPartition, int] = {}
    if fresh:
        since = int((clock() - index_horizon(settings)) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(fresh, max(0, since)))
        ends = await consumer.end_offsets(fresh)
    for tp in tps:
        if tp.partition in known:
            consumer.seek(tp, known[tp.partition])
        else:
            found = starts.get(tp)
            consumer.seek(tp, found.offset if found is not None else ends[tp])
    while True:
        batches = await consumer.getmany(timeout_ms=500, max_records=1000)
        if not batches:
            continue
        learnt: list[tuple[DeliveryStatus, int]] = []
        positions: dict[int, int] = {}
        for tp, records in batches.items():
            for record in records:
                try:
                    learnt.append((decode_status(record.value or b""), record.timestamp))
                except InvalidRecord:
                    continue  # the processor dead-letters bad statuses; not the receiver's job
            if records:
                positions[tp.partition] = records[-1].offset + 1
        index.learn(learnt, positions)


async def _resolve_loop(rx: WebhookReceiver, stop: asyncio.Event) -> None:
    last_prune = time.monotonic()
    while not stop.is_set():
        await rx.resolve_held()
        if rx.index is not None and time.monotonic() - last_prune > PRUNE_INTERVAL:
            rx.index.prune(int((rx.clock() - index_horizon(rx.settings)) * 1000))
            last_prune = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RESOLVE_INTERVAL)


async def run_webhook(
    settings: Settings,
    gateway_settings: GatewaySettings,
    *,
    host: str = "127.0.0.1",
    port: int = 19310,
    path: str = DEFAULT_PATH,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    receiver: list[WebhookReceiver] | None = None,
    clock: Callable[[], float] = time.time,
    on_bound: list[int] | None = None,
) -> None:
    """Serve the receiver on host:port until ``stop`` is set (``on_bound`` receives the port bound).

    Beside the HTTP server run the index feed (``delivery-status`` -> provider ids) and the loop that
    resolves held callbacks; the index lives in ``STREAM_APP_STATE_DIR/webhook-provider-ids``.
    """
    auth = gateway_settings.webhook_auth_mode()
    stop = stop or asyncio.Event()
    index = ProviderIndex.open(settings.state_dir / "webhook-provider-ids")
    consumer = AIOKafkaConsumer(**settings.kafka_client_kwargs(), enable_auto_commit=False)
    try:
        index.prune(int((clock() - index_horizon(settings)) * 1000))
        await start_client(consumer, settings)
        # Before the producer exists and before the port answers: a callback published to a missing
        # topic would have the broker auto-create it with its own partition count.
        t = settings.topics  # it writes statuses and dead letters; statuses are co-partitioned with requests
        require_topics(
            await topic_partitions(consumer),
            settings.bootstrap_servers,
            [t.delivery_status, t.dead_letters],
            together=[t.send_requests, t.delivery_status],
        )
        async with started_producer(settings) as producer:
            rx = WebhookReceiver(
                settings, producer, gateway_settings.webhook_secret, path, auth=auth, index=index, clock=clock
            )
            if receiver is not None:
                receiver.append(rx)
            feed = asyncio.create_task(feed_index(consumer, index, settings, clock))
            resolver = asyncio.create_task(_resolve_loop(rx, stop))
            feed.add_done_callback(lambda _: stop.set())  # a dead feed ends the receiver, loudly
            # So does a dead resolver (its error is raised below): held callbacks would otherwise be
            # answered 202 and kept for ever while nothing resolves them.
            resolver.add_done_callback(lambda _: stop.set())
            try:
                await serve_app(rx.app, host, port, stop=stop, ready=ready, on_bound=on_bound)
            finally:
                stop.set()
                for task in (feed, resolver):
                    task.cancel()
                for task in (feed, resolver):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task  # re-raises a feed that failed
    finally:
        await stop_client(consumer)
        index.close()
