"""A broker outage told in three lines, not eighty a second.

While the brokers are away aiokafka logs every failed connect, fetch, metadata refresh and
heartbeat, about 80 lines a second per service. :class:`OutageFilter` sits on the log handlers and
turns aiokafka's lines into: the first error as it happens (the outage began), one reminder every
:data:`REMINDER_S` with how many errors it held back, and, once aiokafka has been quiet for
:data:`QUIET_S`, one line that the brokers answer again (:meth:`OutageFilter.tick`, called from
each service's loop, notices the quiet).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: How often a reminder is let through while the outage lasts (seconds).
REMINDER_S = 30.0
#: aiokafka retries every 100 ms while the brokers are away; this long without an error means they
#: answer again (seconds).
QUIET_S = 5.0

_LOG = logging.getLogger("stream_app.kafka")


class OutageFilter(logging.Filter):
    """Let the first aiokafka error of an outage through, then a reminder now and then."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock
        self.since: float | None = None  # the outage's first error
        self.last = 0.0  # the latest error
        self.reminded = 0.0
        self.held = 0  # errors not shown since the last line

    def filter(self, record: logging.LogRecord) -> bool:
        # Only aiokafka's ERRORs: its connection failures. Its WARNINGs ("Heartbeat failed ...
        # because it is rebalancing", "Marking the coordinator dead") come with every rebalance
        # and are not an outage; they pass as they are.
        if record.levelno < logging.ERROR or not record.name.startswith("aiokafka"):
            return True
        now = self.clock()
        if self.since is None or now - self.last > QUIET_S:
            self.since, self.reminded, self.held = now, now, 0
            self.last = now
            _rewrite(record, f"kafka unreachable (more aiokafka errors summed up every {REMINDER_S:g} s)")
            return True
        self.last = now
        if now - self.reminded >= REMINDER_S:
            lasted = now - self.since
            note = f"kafka still unreachable after {lasted:.0f} s ({self.held} aiokafka errors not shown)"
            self.reminded, self.held = now, 0
            _rewrite(record, note)
            return True
        self.held += 1
        return False

    def tick(self) -> None:
        """Say once that the outage ended, when aiokafka has been quiet long enough."""
        if self.since is None:
            return
        now = self.clock()
        if now - self.last > QUIET_S:
            _LOG.warning(
                "kafka reachable again after %.0f s (%d aiokafka errors not shown)",
                self.last - self.since,
                self.held,
            )
            self.since, self.held = None, 0


def _rewrite(record: logging.LogRecord, prefix: str) -> None:
    record.msg, record.args = f"{prefix}: {record.getMessage()}", ()


_FILTER: OutageFilter | None = None


def outage_filter() -> OutageFilter:
    """The process's filter, on every handler of the root logger (aiokafka logs through its child
    loggers, which a filter on the ``aiokafka`` logger itself would not see)."""
    global _FILTER
    if _FILTER is None:
        _FILTER = OutageFilter()
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
    return _FILTER
