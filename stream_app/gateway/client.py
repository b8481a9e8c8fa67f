"""Async HTTP client of the partner gateway (seed pages 000, 001): sends and status look-ups.

One :class:`httpx.AsyncClient` per process: pooled keep-alive connections (a TLS handshake per send
would cost more than the send), explicit timeouts, and every HTTP outcome mapped to a typed result so
the dispatcher decides with a ``match``, never by parsing exceptions:

* :class:`Accepted` (provider message id, SMS parts) and :class:`Rejected` (reasons; also 422, an
  unapproved template) are definitive answers;
* :class:`RateLimited` (429; its wait is the longer of ``Retry-After`` and the body's
  ``retryAfter``, see :mod:`stream_app.gateway.ratelimit`; or our own pacing when the gateway's
  ``X-RateLimit-Remaining`` says its window is spent) and :class:`Transient` (5xx, 408, timeouts,
  resets) may be retried; ``Transient.maybe_sent`` says the request may have reached the gateway, so
  a retry must first ask the status endpoint whether the send happened;
* :class:`Permanent` (any other 4xx) will not get better by retrying.

The API key travels in the ``X-Api-Key`` header only; it is never logged (httpx logs URLs, not
headers) and never part of a result.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from stream_app.contracts import Channel, RetryCommand, exactjson
from stream_app.gateway.ratelimit import RatePacer, retry_after_of
from stream_app.gateway.ratelimit import parse_retry_after as parse_retry_after  # re-exported
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.shapes import status_code_of

STATUS_PATH = "/api/partner-gateway/v1/messages/status/"
#: Seconds a whole call may take beyond the configured timeout (see ``GatewayClient._request``): one
#: second is enough for httpx's own timeouts, started a moment later, to fire first; and it stays
#: inside the revoke's wait for calls in flight (the timeout + REVOKE_MARGIN_S, 5 s).
WHOLE_CALL_MARGIN_S = 1.0
#: Pacing waits up to this long inside a call; a longer one is handed back as RateLimited(held_back)
#: so the caller waits its own way (the dispatcher's wait ends at stop and at notAfter).
MAX_PACE = 2.0


@dataclass(frozen=True, slots=True)
class Accepted:
    provider_message_id: str
    parts: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    reasons: tuple[str, ...]
    http_status: int = 200


@dataclass(frozen=True, slots=True)
class RateLimited:
    """429, or our own pacing holding a request back (``held_back``: no request was made)."""

    retry_after: float | None
    held_back: bool = False


@dataclass(frozen=True, slots=True)
class Transient:
    error: str
    maybe_sent: bool


@dataclass(frozen=True, slots=True)
class Permanent:
    status: int
    reason: str


SendResult = Accepted | Rejected | RateLimited | Transient | Permanent


@dataclass(frozen=True, slots=True)
class Found:
    """The gateway's current delivery status of one customer message id."""

    status: str
    status_code: int | None
    reasons: tuple[str, ...]
    occurred_at: str | None
    provider_message_id: str


@dataclass(frozen=True, slots=True)
class NotFound:
    pass


StatusResult = Found | NotFound | RateLimited | Transient | Permanent


def build_body(command: RetryCommand) -> dict[str, Any]:
    """The channel body of a command: its ``content``, plus ``destination``, our commandId as the
    gateway's customer ``messageId`` (so DLRs and status look-ups correlate) and ``simulation``."""
    body = dict(command.content)
    body["destination"] = command.destination
    body["messageId"] = command.command_id
    if command.simulation:
        body["simulation"] = True
    return body


def _error_text(resp: httpx.Response) -> str:
    try:
        data = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return resp.text[:200] or resp.reason_phrase
    if isinstance(data, dict):
        for key in ("error", "message", "detail"):
            if isinstance(data.get(key), str):
                return str(data[key])[:200]
    return resp.reason_phrase


def reasons_of(value: Any) -> tuple[str, ...]:
    """The gateway's ``reasons``: a list of strings (anything else in it dropped), a lone string as
    one reason, and anything else as none (a number or an object says nothing we could publish)."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(r for r in value if isinstance(r, str))
    return ()


def channel_result(results: Any, name: str) -> dict[str, Any] | None:
    """The send answer's result for channel ``name`` (lower case), in either documented shape.

    Seed page 001 (the gateway's fallback page) keys ``results`` by channel,
    ``{"results": {"sms": {"accepted": true, "parts": 1}}}``; the Quick Start guide lists them,
    ``{"results": [{"phoneNumber": "+39...", "accepted": true, "channel": "sms", "statusCode": 200}]}``.
    None when neither names the channel: the caller takes the send as "maybe sent".
    """
    if isinstance(results, dict):
        found = results.get(name)
    elif isinstance(results, list):
        found = next(
            (r for r in results if isinstance(r, dict) and str(r.get("channel", "")).lower() == name), None
        )
    else:
        found = None
    return found if isinstance(found, dict) else None


def _answered(code: int) -> bool:
    """Any 2xx is the gateway's answer, to be read: its HTTP guide says "2XX (message accepted by the
    server)", so a 201 or 202 is a send that happened, never a refusal."""
    return 200 <= code < 300


