"""Webhook receiver: gateway DLR callbacks -> DeliveryStatus records on ``delivery-status``.

Starlette + uvicorn, like the simulator: Starlette is a small, well-kept, ASGI-native toolkit (routing,
requests, responses and nothing else we would have to secure), uvicorn is its standard server, and
together they take 1,000 concurrent callbacks on one core without threads.

``POST /dlr`` (``--path``) takes one DLR as JSON, in the shape of the gateway's status answer::

    {"customerMessageId": "txn-001:1", "channel": "RCS", "deliveryStatus": "ERROR", "statusCode": 6,
     "reasons": ["AGENT_NOT_REACHABLE"], "messageId": "c9a4b32d-...",
     "eventDate": "2026-04-09T10:15:04+02:00"}

* The body must be signed: header ``X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` keyed
  with ``STREAM_APP_WEBHOOK_SECRET``. Missing or wrong: 401, nothing published, nothing dead-lettered
  (an unsigned flood must not fill a topic).
* Bodies over 64 KiB: 413 (a DLR is a few hundred bytes; the limit stops memory abuse).
* A signed body that is not a valid DLR: 400, and the raw body goes to ``dead-letters`` with Connect
  headers (source topic ``webhook:<path>``, partition and offset -1) so nothing the gateway said is lost.
* ``customerMessageId`` is our commandId ``<messageId>:<attempt>`` (the dispatcher sends it so); it is
  split back into messageId and attempt. An id without a numeric ``:<attempt>`` suffix is taken whole
  as the messageId, without attempt (the processor then applies it to the latest attempt on the channel).
* The status is published whether or not its ACCEPTED has been seen: a DLR may beat the dispatcher's
  acknowledgement, and the processor orders them (CONTRACT.md).
* 200 only after the broker acknowledged the record; 503 when it did not, so the gateway retries.
* ``GET /metrics`` (Prometheus, :class:`~stream_app.gateway.metrics.WebhookMetrics`) and
  ``GET /healthz`` are served by the same app on the same port: the receiver is already an HTTP
  server, and a second port would be one more thing to open and to keep apart. ``/healthz`` is 503
  once the broker has refused every record for STALL_SECONDS (an idle receiver is healthy).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from stream_app.config import Settings
from stream_app.contracts import MAX_STEPS, DeliveryStatus, encode, reason_of
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.kafka import dead_letter_headers, started_producer
from stream_app.gateway.metrics import WebhookMetrics
from stream_app.gateway.serve import serve_app
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.signing import SIGNATURE_HEADER, verify
from stream_app.metrics_http import render

log = logging.getLogger(__name__)

#: 64 KiB: a DLR is a few hundred bytes; anything near this is not a DLR.
MAX_BODY = 64 * 1024
DEFAULT_PATH = "/dlr"


class Dlr(BaseModel):
    """A gateway delivery report, as the callback body carries it."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    customer_message_id: str = Field(alias="customerMessageId", min_length=1, max_length=255)
    channel: str
    delivery_status: str = Field(alias="deliveryStatus")
    status_code: int | None = Field(default=None, alias="statusCode")
    reasons: list[str] = Field(default_factory=list)
    provider_message_id: str | None = Field(default=None, alias="messageId")
    event_date: AwareDatetime | None = Field(default=None, alias="eventDate")
    read_date: AwareDatetime | None = Field(default=None, alias="readDate")
    delivery_date: AwareDatetime | None = Field(default=None, alias="deliveryDate")

    @field_validator("reasons", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return [] if v is None else v

    def occurred_at(self) -> datetime | None:
        return self.event_date or self.read_date or self.delivery_date


def split_customer_id(customer_id: str) -> tuple[str, int | None]:
    """``"txn-1:2"`` -> ``("txn-1", 2)``; an id without a numeric attempt suffix is taken whole."""
    head, sep, tail = customer_id.rpartition(":")
    if sep and head and tail.isdigit() and int(tail) < MAX_STEPS:
        return head, int(tail)
    return customer_id, None


def to_status(dlr: Dlr) -> DeliveryStatus:
    """The DeliveryStatus of a DLR; raises ValidationError when a field breaks the contract."""
    message_id, attempt = split_customer_id(dlr.customer_message_id)
    return DeliveryStatus.model_validate(
        {
            "messageId": message_id,
            "attempt": attempt,
            "channel": dlr.channel,
            "status": dlr.delivery_status,
            "statusCode": dlr.status_code,
            "reasons": dlr.reasons,
            "providerMessageId": dlr.provider_message_id,
            "occurredAt": dlr.occurred_at(),
        }
    )


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


class WebhookReceiver:
    """The receiver's Starlette app over one producer."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, secret: bytes, path: str = DEFAULT_PATH
    ):
        if not secret:
            raise GatewayConfigError(
                "STREAM_APP_WEBHOOK_SECRET: required (the shared secret the gateway signs callbacks with)"
            )
        self.settings = settings
        self.producer = producer
        self.secret = secret
        self.path = path
        self.published = 0
        self.refused = 0
        self.dead_letters = 0
        self.metrics = WebhookMetrics()
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
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def receive(self, request: Request) -> Response:
        try:
            body = await self._read(request)
        except ClientDisconnect:
            self._count("disconnected")
            return _json(400, {"error": "client disconnected"})
        if body is None:
            self.refused += 1
            self._count("too_large")
            return _json(413, {"error": f"body over {MAX_BODY} bytes"})
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:
            self.refused += 1
            self._count("bad_signature")
            return _json(401, {"error": f"missing {SIGNATURE_HEADER} header"})
        if not verify(self.secret, body, signature):
            self.refused += 1
            self._count("bad_signature")
            return _json(401, {"error": "signature does not match the body"})
        try:
            status = to_status(Dlr.model_validate_json(body))
        except ValidationError as exc:
            reason = reason_of(exc)
            return await self._dead_letter(body, reason)
        try:
            await self.producer.send_and_wait(
                self.settings.topics.delivery_status, encode(status), key=status.message_id.encode()
            )
        except KafkaError as exc:
            log.warning("could not publish a DLR (%s); the gateway will retry", exc)
            self._unavailable()
            return _json(503, {"error": "could not publish; retry later"})
        self.published += 1
        self.metrics.published()
        self._count("accepted")
        self.metrics.statuses.labels(status.channel.value, status.status.value).inc()
        return _json(200, {"status": "published"})

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
) -> None:
    """Serve the receiver on host:port until ``stop`` is set."""
    if not gateway_settings.webhook_secret:
        raise GatewayConfigError(
            "STREAM_APP_WEBHOOK_SECRET: required (the shared secret the gateway signs callbacks with)"
        )
    async with started_producer(settings) as producer:
        rx = WebhookReceiver(settings, producer, gateway_settings.webhook_secret, path)
        if receiver is not None:
            receiver.append(rx)
        await serve_app(rx.app, host, port, stop=stop, ready=ready)
