"""Streaming aggregation of ``outcomes``: counters, fixed-size sketches, a bounded recent index.

One :class:`Aggregator` takes records one at a time (:meth:`Aggregator.add`) and keeps only counts:
per result, per step, per channel, the funnel, failure reasons (at most :data:`MAX_REASONS` distinct
per table, the rest as ``(other reasons)``), outcomes per minute of completion, latency and
time-to-success :class:`~stream_app.report.sketch.Quantiles`, and the what-if counts. Its memory does
not grow with the number of records, except for :class:`Recent`, a FIFO index of the last
:data:`RECENT_WINDOW` messageIds that drops repeated outcomes (at_least_once may publish an outcome
twice, close together) and ties each late status to its message (late statuses carry no tenant or
campaign, and their latency needs the attempt's ``issuedAt``). A late status whose message is not in
the window (its outcome was before ``--since``, or too long before) is counted as ``unmatched`` and
left out of the rates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from stream_app.contracts import FAILURE_STATUSES, format_ms
from stream_app.report.read import RESULTS, AttemptRow, LateRow, OutcomeRow
from stream_app.report.sketch import Quantiles
from stream_app.report.whatif import DEFAULT_MAX_DOUBLE_RATE, ChannelWhatIf

#: Messages remembered for repeats and late statuses (about 200 bytes each: ~50 MiB).
RECENT_WINDOW = 262_144
#: Distinct failure reasons kept per table; more are counted under OTHER_REASONS.
MAX_REASONS = 500
OTHER_REASONS = "(other reasons)"
#: Outcomes-over-time buckets kept before they are merged into coarser ones.
MAX_TIME_BUCKETS = 20_000
PERCENTILES = (50.0, 95.0, 99.0)
#: Ways an attempt can end that say nothing about its channel's delivery: left out of the what-if.
_NOT_WEIGHED = frozenset({"CANCELLED", "SKIPPED"})
_DELIVERED = ("DELIVERED", "READ")


@dataclass(frozen=True, slots=True)
class Filters:
    """Which outcomes count: completed in ``[since_ms, until_ms)``, of these tenants and campaigns."""

    since_ms: int | None = None
    until_ms: int | None = None
    tenants: frozenset[str] = frozenset()
    campaigns: frozenset[str] = frozenset()

    def keep(self, row: OutcomeRow) -> bool:
        if self.since_ms is not None and row.completed_ms < self.since_ms:
            return False
        if self.until_ms is not None and row.completed_ms >= self.until_ms:
            return False
        if self.tenants and row.tenant not in self.tenants:
            return False
        return not (self.campaigns and row.campaign_id not in self.campaigns)

    def describe(self) -> dict[str, Any]:
        return {
            "since": None if self.since_ms is None else format_ms(self.since_ms),
            "until": None if self.until_ms is None else format_ms(self.until_ms),
            "tenants": sorted(self.tenants),
            "campaigns": sorted(self.campaigns),
        }


class _Seen:
    """What the window remembers of one message."""

    __slots__ = ("doubled", "kept", "late", "lates", "pending")

    def __init__(self, kept: bool, pending: dict[int, tuple[str, int, bool]] | None) -> None:
        self.kept = kept
        #: attempt -> (channel, issuedAt ms, failed): attempts a late success may still tell about
        self.pending = pending
        self.late = False
        self.doubled: set[int] | None = None
        #: (attempt, status) of the late statuses counted: at_least_once may publish one twice
        self.lates: set[tuple[int, str]] | None = None


class Recent:
    """A FIFO map of the last ``capacity`` messageIds (O(1) insert and evict, bounded memory)."""

    def __init__(self, capacity: int = RECENT_WINDOW) -> None:
        self.capacity = capacity
        self._map: dict[str, _Seen] = {}
        self._order: deque[str] = deque()

    def get(self, message_id: str) -> _Seen | None:
        return self._map.get(message_id)

    def put(self, message_id: str, seen: _Seen) -> None:
        self._map[message_id] = seen
        self._order.append(message_id)
        if len(self._order) > self.capacity:
            self._map.pop(self._order.popleft(), None)

    def __len__(self) -> int:
        return len(self._map)


class _Counter(dict[str, int]):
    """A string counter that keeps at most ``limit`` keys (the rest add up under OTHER_REASONS)."""

    def __init__(self, limit: int = MAX_REASONS) -> None:
        super().__init__()
        self.limit = limit

    def bump(self, key: str, n: int = 1) -> None:
        if key not in self and len(self) >= self.limit:
            key = OTHER_REASONS
        self[key] = self.get(key, 0) + n

    def top(self, n: int | None = None) -> list[dict[str, Any]]:
        ranked = sorted(self.items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"reason": k, "count": v} for k, v in ranked[:n]]


@dataclass(slots=True)
class _ChannelStats:
    attempts: int = 0
    ended_by: dict[str, int] = field(default_factory=dict)
    last_status: dict[str, int] = field(default_factory=dict)
    reasons: _Counter = field(default_factory=_Counter)
    from_issue: Quantiles = field(default_factory=Quantiles)
    from_accepted: Quantiles = field(default_factory=Quantiles)
    time_to_success: Quantiles = field(default_factory=Quantiles)
    fallbacks: int = 0
    successes: int = 0
    late: int = 0
    double: int = 0
    whatif: ChannelWhatIf = field(default_factory=ChannelWhatIf)


@dataclass(slots=True)
class _StepStats:
    attempts: int = 0
    channels: dict[str, int] = field(default_factory=dict)
    ended_by: dict[str, int] = field(default_factory=dict)
    ended_here: dict[str, int] = field(default_factory=dict)


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _reason_text(text: str) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= 120 else one_line[:117] + "..."


def _quantiles(q: Quantiles) -> dict[str, Any]:
    p50, p95, p99 = q.percentiles(*PERCENTILES)
    return {
        "count": q.count,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": q.max,
        "mean": round(q.total / q.count) if q.count else None,
        "exact": q.exact,
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class Aggregator:
    """Counts records of ``outcomes`` as they stream by; :meth:`result` gives the report as a dict."""

    def __init__(
        self,
        filters: Filters | None = None,
        *,
        max_double_rate: float = DEFAULT_MAX_DOUBLE_RATE,
        window: int = RECENT_WINDOW,
    ) -> None:
        self.filters = filters or Filters()
        self.max_double_rate = max_double_rate
        self.recent = Recent(window)
        self.records = 0
        self.outcomes = 0
        self.late_statuses = 0
        self.repeats = 0
        self.filtered_out = 0
        self.unmatched_late = 0
        self.bad = 0
        self.bad_examples: list[dict[str, str]] = []
        self.messages = 0
        self.results: dict[str, int] = dict.fromkeys(RESULTS, 0)
        self.outcome_reasons = _Counter()
        self.time_to_success = Quantiles()
        self.reached: list[int] = []
        self.steps: list[_StepStats] = []
        self.channels: dict[str, _ChannelStats] = {}
        self.late_messages = 0
        self.double_messages = 0
        self.double_deliveries = 0
        self.bucket_ms = 60_000
        self.over_time: dict[int, list[int]] = {}
        self.first_ms: int | None = None
        self.last_ms: int | None = None

    # ------------------------------------------------------------------------------------- input

    def add_bad(self, where: str, reason: str, keep: int = 20) -> None:
        """Count a record that could not be read; the first ``keep`` are kept as examples."""
        self.records += 1
        self.bad += 1
        if len(self.bad_examples) < keep:
            self.bad_examples.append({"where": where, "reason": reason})

    def add(self, row: OutcomeRow | LateRow) -> None:
        self.records += 1
        if isinstance(row, LateRow):
            self._add_late(row)
        else:
            self._add_outcome(row)

    def _channel(self, name: str) -> _ChannelStats:
        stats = self.channels.get(name)
        if stats is None:
            stats = self.channels[name] = _ChannelStats()
        return stats

    def _add_outcome(self, row: OutcomeRow) -> None:
        self.outcomes += 1
        if self.recent.get(row.message_id) is not None:
            self.repeats += 1
            return
        if not self.filters.keep(row):
            self.filtered_out += 1
            self.recent.put(row.message_id, _Seen(False, None))
            return
        self.messages += 1
        self.results[row.result] += 1
        if row.reason and row.result != "SUCCEEDED":
            self.outcome_reasons.bump(f"{row.result}: {_reason_text(row.reason)}")
        succeeded = row.result == "SUCCEEDED"
        if succeeded:
            self.time_to_success.add(row.duration_ms)
            if row.channel is not None:
                self._channel(row.channel).time_to_success.add(row.duration_ms)
        self._count_time(row)
        attempts = row.attempts
        ended_step = None
        pending: dict[int, tuple[str, int, bool]] | None = None
        for i, a in enumerate(attempts):
            if a.ended_by == "SUCCEEDED":
                ended_step = a.attempt
            has_next = i < len(attempts) - 1
            pend = self._count_attempt(a, has_next)
            if pend is not None:
                if pending is None:
                    pending = {}
                pending[a.attempt] = pend
        if attempts:
            if ended_step is None or not succeeded:
                ended_step = attempts[-1].attempt
            while len(self.steps) <= max(ended_step, attempts[-1].attempt):
                self.steps.append(_StepStats())
                self.reached.append(0)
            for a in attempts:
                self.reached[a.attempt] += 1
            _bump(self.steps[ended_step].ended_here, row.result)
        self.recent.put(row.message_id, _Seen(True, pending))

    def _count_attempt(self, a: AttemptRow, has_next: bool) -> tuple[str, int, bool] | None:
        """Count one attempt; return what a late success of it would still change, if anything."""
        if a.attempt < 0:
            return None
        while len(self.steps) <= a.attempt:
            self.steps.append(_StepStats())
            self.reached.append(0)
        step = self.steps[a.attempt]
        step.attempts += 1
        _bump(step.channels, a.channel)
        ended = a.ended_by or "OPEN"
        _bump(step.ended_by, ended)
        ch = self._channel(a.channel)
        ch.attempts += 1
        _bump(ch.ended_by, ended)
        _bump(ch.last_status, a.last_status or "NONE")
        if ended == "SUCCEEDED":
            ch.successes += 1
        if has_next and ended in ("TIMEOUT", "FAILED", "SKIPPED"):
            ch.fallbacks += 1
        failed = a.last_status in FAILURE_STATUSES
        if failed:
            if a.reasons:
                for reason in a.reasons:
                    ch.reasons.bump(f"{a.last_status}: {_reason_text(reason)}")
            else:
                ch.reasons.bump(f"{a.last_status}: (no reason given)")
        times = a.times
        delivered = times.get("DELIVERED", times.get("READ"))
        if delivered is not None:
            ch.from_issue.add(delivered - a.issued_ms)
            accepted = times.get("ACCEPTED")
            if accepted is not None:
                ch.from_accepted.add(delivered - accepted)
        if ended in _NOT_WEIGHED:
            return None
        if delivered is not None:
            ch.whatif.add_delivered(delivered - a.issued_ms)
            return None
        if failed:
            ch.whatif.failed += 1
        else:
            ch.whatif.undelivered += 1
        return (a.channel, a.issued_ms, failed)

    def _count_time(self, row: OutcomeRow) -> None:
        at = row.completed_ms
        if self.first_ms is None or at < self.first_ms:
            self.first_ms = at
        if self.last_ms is None or at > self.last_ms:
            self.last_ms = at
        key = at // self.bucket_ms
        counts = self.over_time.get(key)
        if counts is None:
            if len(self.over_time) >= MAX_TIME_BUCKETS:
                self._coarsen()
                key = at // self.bucket_ms
                counts = self.over_time.get(key)
            if counts is None:
                counts = self.over_time[key] = [0] * len(RESULTS)
        counts[RESULTS.index(row.result)] += 1

    def _coarsen(self) -> None:
        factor = 60 if self.bucket_ms < 3_600_000 else 24
        merged: dict[int, list[int]] = {}
        for key, counts in self.over_time.items():
            into = merged.setdefault(key // factor, [0] * len(RESULTS))
            for i, n in enumerate(counts):
                into[i] += n
        self.bucket_ms *= factor
        self.over_time = merged

    def _add_late(self, row: LateRow) -> None:
        self.late_statuses += 1
        seen = self.recent.get(row.message_id)
        if seen is None:
            self.unmatched_late += 1
            return
        if not seen.kept:
            return
        # The core reports each status of an attempt at most once after the end, so a second one
        # with the same attempt and status is a repeat (at_least_once after a crash): the same record.
        if seen.lates is None:
            seen.lates = set()
        elif (row.attempt, row.status) in seen.lates:
            return
        seen.lates.add((row.attempt, row.status))
        ch = self._channel(row.channel)
        ch.late += 1
        if not seen.late:
            seen.late = True
            self.late_messages += 1
        if row.double_delivery and (seen.doubled is None or row.attempt not in seen.doubled):
            if seen.doubled is None:
                seen.doubled = set()
                self.double_messages += 1
            seen.doubled.add(row.attempt)
            self.double_deliveries += 1
            ch.double += 1
        pend = seen.pending.pop(row.attempt, None) if seen.pending else None
        if pend is not None and row.status in _DELIVERED:
            channel, issued_ms, failed = pend
            stats = self._channel(channel)
            latency = row.occurred_ms - issued_ms
            stats.from_issue.add(latency)
            if failed:
                stats.whatif.failed -= 1
            else:
                stats.whatif.undelivered -= 1
            stats.whatif.add_delivered(latency)
        elif pend is not None and seen.pending is not None:
            seen.pending[row.attempt] = pend  # a late SENT tells nothing about delivery: keep waiting

    # ------------------------------------------------------------------------------------ output

    def result(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (the one shape every output is made from)."""
        n = self.messages
        funnel = [
            {
                "step": k,
                "reached": self.reached[k],
                "reachedRate": _rate(self.reached[k], n),
                "endedHere": sum(s.ended_here.values()),
                "results": {r: s.ended_here.get(r, 0) for r in RESULTS},
            }
            for k, s in enumerate(self.steps)
        ]
        steps = [
            {
                "step": k,
                "attempts": s.attempts,
                "channels": dict(sorted(s.channels.items())),
                "endedBy": dict(sorted(s.ended_by.items())),
            }
            for k, s in enumerate(self.steps)
        ]
        channels = []
        for name in sorted(self.channels):
            ch = self.channels[name]
            channels.append(
                {
                    "channel": name,
                    "attempts": ch.attempts,
                    "successes": ch.successes,
                    "successRate": _rate(ch.successes, ch.attempts),
                    "fallbacks": ch.fallbacks,
                    "fallbackRate": _rate(ch.fallbacks, ch.attempts),
                    "endedBy": dict(sorted(ch.ended_by.items())),
                    "lastStatus": dict(sorted(ch.last_status.items())),
                    "failureReasons": ch.reasons.top(),
                    "timeToSuccessMs": _quantiles(ch.time_to_success),
                    "deliveryLatencyMs": {
                        "fromIssue": _quantiles(ch.from_issue),
                        "fromAccepted": _quantiles(ch.from_accepted),
                    },
                    "deliveryLatencyHistogram": _latency_histogram(ch.from_issue),
                    "lateStatuses": ch.late,
                    "doubleDeliveries": ch.double,
                    "whatIf": ch.whatif.summary(self.max_double_rate),
                }
            )
        return {
            "filters": self.filters.describe(),
            "read": {
                "records": self.records,
                "outcomes": self.outcomes,
                "lateStatuses": self.late_statuses,
                "repeatedOutcomes": self.repeats,
                "filteredOut": self.filtered_out,
                "unmatchedLateStatuses": self.unmatched_late,
                "bad": self.bad,
                "badExamples": self.bad_examples,
                "window": self.recent.capacity,
            },
            "messages": n,
            "firstCompletedAt": None if self.first_ms is None else format_ms(self.first_ms),
            "lastCompletedAt": None if self.last_ms is None else format_ms(self.last_ms),
            "results": dict(self.results),
            "resultRates": {r: _rate(c, n) for r, c in self.results.items()},
            "outcomeReasons": self.outcome_reasons.top(),
            "timeToSuccessMs": _quantiles(self.time_to_success),
            "funnel": funnel,
            "steps": steps,
            "channels": channels,
            "late": {
                "messages": self.late_messages,
                "rate": _rate(self.late_messages, n),
                "doubleDeliveryMessages": self.double_messages,
                "doubleDeliveryRate": _rate(self.double_messages, n),
                "doubleDeliveries": self.double_deliveries,
            },
            "overTime": self._over_time(),
        }

    def _over_time(self) -> dict[str, Any]:
        """Outcomes per time bucket, merged to at most about 120 buckets for a readable chart."""
        if not self.over_time:
            return {"bucketSeconds": self.bucket_ms // 1000, "buckets": []}
        lo, hi = min(self.over_time), max(self.over_time)
        factor = 1
        for f in (1, 5, 15, 60, 180, 360, 720, 1440, 10080):
            factor = f * 60_000 // self.bucket_ms or 1
            if (hi - lo) // factor + 1 <= 120:
                break
        merged: dict[int, list[int]] = {}
        for key, counts in self.over_time.items():
            into = merged.setdefault(key // factor, [0] * len(RESULTS))
            for i, c in enumerate(counts):
                into[i] += c
        size = self.bucket_ms * factor
        return {
            "bucketSeconds": size // 1000,
            "buckets": [
                {"start": format_ms(key * size), **dict(zip(RESULTS, merged[key], strict=True))}
                for key in sorted(merged)
            ],
        }


#: Edges of the latency histogram (ms): 1 s to 24 h, the HTML report's distribution chart.
HISTOGRAM_EDGES_MS: tuple[int, ...] = (
    1000, 2000, 5000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000,
    7_200_000, 21_600_000, 86_400_000,
)  # fmt: skip


def _latency_histogram(q: Quantiles) -> list[dict[str, Any]]:
    counts = q.histogram(list(HISTOGRAM_EDGES_MS))
    out = []
    lower = 0
    for edge, count in zip((*HISTOGRAM_EDGES_MS, None), counts, strict=True):
        out.append({"fromMs": lower, "toMs": edge, "count": count})
        lower = edge or lower
    return out
