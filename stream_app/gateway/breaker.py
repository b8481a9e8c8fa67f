"""The dispatcher's per-channel circuit breaker, a pure state machine (CONTRACT.md v1.1, channel control).

No clock, no Kafka, no HTTP: every method takes ``now`` (seconds) and returns what changed, so the
unit tests drive hours of outage in microseconds and the dispatcher decides what to publish from the
returned :class:`Transition`. The words are the circuit breaker's usual ones, which read backwards
next to the channel's: a **tripped** circuit is ``OPEN`` and means the *channel* is ``CLOSED``.

======================  ============================  =========================================
circuit (this module)   what the dispatcher publishes  when
======================  ============================  =========================================
``CLOSED`` -> ``OPEN``  ChannelControl ``CLOSED``      failed calls over the ratio in the window
                        with ``until``
``OPEN`` -> ``HALF_OPEN``  nothing; sends one probe    ``now`` reaches ``until``
``HALF_OPEN`` -> ``CLOSED``  ChannelControl ``OPEN``   a call (the probe or a real send) succeeds
``HALF_OPEN`` -> ``OPEN``  ChannelControl ``CLOSED``   a call fails: ``until`` doubles (to a cap)
                        with a later ``until``
======================  ============================  =========================================

What counts (:func:`classify`), for the channel's send calls and its status look-ups (the dispatcher
asks the status endpoint, not the send endpoint, after a 5xx that may have sent): a call the gateway
failed as a whole (5xx, 408, a timeout, a
connection reset: :class:`~stream_app.gateway.client.Transient`) is a failure. A definitive answer
about one message (``accepted: false``, a 422, any other 4xx; found or not found on the status
endpoint) means the channel is up: a success. A
429, or our own pacing holding a call back, says nothing about the channel: not counted at all.

Hot path: one :meth:`ChannelBreaker.record` per gateway answer; the sliding window is one bucket
per second (a deque of ``[second, calls, failures]``), so its memory is bounded by the window's
length, not by the send rate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from stream_app.contracts import Channel
from stream_app.gateway.client import (
    Accepted,
    Found,
    NotFound,
    Permanent,
    RateLimited,
    Rejected,
    SendResult,
    StatusResult,
    Transient,
)
from stream_app.gateway.settings import BreakerConfig


class Circuit(StrEnum):
    """The breaker's state (circuit words: ``OPEN`` is the tripped one, the channel closed)."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CallOutcome(StrEnum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class Cause(StrEnum):
    """Why a transition happened; the ``cause`` of its log line and metric."""

    TRIPPED = "tripped"
    PROBE_DUE = "probe_due"
    PROBE_FAILED = "probe_failed"
    PROBE_SUCCEEDED = "probe_succeeded"


#: The allowed transitions, and nothing else (a test walks every pair).
TRANSITIONS: frozenset[tuple[Circuit, Circuit]] = frozenset(
    {
        (Circuit.CLOSED, Circuit.OPEN),
        (Circuit.OPEN, Circuit.HALF_OPEN),
        (Circuit.HALF_OPEN, Circuit.CLOSED),
        (Circuit.HALF_OPEN, Circuit.OPEN),
    }
)