def _http_failure(resp: httpx.Response) -> RateLimited | Transient | Permanent:
    code = resp.status_code
    if code == 429:
        return RateLimited(retry_after_of(resp.headers.get("retry-after"), resp.content))
    if code == 408 or code >= 500:
        return Transient(f"HTTP {code}: {_error_text(resp)}", maybe_sent=code != 503)
    return Permanent(code, _error_text(resp))


def _network_failure(exc: httpx.HTTPError) -> Transient:
    # Connect errors and pool timeouts happen before a byte of the request left: nothing was sent.
    # A read timeout or a reset after writing may have lost the answer to a send that happened.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return Transient(f"{type(exc).__name__}: {exc}"[:300], maybe_sent=not never_sent)


class GatewayClient:
    """The gateway's send and status endpoints over one pooled :class:`httpx.AsyncClient`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self._base,
            headers={"X-Api-Key": api_key, "Accept": "application/json"},
            # Connect quickly or not at all; the rest of the budget is the gateway's answer.
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,  # under uvicorn's and typical load balancers' 60-75 s idle close
            ),
            transport=transport,
        )
        self.pacer = RatePacer()

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> GatewayClient:
        """The client of ``STREAM_APP_GATEWAY_*``: the dispatcher's and the poller's."""
        return cls(
            settings.url, settings.api_key, timeout=settings.timeout, max_connections=settings.max_connections
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _paced(self) -> RateLimited | None:
        """Wait for our place in the gateway's rate window; a long wait is handed back instead."""
        wait = self.pacer.delay()
        if wait > MAX_PACE:
            return RateLimited(wait, held_back=True)
        if wait > 0:
            await asyncio.sleep(wait)
        return None

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | Transient:
        """One call, answer body included, within the configured timeout as a whole.

        httpx's timeout is per read: a gateway or proxy that trickles its answer a byte at a time
        would hold the call (and its channel slot, and a revoke) for far longer. Past the total the
        call is abandoned like a read timeout: the request may have reached the gateway. The total
        is the timeout plus :data:`WHOLE_CALL_MARGIN_S`, so that httpx's own pool and connect
        timeouts (each the timeout) end a call that never reached the gateway first, and say so.
        """
        total = self._timeout + WHOLE_CALL_MARGIN_S
        try:
            async with asyncio.timeout(total):
                return await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            return _network_failure(exc)
        except TimeoutError:
            return Transient(f"CallTimeout: no whole answer within {total:g} s", maybe_sent=True)

    async def send(self, channel: Channel, body: dict[str, Any]) -> SendResult:
        """POST one channel body; never raises for HTTP or network trouble."""
        name = channel.value.lower()
        if (held := await self._paced()) is not None:
            return held
        resp = await self._request(
            "POST",
            f"/api/message-server/{name}/send",
            content=exactjson.dumps(body),
            headers={"Content-Type": "application/json"},
        )
        if isinstance(resp, Transient):
            return resp
        self.pacer.observe(resp.headers)
        code = resp.status_code
        if code == 422:
            return Rejected((_error_text(resp),), http_status=422)
        if not _answered(code):
            return _http_failure(resp)
        try:
            data = orjson.loads(resp.content)
            result = channel_result(data["results"], name)
            provider_id = str(data.get("messageId") or body.get("messageId") or "")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            # A 2xx we cannot read: the send probably happened, so treat it as "maybe sent".
            return Transient(f"HTTP {code} with an unreadable body", maybe_sent=True)
        if result is None:
            return Transient(f"HTTP {code} without a result for the channel", maybe_sent=True)
        if result.get("accepted") is True:
            parts = result.get("parts")
            return Accepted(provider_id, parts if isinstance(parts, int) else None)
        return Rejected(reasons_of(result.get("reasons")) or ("NOT_ACCEPTED",))

    async def status(self, customer_message_id: str, channel: Channel) -> StatusResult:
        """GET the delivery status of one customer message id on one channel."""
        if (held := await self._paced()) is not None:
            return held
        resp = await self._request(
            "GET", STATUS_PATH + quote(customer_message_id, safe=":"), params={"channel": channel.value}
        )
        if isinstance(resp, Transient):
            return resp
        self.pacer.observe(resp.headers)
        if resp.status_code == 404:
            return NotFound()
        if not _answered(resp.status_code):
            return _http_failure(resp)
        try:
            data = orjson.loads(resp.content)
            status = str(data["deliveryStatus"]).upper()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Transient("status answer without deliveryStatus", maybe_sent=True)
        code = data.get("statusCode")
        # ``readDate`` dates a READ only: the answer carries it beside ``deliveryDate``, and a message
        # read later may still answer DELIVERED (the status API lists no READ among its values).
        read = data.get("readDate") if status == "READ" else None
        occurred = data.get("eventDate") or read or data.get("deliveryDate")
        return Found(
            status=status,
            status_code=status_code_of(code),
            reasons=reasons_of(data.get("reasons")),
            occurred_at=occurred if isinstance(occurred, str) else None,
            provider_message_id=str(data.get("messageId") or customer_message_id),
        )
