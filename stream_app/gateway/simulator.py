"""A local stand-in for the Qlara / Agile Telecom partner gateway (seed pages 000, 001, 004).

It powers the demo and the tests: the dispatcher, the webhook receiver and the poller talk to it over
real HTTP exactly as they would to the real gateway. Starlette + uvicorn: Starlette because it is a
small, well-kept, ASGI-native toolkit with no ORM or template baggage, and uvicorn because it is its
standard ASGI server; the webhook receiver uses the same stack, so one server helper serves both.

Endpoints (the real gateway's shapes):

* ``POST /api/message-server/{whatsapp|rcs|sms|viber}/send`` with ``X-Api-Key``. Answers
  ``{"messageId", "simulation", "results": {"<channel>": {"accepted", "reasons", "parts"}}}``
  (seed page 001), or with a top-level ``"sendAnswer": "list"`` in the rules the Quick Start
  guide's ``{"messageId", "customerMessageId", "simulation", "results": [{"phoneNumber",
  "accepted", "channel", "statusCode"}]}``.
  A body ``messageId`` is the customer message id and is echoed back; without one a UUID is made.
  401 without (or with a wrong) key, 400 for a malformed body (never a 5xx), 413 for a body over
  1 MiB, 422 for an unapproved template, 429 when scripted (``Retry-After`` header and/or
  ``retryAfter`` in the body) or when the rules' ``limit`` window is spent.
* ``GET /api/partner-gateway/v1/messages/status/{customerMessageId}?channel=...`` answers
  ``deliveryStatus`` SENT, RECEIVED, DELIVERED (``statusCode`` 3), READ, ERROR (``statusCode`` 6),
  EXPIRED (``statusCode`` 8) or UNKNOWN; before the first scripted status it answers ``ACCEPTED``
  (a simulator extension); 404 if unknown.
* With a top-level ``"limit": {"requests": N, "windowSeconds": S}`` every API answer carries
  ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds to the
  window's end), and a call over N in a window gets 429 with both ``Retry-After`` and ``retryAfter``.
* ``GET /_sim/sends``: how many sends each customer message id got (``sends``) and how many HTTP calls
  (``calls``); the fault tests assert "never sent twice" on it. ``PUT /_sim/rules`` replaces the rules
  (its body, like an outage's, is refused with 413 over 1 MiB, as a send's is).
* A channel outage (the dispatcher's circuit breaker is tested against it): ``PUT
  /_sim/outages/{channel}`` with an optional ``{"status": 503, "delay": 0}`` makes every send and
  status call on that channel answer that 5xx (after ``delay`` seconds: with a client timeout under
  it, a timeout) without sending anything; ``DELETE /_sim/outages/{channel}`` recovers it; ``GET
  /_sim/outages`` lists them with the calls each refused. ``stream-app gateway-sim --down WHATSAPP``
  starts with the channel down; in-process, :meth:`Simulator.fail_channel` and
  :meth:`Simulator.recover_channel`.

Behaviour is scripted per destination by rules (a JSON file, ``--rules``), first match wins::

    {"rules": [
      {"destinationSuffix": "01", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
      {"destinationSuffix": "02", "channel": "WHATSAPP", "statuses": [{"status": "SENT", "after": 0.2}]},
      {"destinationSuffix": "07", "rateLimit": 3, "retryAfter": 0.5, "retryAfterBody": 2},
      {"destinationSuffix": "", "statuses": [{"status": "SENT", "after": 0.2},
                                              {"status": "DELIVERED", "after": 1}]}]}

Rule fields: ``destinationSuffix`` (``""`` matches all), ``channel`` (absent: any), ``reject``
(accepted false with these reasons), ``unapprovedTemplate`` (422), ``statuses`` (the DLR timeline,
``after`` seconds from acceptance, optional ``statusCode`` (a signed 32-bit int) and ``reasons``),
``rateLimit`` (the first N calls for a destination+channel answer 429) with ``retryAfter`` (the
``Retry-After`` header, seconds; null: none) and ``retryAfterBody`` (the body's ``retryAfter``;
absent: none), ``fail`` (the next N calls, after any 429s, answer 500 before sending), ``delay``
(seconds to wait AFTER the send is recorded: a slow gateway, or with a client timeout a lost
answer), ``parts`` (SMS parts, 1-255; default one per 160 characters).

:data:`DEFAULT_RULES` (used without ``--rules``), keyed by the destination's last two digits:

====  =============================================================================
 01   no WhatsApp: WhatsApp REJECTED (RECIPIENT_NOT_ON_WHATSAPP)
 02   WhatsApp stuck in SENT
 03   WhatsApp ERROR (statusCode 6) after 1 s
 04   WhatsApp REJECTED, RCS REJECTED (AGENT_NOT_REACHABLE), SMS DELIVERED in 2 parts
 05   WhatsApp SENT, DELIVERED after 1 s, READ after 2 s
 06   WhatsApp EXPIRED (statusCode 8) after 1 s
 07   429 burst: the first 3 calls per channel are rate limited (Retry-After 1 s)
 10   SENT, RECEIVED, DELIVERED after 1 s, READ after 2 s, then a reply (INBOUND)
 11   SENT, then UNKNOWN after 1 s
 08   slow gateway: every answer takes 2 s
 09   every channel refused: WhatsApp/Viber REJECTED, RCS AGENT_NOT_REACHABLE, SMS INVALID_DESTINATION
 *    SENT after 0.2 s, DELIVERED after 1 s
====  =============================================================================

With ``--webhook-url`` every status is also pushed there as a callback, in one of the gateway's
documented shapes (``webhook_style``):

* ``status``: the status endpoint's answer (``customerMessageId``, ``deliveryStatus``, ...);
* ``events``: the webhook guide's events: ``eventType: DELIVERY`` with ``statusCode`` (3, 6, 8) and
  both ids, ``READ`` with only the gateway's own ``messageId`` (no ``customerMessageId``), and
  ``INBOUND`` for a scripted ``INBOUND`` step (a reply); SENT, RECEIVED and UNKNOWN have no event
  and are not pushed;
* ``legacy``: the older guide's ``{"messageId", "customerMessageId", "phoneNumber", "status",
  "timestamp", "channel": "sms", "error"}``;
* ``universal``: for SMS, the SMS Universal API's ``{"channel": "SMS", "eventType": "DELIVERY",
  "messageId", "statusCode", "statusDescription", "price", "numPart", "totalParts", "timestamp"}``,
  one per part, for DELIVERED (3), ERROR (6) and EXPIRED (8) only, ``messageId`` the id the send
  answer gave; other channels (that API is SMS only) as ``events``.

Each message gets its own gateway id (a UUID, the ``messageId`` of events and legacy callbacks); the
send answer echoes the customer id, as the real one does (seed page 001). Callbacks are
authenticated per ``webhook_auth``: ``hmac`` (``X-Signature``, :mod:`stream_app.gateway.signing`),
``token`` (``X-Webhook-Token``) or ``none``; otherwise DLRs are only served to the poller.
``--time-scale`` multiplies every ``after`` and ``delay`` (0.1 plays a 2 h wait in 12 min).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from stream_app.contracts import Channel, format_ms, reason_of
from stream_app.contracts.models import Destination
from stream_app.gateway.errors import RulesError
from stream_app.gateway.serve import serve_app
from stream_app.gateway.shapes import MAX_STATUS_CODE, MIN_STATUS_CODE
from stream_app.gateway.signing import SIGNATURE_HEADER, sign
from stream_app.logs import event

log = logging.getLogger(__name__)

SEND_PATH = "/api/message-server/{channel}/send"
STATUS_PATH = "/api/partner-gateway/v1/messages/status/{customer_id:path}"
#: 1 MiB: far above any real message body (a WhatsApp template with placeholders is a few KiB).
MAX_BODY = 1 << 20
#: Status codes the gateway puts on its statuses (seed page 000; 3 from the webhook guide's DELIVERY).
STATUS_CODES = {"DELIVERED": 3, "ERROR": 6, "EXPIRED": 8}
DESCRIPTIONS = {
    "ACCEPTED": "Message accepted by the gateway",
    "SENT": "Message sent but not delivered to device",
    "RECEIVED": "Message received by the carrier, delivery to the handset not confirmed",
    "UNKNOWN": "No status information for this message",
    "DELIVERED": "Message delivered to handset",
    "READ": "Message read by the recipient",
    "ERROR": "Definitive error",
    "EXPIRED": "TTL exceeded on the channel",
}
#: ``statusDescription`` of the SMS Universal API's callback ("3 = Delivered, 6 = Not Delivered").
UNIVERSAL_DESCRIPTIONS = {3: "Delivered", 6: "Not Delivered", 8: "Expired"}
#: Its ``price`` per part (the documented example's).
UNIVERSAL_PRICE = 0.035
#: 160 GSM-7 characters fit one SMS; longer texts are split into 153-character parts (UDH header).
SMS_SINGLE, SMS_PART = 160, 153
MAX_SMS_PARTS = 255


class _Model(BaseModel):
    # allow_inf_nan=False: an infinite wait would be answered as ``Retry-After: inf``, no HTTP value.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )


class StepRule(_Model):
    #: ``INBOUND`` is not a status: a reply from the person, pushed as an event (``events`` style only).
    status: Literal["SENT", "RECEIVED", "DELIVERED", "READ", "ERROR", "EXPIRED", "UNKNOWN", "INBOUND"]
    after: float = Field(ge=0, le=86_400 * 30)
    #: Within the bounds the receiver and the poller read as a code; past 64 bits orjson could not
    #: even write it (the status answer and the callback would be a 500).
    status_code: int | None = Field(default=None, ge=MIN_STATUS_CODE, le=MAX_STATUS_CODE)
    reasons: list[str] = Field(default_factory=list)

    @field_validator("status", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Rule(_Model):
    destination_suffix: str = ""
    channel: Channel | None = None
    reject: list[str] | None = None
    unapproved_template: bool = False
    statuses: list[StepRule] | None = None
    rate_limit: int = Field(default=0, ge=0)
    retry_after: float | None = Field(default=1.0, ge=0)
    retry_after_body: float | None = Field(default=None, ge=0)
    fail: int = Field(default=0, ge=0)
    delay: float = Field(default=0.0, ge=0, le=600)
    #: 255: the most parts a concatenated SMS can have (the UDH counts them in one byte).
    parts: int | None = Field(default=None, ge=1, le=MAX_SMS_PARTS)

    @field_validator("channel", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v

    def matches(self, destination: str, channel: Channel) -> bool:
        return destination.endswith(self.destination_suffix) and self.channel in (None, channel)


class Limit(_Model):
    """A fixed window of ``requests`` API calls per ``window_seconds``, announced in headers."""

    requests: int = Field(ge=1)
    window_seconds: float = Field(gt=0, le=3600)


class Rules(_Model):
    rules: list[Rule] = Field(default_factory=list)
    limit: Limit | None = None
    #: The send answer's ``results``: ``map`` keyed by channel (seed page 001) or ``list`` (the Quick
    #: Start guide), the two shapes the gateway's documents show.
    send_answer: Literal["map", "list"] = "map"


class Outage(_Model):
    """A whole channel down: every call on it answers ``status`` after ``delay`` seconds."""

    status: int = Field(default=503, ge=500, le=599)
    delay: float = Field(default=0.0, ge=0, le=600)


def _steps(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"status": s, "after": a} for s, a in pairs]


DEFAULT_RULES: dict[str, Any] = {
    "rules": [
        {"destinationSuffix": "01", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
        {"destinationSuffix": "02", "channel": "WHATSAPP", "statuses": _steps(("SENT", 0.2))},
        {
            "destinationSuffix": "03",
            "channel": "WHATSAPP",
            "statuses": [{"status": "SENT", "after": 0.2}, {"status": "ERROR", "after": 1.0}],
        },
        {"destinationSuffix": "04", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
        {"destinationSuffix": "04", "channel": "RCS", "reject": ["AGENT_NOT_REACHABLE"]},
        {
            "destinationSuffix": "04",
            "channel": "SMS",
            "parts": 2,
            "statuses": _steps(("SENT", 0.2), ("DELIVERED", 1.0)),
        },
        {
            "destinationSuffix": "05",
            "channel": "WHATSAPP",
            "statuses": _steps(("SENT", 0.2), ("DELIVERED", 1.0), ("READ", 2.0)),
        },
        {
            "destinationSuffix": "06",
            "channel": "WHATSAPP",
            "statuses": [{"status": "SENT", "after": 0.2}, {"status": "EXPIRED", "after": 1.0}],
        },
        {"destinationSuffix": "07", "rateLimit": 3, "retryAfter": 1.0},
        {
            "destinationSuffix": "10",
            "statuses": [
                {"status": "SENT", "after": 0.2},
                {"status": "RECEIVED", "after": 0.5},
                {"status": "DELIVERED", "after": 1.0},
                {"status": "READ", "after": 2.0},
                {"status": "INBOUND", "after": 2.5},
            ],
        },
        {"destinationSuffix": "11", "statuses": _steps(("SENT", 0.2), ("UNKNOWN", 1.0))},
        {"destinationSuffix": "08", "delay": 2.0},
        {"destinationSuffix": "09", "channel": "WHATSAPP", "reject": ["RECIPIENT_NOT_ON_WHATSAPP"]},
        {"destinationSuffix": "09", "channel": "VIBER", "reject": ["RECIPIENT_NOT_ON_VIBER"]},
        {"destinationSuffix": "09", "channel": "RCS", "reject": ["AGENT_NOT_REACHABLE"]},
        {"destinationSuffix": "09", "channel": "SMS", "reject": ["INVALID_DESTINATION"]},
        {"destinationSuffix": "", "statuses": _steps(("SENT", 0.2), ("DELIVERED", 1.0))},
    ]
}
#: The timeline when no rule (or a rule without ``statuses``) applies.
DEFAULT_STEPS = (StepRule(status="SENT", after=0.2), StepRule(status="DELIVERED", after=1.0))


def parse_rules(data: bytes, source: str = "rules") -> Rules:
    """Rules from JSON bytes; :class:`RulesError` names the source and the field."""
    try:
        return Rules.model_validate_json(data)
    except ValidationError as exc:
        raise RulesError(f"{source}: {reason_of(exc)}") from None


def load_rules(path: Path | None) -> Rules:
    """The rules of ``path``, or :data:`DEFAULT_RULES` when it is None."""
    if path is None:
        return Rules.model_validate(DEFAULT_RULES)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_rules(data, str(path))


# ------------------------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    """Fields every channel body shares; channel-specific fields pass through unchecked."""

    model_config = ConfigDict(extra="allow", frozen=True)
    destination: Destination
    message_id: str | None = Field(default=None, alias="messageId", min_length=1, max_length=255)
    simulation: bool = False


def _channel_problem(channel: Channel, body: dict[str, Any]) -> str | None:
    """The first missing channel field (seed pages 000 and 001 show both body styles), or None."""
    if channel is Channel.WHATSAPP:
        if not any(isinstance(body.get(k), dict) for k in ("template", "content", "body")):
            return "template: required (a template object, or content/body)"
    elif channel is Channel.RCS:
        if "agentId" not in body:
            return "agentId: required"
        if "templateId" not in body and "body" not in body:
            return "templateId: required (or body)"
    else:  # SMS and Viber: sender + text
        if not isinstance(body.get("sender"), str) or not body["sender"]:
            return "sender: required"
        if not isinstance(body.get("text", body.get("body")), str):
            return "text: required (or body)"
    return None


def _sms_parts(body: dict[str, Any]) -> int:
    text = body.get("text", body.get("body", ""))
    n = len(text) if isinstance(text, str) else 0
    return 1 if n <= SMS_SINGLE else math.ceil(n / SMS_PART)


# ------------------------------------------------------------------------------------------- state


@dataclass(slots=True)
class SimMessage:
    customer_id: str
    gateway_id: str  # the gateway's own message id (a UUID), as events and legacy callbacks carry it
    channel: Channel
    destination: str
    accepted_at: float  # monotonic seconds, for the timeline
    sent_ms: int  # wall clock, for sendDate
    steps: tuple[StepRule, ...]
    parts: int = 1  # SMS parts: the SMS Universal API calls back once per part


@dataclass(slots=True)
class SimState:
    rules: Rules
    time_scale: float = 1.0
    messages: dict[tuple[str, Channel], SimMessage] = field(default_factory=dict)
    sends: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    per_target: Counter[tuple[str, Channel]] = field(default_factory=Counter)
    in_progress: Counter[Channel] = field(default_factory=Counter)
    max_in_progress: Counter[Channel] = field(default_factory=Counter)
    #: Monotonic time of every send call per customer id: tests check the waits between them.
    call_times: dict[str, list[float]] = field(default_factory=dict)
    #: 429s answered (scripted or over the window).
    rate_limited: int = 0
    #: Channels down (an outage), and the calls each outage answered with its error.
    outages: dict[Channel, Outage] = field(default_factory=dict)
    outage_calls: Counter[Channel] = field(default_factory=Counter)
    window_start: float = 0.0
    window_calls: int = 0

    def window(self, now: float) -> tuple[int, int, float] | None:
        """(limit, remaining, seconds to reset) after counting this call, or None without a limit."""
        limit = self.rules.limit
        if limit is None:
            return None
        length = limit.window_seconds * self.time_scale
        if now - self.window_start >= length:
            self.window_start, self.window_calls = now, 0
        self.window_calls += 1
        reset = self.window_start + length - now
        return limit.requests, limit.requests - self.window_calls, reset

    def rule_for(self, destination: str, channel: Channel) -> Rule | None:
        return next((r for r in self.rules.rules if r.matches(destination, channel)), None)

    def status_of(self, msg: SimMessage, now: float) -> tuple[StepRule | None, float]:
        """The latest step reached at ``now`` (None: still ACCEPTED) and when it was reached."""
        reached: StepRule | None = None
        at = msg.accepted_at
        for step in msg.steps:
            due = msg.accepted_at + step.after * self.time_scale
            if due <= now and step.status != "INBOUND":  # a reply is no status of the message
                reached, at = step, due
        return reached, at


async def _read_capped(request: Request) -> bytes | Response:
    """The body, or the 4xx that ends the call: 413 past :data:`MAX_BODY` (declared or streamed: a
    chunked body is read no further than the limit), 400 when the caller left mid-body."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        return _error(413, f"body over {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                return _error(413, f"body over {MAX_BODY} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # the caller went away mid-body: nothing was done
        return _error(400, "client disconnected before the body was complete")
    return b"".join(chunks)


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, reason: str, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    return _json(status, {"error": reason, **extra}, headers)


#: (limit, remaining, seconds to reset) of the rate window a call was counted in; None: no limit.
_Window = tuple[int, int, float] | None


def _limited(response: Response, window: _Window) -> Response:
    """``response`` with the ``X-RateLimit-*`` headers of the window its call was counted in."""
    if window is not None:
        limit, remaining, reset = window
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(max(0, remaining))
        response.headers["X-RateLimit-Reset"] = f"{round(reset, 3):g}"
    return response


WebhookStyle = Literal["status", "events", "legacy", "universal"]
WebhookAuth = Literal["hmac", "token", "none"]
TOKEN_HEADER = "X-Webhook-Token"


class Simulator:
    """The gateway simulator: a Starlette app over :class:`SimState`."""

    def __init__(
        self,
        rules: Rules,
        *,
        api_key: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: bytes = b"",
        webhook_style: WebhookStyle = "status",
        webhook_auth: WebhookAuth = "hmac",
        time_scale: float = 1.0,
    ) -> None:
        self.state = SimState(rules=rules, time_scale=time_scale)
        self.api_key = api_key
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhook_style: WebhookStyle = webhook_style
        self.webhook_auth: WebhookAuth = webhook_auth
        self._pushes: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self.app = Starlette(
            routes=[
                Route(SEND_PATH, self.send, methods=["POST"]),
                Route(STATUS_PATH, self.status, methods=["GET"]),
                Route("/_sim/sends", self.sends, methods=["GET"]),
                Route("/_sim/rules", self.set_rules, methods=["PUT"]),
                Route("/_sim/outages", self.list_outages, methods=["GET"]),
                Route("/_sim/outages/{channel}", self.set_outage, methods=["PUT", "DELETE"]),
            ]
        )

    # ------------------------------------------------------------------------------ outages
    def fail_channel(self, channel: Channel, status: int = 503, delay: float = 0.0) -> None:
        """Take ``channel`` down: every send and status call on it answers ``status`` (a 5xx)."""
        self.state.outages[channel] = Outage(status=status, delay=delay)
        event(log, logging.INFO, "sim_channel_down", channel=channel.value, status=status, delay=delay)

    def recover_channel(self, channel: Channel) -> None:
        """Bring ``channel`` back: its calls are answered by the rules again."""
        if self.state.outages.pop(channel, None) is not None:
            event(log, logging.INFO, "sim_channel_up", channel=channel.value)

    async def _outage(self, channel: Channel) -> Response | None:
        """The outage's answer when ``channel`` is down (counted), else None."""
        outage = self.state.outages.get(channel)
        if outage is None:
            return None
        self.state.outage_calls[channel] += 1
        if outage.delay:
            await asyncio.sleep(outage.delay * self.state.time_scale)
        return _error(outage.status, f"{channel.value} unavailable (simulated outage)")

    async def list_outages(self, request: Request) -> Response:
        st = self.state
        return _json(
            200,
            {
                "outages": {
                    ch.value: {**o.model_dump(), "calls": st.outage_calls[ch]} for ch, o in st.outages.items()
                }
            },
        )

    async def set_outage(self, request: Request) -> Response:
        raw = request.path_params["channel"]
        try:
            channel = Channel(raw.upper())
        except ValueError:
            return _error(404, f"unknown channel {raw!r}")
        if request.method == "DELETE":
            self.recover_channel(channel)
            return _json(200, {"channel": channel.value, "down": False})
        body = await _read_capped(request)
        if isinstance(body, Response):
            return body
        try:
            outage = Outage.model_validate_json(body or b"{}")
        except ValidationError as exc:
            return _error(400, reason_of(exc))
        self.fail_channel(channel, outage.status, outage.delay)
        return _json(200, {"channel": channel.value, "down": True, **outage.model_dump()})

    # ------------------------------------------------------------------------------ handlers
    def _unauthorised(self, request: Request) -> Response | None:
        key = request.headers.get("x-api-key")
        if not key:
            return _error(401, "missing X-Api-Key header")
        if self.api_key is not None and key != self.api_key:
            return _error(401, "invalid API key")
        return None

    async def send(self, request: Request) -> Response:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        try:
            channel = Channel(request.path_params["channel"].upper())
        except ValueError:
            return _error(404, f"unknown channel {request.path_params['channel']!r}")
        if (down := await self._outage(channel)) is not None:
            return down
        raw = await _read_capped(request)
        if isinstance(raw, Response):
            return raw
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(400, f"not valid JSON: {exc}")
        if not isinstance(data, dict):
            return _error(400, "body: must be a JSON object")
        try:
            body = _Body.model_validate(data)
        except ValidationError as exc:
            return _error(400, reason_of(exc))
        if (problem := _channel_problem(channel, data)) is not None:
            return _error(400, problem)

        st = self.state
        customer_id = body.message_id or str(uuid.uuid4())
        st.calls[customer_id] += 1
        st.call_times.setdefault(customer_id, []).append(time.monotonic())
        window, over = self._count_call()
        if over is not None:
            return over
        target = (body.destination, channel)
        st.per_target[target] += 1
        n = st.per_target[target]
        rule = st.rule_for(body.destination, channel)
        if rule is not None and n <= rule.rate_limit:
            st.rate_limited += 1
            headers = (
                {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after * st.time_scale:g}"}
            )
            extra = (
                {} if rule.retry_after_body is None else {"retryAfter": rule.retry_after_body * st.time_scale}
            )
            return _limited(_error(429, "rate limit exceeded", headers, **extra), window)
        if rule is not None and n <= rule.rate_limit + rule.fail:
            return _error(500, "internal error (scripted)")
        if rule is not None and rule.unapproved_template:
            return _error(422, "Template not approved or not found")

        name = channel.value.lower()
        if body.simulation:
            reasons = list(rule.reject) if rule is not None and rule.reject is not None else []
            accepted = rule is None or rule.reject is None
            result: dict[str, Any] = {"accepted": accepted, "reasons": reasons}
            return _limited(
                _json(200, self._send_answer(customer_id, None, True, body, name, result)), window
            )

        st.sends[customer_id] += 1
        gateway_id: str | None = None
        if rule is not None and rule.reject is not None:
            result = {"accepted": False, "reasons": list(rule.reject)}
        else:
            steps = tuple(rule.statuses) if rule is not None and rule.statuses is not None else DEFAULT_STEPS
            parts = 1
            if channel is Channel.SMS:
                parts = rule.parts if rule is not None and rule.parts else _sms_parts(data)
            msg = SimMessage(
                customer_id=customer_id,
                gateway_id=(gateway_id := str(uuid.uuid4())),
                channel=channel,
                destination=body.destination,
                accepted_at=time.monotonic(),
                sent_ms=int(time.time() * 1000),
                steps=steps,
                parts=parts,
            )
            st.messages[(customer_id, channel)] = msg
            result = {"accepted": True, "reasons": []}
            if channel is Channel.SMS:
                result["parts"] = parts
            if self.webhook_url:
                task = asyncio.create_task(self._push_all(msg))
                self._pushes.add(task)
                task.add_done_callback(self._pushes.discard)
        if rule is not None and rule.delay:
            # Count the answers being held back, per channel: tests check the caller's concurrency limit.
            st.in_progress[channel] += 1
            st.max_in_progress[channel] = max(st.max_in_progress[channel], st.in_progress[channel])
            try:
                await asyncio.sleep(rule.delay * st.time_scale)
            finally:
                st.in_progress[channel] -= 1
        answer = self._send_answer(customer_id, gateway_id, False, body, name, result)
        return _limited(_json(200, answer), window)

    def _send_answer(
        self,
        customer_id: str,
        gateway_id: str | None,
        simulation: bool,
        body: _Body,
        name: str,
        result: dict[str, Any],
    ) -> dict[str, Any]:
        """A send's answer in the rules' ``sendAnswer`` shape.

        ``map`` (seed page 001) echoes the customer id as ``messageId``. ``list`` is the Quick Start
        guide's: ``messageId`` is the gateway's own id (the customer id when nothing was sent),
        ``customerMessageId`` the caller's, and each result names its ``channel`` and
        ``phoneNumber``, with ``statusCode`` 200 when accepted (the guide shows no refusal: a refused
        one carries ``reasons`` as in the map shape).
        """
        if self.state.rules.send_answer == "map":
            return {"messageId": customer_id, "simulation": simulation, "results": {name: result}}
        item = {"phoneNumber": body.destination, "channel": name, **result}
        if result["accepted"]:
            item["statusCode"] = 200
        return {
            "messageId": gateway_id or customer_id,
            "customerMessageId": customer_id,
            "simulation": simulation,
            "results": [item],
        }

    def _count_call(self) -> tuple[_Window, Response | None]:
        """Count this call in the rules' ``limit`` window; a 429 when it is over the limit."""
        window = self.state.window(time.monotonic())
        if window is None or window[1] >= 0:
            return window, None
        self.state.rate_limited += 1
        wait = round(window[2], 3)
        over = _error(429, "rate limit exceeded", {"Retry-After": f"{wait:g}"}, retryAfter=wait)
        return window, _limited(over, window)

    def _status_payload(self, msg: SimMessage, now: float) -> dict[str, Any]:
        step, at = self.state.status_of(msg, now)
        name = step.status if step is not None else "ACCEPTED"
        at_ms = msg.sent_ms + int((at - msg.accepted_at) * 1000)
        payload: dict[str, Any] = {
            "customerMessageId": msg.customer_id,
            "channel": msg.channel.value,
            "destination": msg.destination,
            "deliveryStatus": name,
            "deliveryStatusDescription": DESCRIPTIONS[name],
            "sendDate": format_ms(msg.sent_ms),
            "deliveryDate": format_ms(at_ms) if name in ("DELIVERED", "READ") else None,
            "readDate": format_ms(at_ms) if name == "READ" else None,
            "eventDate": format_ms(at_ms),
        }
        if step is not None:
            code = step.status_code if step.status_code is not None else STATUS_CODES.get(name)
            if code is not None:
                payload["statusCode"] = code
            if step.reasons:
                payload["reasons"] = list(step.reasons)
        return payload

    async def status(self, request: Request) -> Response:
        if (denied := self._unauthorised(request)) is not None:
            return denied
        customer_id = request.path_params["customer_id"]
        raw_channel = request.query_params.get("channel", "")
        try:
            channel = Channel(raw_channel.upper())
        except ValueError:
            return _error(400, f"channel: must be one of WHATSAPP, RCS, SMS, VIBER, got {raw_channel!r}")
        if (down := await self._outage(channel)) is not None:
            return down
        window, over = self._count_call()
        if over is not None:
            return over
        msg = self.state.messages.get((customer_id, channel))
        if msg is None:
            return _limited(_error(404, "message not found"), window)
        return _limited(_json(200, self._status_payload(msg, time.monotonic())), window)

    async def sends(self, request: Request) -> Response:
        return _json(200, {"sends": dict(self.state.sends), "calls": dict(self.state.calls)})

    async def set_rules(self, request: Request) -> Response:
        body = await _read_capped(request)
        if isinstance(body, Response):
            return body
        try:
            self.state.rules = parse_rules(body)
        except RulesError as exc:
            return _error(400, str(exc))
        self.state.per_target.clear()
        return _json(200, {"rules": len(self.state.rules.rules)})

    # ------------------------------------------------------------------------------ webhooks
    async def _push_all(self, msg: SimMessage) -> None:
        """Push each step of ``msg`` to the webhook when it is reached, in ``webhook_style``."""
        for step in msg.steps:
            due = msg.accepted_at + step.after * self.state.time_scale
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            for payload in self._callbacks(msg, step, due):
                await self._push(payload)

    def _callbacks(self, msg: SimMessage, step: StepRule, at: float) -> list[dict[str, Any]]:
        """The callbacks of ``step``: one per SMS part in the ``universal`` style, else at most one."""
        first = self._callback(msg, step, at)
        if first is None:
            return []
        if self.webhook_style != "universal" or msg.channel is not Channel.SMS:
            return [first]
        return [{**first, "numPart": n} for n in range(1, msg.parts + 1)]

    def _callback(self, msg: SimMessage, step: StepRule, at: float) -> dict[str, Any] | None:
        """The callback body of ``step`` in this simulator's style; None when the style has none."""
        at_text = format_ms(msg.sent_ms + int((at - msg.accepted_at) * 1000))
        name = step.status
        if self.webhook_style == "status":
            return None if name == "INBOUND" else self._status_payload(msg, at)
        if self.webhook_style == "legacy":
            if name == "INBOUND":
                return None
            failed = name in ("ERROR", "EXPIRED")
            return {
                "messageId": msg.gateway_id,
                "customerMessageId": msg.customer_id,
                "phoneNumber": msg.destination,
                "status": name,
                "timestamp": at_text,
                "channel": msg.channel.value.lower(),
                "error": (", ".join(step.reasons) or DESCRIPTIONS[name]) if failed else None,
            }
        if self.webhook_style == "universal" and msg.channel is Channel.SMS:
            return self._universal_callback(msg, step, at_text)
        # events (and universal off SMS): DELIVERY (with statusCode), READ (gateway id only), INBOUND
        where = {"destination": msg.destination, "channel": msg.channel.value, "timestamp": at_text}
        if name == "READ":
            return {"eventType": "READ", "messageId": msg.gateway_id, **where}
        if name == "INBOUND":
            return {
                "eventType": "INBOUND",
                "source": msg.destination,
                "destination": "+393409876543",
                "text": "Yes, I confirm my appointment",
                "channel": msg.channel.value,
                "messageType": "TEXT",
                "timestamp": at_text,
            }
        code = step.status_code if step.status_code is not None else STATUS_CODES.get(name)
        if code is None:
            return None  # SENT, RECEIVED, UNKNOWN: no event in the documented set
        return {
            "eventType": "DELIVERY",
            "messageId": msg.gateway_id,
            "customerMessageId": msg.customer_id,
            "statusCode": code,
            "description": ", ".join(step.reasons) or DESCRIPTIONS.get(name, name),
            **where,
        }

    def _universal_callback(self, msg: SimMessage, step: StepRule, at_text: str) -> dict[str, Any] | None:
        """The SMS Universal API's callback of part 1 (its "Callback format"): ``eventType`` is
        always DELIVERY, so only a step with a code (3, 6, 8) has one. ``messageId`` is the id the
        send answer gave (the customer's), the one seed page 000 polls the status with."""
        code = step.status_code if step.status_code is not None else STATUS_CODES.get(step.status)
        if code is None:
            return None
        return {
            "channel": "SMS",
            "eventType": "DELIVERY",
            "messageId": msg.customer_id,
            "statusCode": code,
            "statusDescription": ", ".join(step.reasons) or UNIVERSAL_DESCRIPTIONS.get(code, step.status),
            "price": UNIVERSAL_PRICE,
            "numPart": 1,
            "totalParts": msg.parts,
            "timestamp": at_text,
        }

    def _auth_headers(self, body: bytes) -> dict[str, str]:
        if self.webhook_auth == "hmac":
            return {SIGNATURE_HEADER: sign(self.webhook_secret, body)}
        if self.webhook_auth == "token":
            return {TOKEN_HEADER: self.webhook_secret.decode()}
        return {}

    async def _push(self, payload: dict[str, Any]) -> None:
        assert self.webhook_url is not None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        body = orjson.dumps(payload)
        headers = {"Content-Type": "application/json", **self._auth_headers(body)}
        # A real gateway retries a callback that failed; 5 tries with doubling waits (0.5 s .. 8 s)
        # ride out a receiver restart without flooding it.
        for attempt in range(5):
            try:
                resp = await self._http.post(self.webhook_url, content=body, headers=headers)
                if resp.status_code < 500:
                    return
            except httpx.HTTPError as exc:
                log.debug("webhook push failed: %s", exc)
            await asyncio.sleep(0.5 * 2**attempt)
        log.warning(
            "webhook push of %s gave up", payload.get("customerMessageId") or payload.get("messageId")
        )

    async def aclose(self) -> None:
        for task in list(self._pushes):
            task.cancel()
        for task in list(self._pushes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.aclose()


async def run_simulator(
    host: str,
    port: int,
    *,
    rules: Rules | None = None,
    api_key: str | None = None,
    webhook_url: str | None = None,
    webhook_secret: bytes = b"",
    webhook_style: WebhookStyle = "status",
    webhook_auth: WebhookAuth = "hmac",
    time_scale: float = 1.0,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    simulator: list[Simulator] | None = None,
    down: tuple[Channel, ...] = (),
    on_bound: list[int] | None = None,
) -> None:
    """Serve the simulator on host:port until ``stop`` is set.

    ``simulator``, when given, receives the :class:`Simulator` so an in-process caller (a test, the
    demo) can read its counters; ``on_bound`` the port bound (the one chosen for port 0).
    """
    sim = Simulator(
        rules if rules is not None else load_rules(None),
        api_key=api_key,
        webhook_url=webhook_url,
        webhook_secret=webhook_secret,
        webhook_style=webhook_style,
        webhook_auth=webhook_auth,
        time_scale=time_scale,
    )
    for channel in down:
        sim.fail_channel(channel)
    if simulator is not None:
        simulator.append(sim)
    try:
        await serve_app(sim.app, host, port, stop=stop, ready=ready, on_bound=on_bound)
    finally:
        await sim.aclose()