def classify(result: SendResult | StatusResult) -> CallOutcome | None:
    """What one answer (a send's, or a status look-up's on the channel) says about its channel:
    FAILURE, SUCCESS, or None (not counted)."""
    match result:
        case Transient():
            return CallOutcome.FAILURE
        case Accepted() | Rejected() | Permanent() | Found() | NotFound():
            return CallOutcome.SUCCESS
        case RateLimited():
            return None
    return None  # pragma: no cover - SendResult is closed


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, with what the dispatcher needs to log, count and publish it."""

    channel: Channel
    before: Circuit
    after: Circuit
    cause: Cause
    at: float
    #: When the channel reopens by itself (``after`` OPEN only): the ChannelControl's ``until``.
    until: float | None
    #: The window's counts when it tripped (``cause`` TRIPPED), else 0.
    calls: int = 0
    failures: int = 0

    @property
    def ratio(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


class ChannelBreaker:
    """The circuit of one channel. Not thread-safe; one asyncio loop drives it."""

    def __init__(self, channel: Channel, config: BreakerConfig) -> None:
        self.channel = channel
        self.config = config
        self.state = Circuit.CLOSED
        #: Per-second buckets ``[second, calls, failures]``, oldest first.
        self._buckets: deque[list[int]] = deque()
        self._calls = 0
        self._failures = 0
        #: Until when the circuit stays OPEN (seconds, the caller's clock); None unless OPEN.
        self.until: float | None = None
        #: How long the last OPEN lasted: doubled by each failed probe, reset when the channel recovers.
        self._open_for = config.open_seconds

    # ------------------------------------------------------------------------------ window
    def counts(self, now: float) -> tuple[int, int]:
        """Calls and failures in the window ending at ``now``."""
        self._expire(now)
        return self._calls, self._failures

    def _expire(self, now: float) -> None:
        horizon = math.floor(now - self.config.window_seconds)
        buckets = self._buckets
        while buckets and buckets[0][0] <= horizon:
            _, calls, failures = buckets.popleft()
            self._calls -= calls
            self._failures -= failures

    def _add(self, now: float, failed: bool) -> None:
        second = math.floor(now)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= second:  # same second (or a clock step back): the last bucket
            bucket = buckets[-1]
        else:
            bucket = [second, 0, 0]
            buckets.append(bucket)
        bucket[1] += 1
        self._calls += 1
        if failed:
            bucket[2] += 1
            self._failures += 1

    def _reset_window(self) -> None:
        self._buckets.clear()
        self._calls = self._failures = 0

    # ------------------------------------------------------------------------------ inputs
    def record(self, outcome: CallOutcome | None, now: float) -> Transition | None:
        """One gateway answer on this channel at ``now``; the transition it caused, if any.

        CLOSED: counted in the window, and trips when the window holds at least ``min_calls``
        calls of which more than ``failure_ratio`` failed. OPEN: answers of calls that were in flight
        when it tripped change nothing (only a probe decides). HALF_OPEN: the first counted answer,
        the probe's or a real send's, decides.
        """
        if outcome is None:
            return None
        failed = outcome is CallOutcome.FAILURE
        if self.state is Circuit.CLOSED:
            self._expire(now)
            self._add(now, failed)
            calls, failures = self._calls, self._failures
            if failed and calls >= self.config.min_calls and failures > self.config.failure_ratio * calls:
                self._open_for = self.config.open_seconds
                return self._open(now, Cause.TRIPPED, calls, failures)
            return None
        if self.state is Circuit.HALF_OPEN:
            if failed:
                self._open_for = min(self._open_for * 2, self.config.max_open_seconds)
                return self._open(now, Cause.PROBE_FAILED)
            return self._move(Circuit.CLOSED, now, Cause.PROBE_SUCCEEDED, None)
        return None

    def tick(self, now: float) -> Transition | None:
        """Time passing: OPEN becomes HALF_OPEN (a probe is due) once ``now`` reaches ``until``."""
        if self.state is Circuit.OPEN and self.until is not None and now >= self.until:
            return self._move(Circuit.HALF_OPEN, now, Cause.PROBE_DUE, None)
        return None

    def next_due(self) -> float | None:
        """When :meth:`tick` will next change something (OPEN's ``until``), or None."""
        return self.until if self.state is Circuit.OPEN else None

    # ------------------------------------------------------------------------------ moves
    def _open(self, now: float, cause: Cause, calls: int = 0, failures: int = 0) -> Transition:
        self._reset_window()
        return self._move(Circuit.OPEN, now, cause, now + self._open_for, calls, failures)

    def _move(
        self, after: Circuit, now: float, cause: Cause, until: float | None, calls: int = 0, failures: int = 0
    ) -> Transition:
        before = self.state
        if (before, after) not in TRANSITIONS:  # pragma: no cover - a bug here, never an input
            raise AssertionError(f"breaker {self.channel}: {before} -> {after} is not a transition")
        self.state = after
        self.until = until
        if after is Circuit.CLOSED:
            self._open_for = self.config.open_seconds
            self._reset_window()
        return Transition(self.channel, before, after, cause, now, until, calls, failures)
