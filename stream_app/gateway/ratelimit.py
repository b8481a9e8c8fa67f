"""The gateway's rate limits as it states them: how long a 429 asks us to wait, and pacing before one.

* A 429 may give its wait in the ``Retry-After`` header (seconds or an HTTP date, RFC 9110) or in
  the body's ``retryAfter`` (seconds), or both: :func:`retry_after_of` takes the longer, so a retry
  never comes sooner than the gateway asked, whichever way it asked.
* Every answer may carry ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset``. :class:`RatePacer`
  lets requests go at full speed while plenty remain, and once the remaining count falls to a tenth
  of the limit it spreads what is left evenly over what is left of the window; with none left it
  says how long until the window resets. A 429 avoided costs nothing, while one received costs a
  round trip and, on many gateways, a longer penalty.

``X-RateLimit-Reset``: the Qlara documentation ("Rate Limits": 1,000 requests/min, 50/s, the
headers on every answer) names the header, but no copy consulted states its unit, and the
simulator sends seconds until the reset. Three conventions are common and cannot be confused, so
all three are read: seconds until the reset (below 10^9, 31 years), a Unix time in seconds (below
10^12, the year 33658) and a Unix time in milliseconds (above). Without it the window is taken as
one second, the most common unit of messaging gateways' limits.

Whatever a header says, a wait taken from it is at most :data:`MAX_HEADER_WAIT`: one odd or
misread answer must never hold sends back for longer than that. A number that cannot be read, or
is not finite (``inf``, ``1e400``, ``nan``), is taken as absent.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

#: A reset value above this is a Unix time, below it seconds from now.
_EPOCH_THRESHOLD = 1e9
#: A reset value above this is a Unix time in milliseconds (10^12 s would be the year 33658).
_EPOCH_MS_THRESHOLD = 1e12
#: The longest wait any header or 429 body can impose (seconds). The gateway's documented windows
#: are a minute and a second (1,000 requests/min, 50/s), so a true wait is at most about 60 s;
#: five minutes leaves room for a stricter plan, while a misread or wrong value costs at most five
#: minutes of held sends instead of years. A real longer wait costs one request more, whose 429
#: (or headers) asks again.
MAX_HEADER_WAIT = 300.0
#: The window assumed when the gateway gives a remaining count but no reset.
DEFAULT_WINDOW = 1.0
#: Pace once the remaining requests fall to this fraction of the window's limit.
LOW_WATER = 0.1


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return _bounded(seconds)


def _bounded(seconds: float) -> float | None:
    """A wait from a header or body: within [0, MAX_HEADER_WAIT]; None when not finite."""
    return min(max(0.0, seconds), MAX_HEADER_WAIT) if math.isfinite(seconds) else None


def _number(value: Any) -> float | None:
    """A finite number from a header or JSON value (a number or a numeric string), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def _seconds(value: Any) -> float | None:
    seconds = _number(value)
    return None if seconds is None else _bounded(seconds)


def body_retry_after(body: bytes) -> float | None:
    """Seconds from a JSON body's ``retryAfter`` (a number or a numeric string), or None."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return _seconds(data.get("retryAfter")) if isinstance(data, dict) else None


def retry_after_of(header: str | None, body: bytes, now: float | None = None) -> float | None:
    """The wait a 429 asks for: the longer of ``Retry-After`` and the body's ``retryAfter``."""
    waits = [w for w in (parse_retry_after(header, now), body_retry_after(body)) if w is not None]
    return max(waits) if waits else None


def _count(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else max(0, int(number))


def _reset_in(value: str | None, wall: float) -> float | None:
    """Seconds until the window resets, from ``X-RateLimit-Reset`` in any of its three forms."""
    reset = _number(value)
    if reset is None:
        return None
    if reset > _EPOCH_MS_THRESHOLD:
        reset = reset / 1000 - wall
    elif reset > _EPOCH_THRESHOLD:
        reset -= wall
    return _bounded(reset)


@dataclass(slots=True)
class RatePacer:
    """Spaces requests as the gateway's ``X-RateLimit-*`` headers run low. One per client (process)."""

    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # on ``clock``
    next_at: float = 0.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Learn the window from an answer's headers (answers without them change nothing)."""
        remaining = _count(headers.get("x-ratelimit-remaining"))
        if remaining is None:
            return
        now = self.clock()
        reset = _reset_in(headers.get("x-ratelimit-reset"), self.wall())
        self.limit = _count(headers.get("x-ratelimit-limit")) or self.limit
        self.remaining = remaining
        self.reset_at = now + (reset if reset is not None else DEFAULT_WINDOW)

    def delay(self) -> float:
        """Seconds the next request should wait; its place in the window is taken."""
        if self.remaining is None or self.reset_at is None:
            return 0.0
        now = self.clock()
        if now >= self.reset_at:  # a new window: full speed until an answer says otherwise
            self.remaining = self.reset_at = None
            return 0.0
        low = max(1, math.ceil(self.limit * LOW_WATER)) if self.limit else 1
        if self.remaining > low:
            self.remaining -= 1
            return 0.0
        if self.remaining <= 0:
            return self.reset_at - now
        # Spread what is left evenly over what is left of the window after the places already taken.
        slot = max(now, self.next_at)
        self.next_at = slot + max(0.0, self.reset_at - slot) / self.remaining
        self.remaining -= 1
        return slot - now
