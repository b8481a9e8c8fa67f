"""What a channel's ``fallbackAfter`` would have meant on the observed data, and which to recommend.

The method (docs/report.md, "The what-if", says it for people): take every attempt on the channel
(cancelled ones aside) and sort it into

- **failed**: it ended on a failure status (REJECTED, ERROR, EXPIRED) and was never delivered: the
  chain moves on whatever the timeout;
- **delivered after L ms**: its DELIVERED (or READ) time minus its ``issuedAt`` (the moment its
  timer starts), from the outcome's ``statusTimes``, or from a late status of the same attempt;
- **undelivered**: neither (it timed out, was superseded or expired, and no late success came).

With ``fallbackAfter = T``, a delivered attempt with ``L > T`` would have fallen back at T and then
been delivered anyway (a double delivery if the next step delivers too: the figure is an upper
bound), and failed and undelivered attempts fall back at any T. So

    fallback rate(T)        = (failed + undelivered + delivered with L > T) / attempts
    double-delivery rate(T) = (delivered with L > T) / attempts

The recommendation is the shortest T of :data:`GRID_SECONDS` whose double-delivery rate is at most
the target (``--max-double-rate``, 1 % by default): waiting longer only delays the fallback of the
people who will not get the message on this channel. Counts per grid interval are exact, whatever
the number of attempts. What it cannot see: deliveries that came later than the late-status window
(``STREAM_APP_LATE_STATUS_SECONDS``) after the end, and a step whose ``successStatus`` is not
DELIVERED (the outcome does not carry it; the what-if assumes DELIVERED, the default).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

#: The fallbackAfter values weighed, in seconds: 5 s to 24 h, the steps people choose.
GRID_SECONDS: tuple[int, ...] = (
    5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600,
    5400, 7200, 10800, 14400, 21600, 28800, 43200, 86400,
)  # fmt: skip
GRID_MS: tuple[int, ...] = tuple(s * 1000 for s in GRID_SECONDS)
DEFAULT_MAX_DOUBLE_RATE = 0.01


@dataclass(slots=True)
class ChannelWhatIf:
    """The counts of one channel's what-if, updated attempt by attempt (bounded: one list of ints)."""

    failed: int = 0
    undelivered: int = 0
    #: delivered attempts per latency interval of GRID_MS: [<= 5 s, (5 s, 10 s], ..., > 24 h]
    delivered: list[int] = field(default_factory=lambda: [0] * (len(GRID_MS) + 1))

    def add_delivered(self, latency_ms: int) -> None:
        self.delivered[bisect_left(GRID_MS, max(latency_ms, 0))] += 1

    @property
    def attempts(self) -> int:
        return self.failed + self.undelivered + sum(self.delivered)

    def later_than(self, i: int) -> int:
        """Delivered attempts whose latency is over ``GRID_MS[i]``."""
        return sum(self.delivered[i + 1 :])

    def summary(self, max_double_rate: float) -> dict[str, Any]:
        """The curve over the grid, and the recommendation with what it would have meant."""
        n = self.attempts
        delivered = sum(self.delivered)
        curve: list[dict[str, Any]] = []
        for i, seconds in enumerate(GRID_SECONDS):
            late = self.later_than(i)
            fallbacks = self.failed + self.undelivered + late
            curve.append(
                {
                    "fallbackAfter": seconds,
                    "fallbacks": fallbacks,
                    "fallbackRate": fallbacks / n if n else None,
                    "doubleDeliveries": late,
                    "doubleDeliveryRate": late / n if n else None,
                }
            )
        recommended = None
        if delivered:
            recommended = next(
                (p for p in curve if p["doubleDeliveryRate"] <= max_double_rate + 1e-12), curve[-1]
            )
        return {
            "attempts": n,
            "failed": self.failed,
            "delivered": delivered,
            "undelivered": self.undelivered,
            "maxDoubleDeliveryRate": max_double_rate,
            "recommendedFallbackAfter": recommended["fallbackAfter"] if recommended else None,
            "atRecommended": recommended,
            "why": _why(recommended, delivered, max_double_rate),
            "curve": curve,
        }


def _why(point: dict[str, Any] | None, delivered: int, target: float) -> str:
    if point is None:
        return "no delivery seen on this channel: nothing to base a timeout on"
    if point["doubleDeliveryRate"] > target:
        return f"even {point['fallbackAfter']} s (the longest weighed) leaves more than {target:.1%} double"
    return f"the shortest timeout with at most {target:.1%} double deliveries"
