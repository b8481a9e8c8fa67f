"""Prometheus metrics of one processor and the tiny HTTP endpoint that serves them.

Each processor gets its own :class:`CollectorRegistry`, so two processors in one Python process (as
the tests run them) never collide on metric names. The endpoint is an ``asyncio`` server on the
processor's own loop: ``/metrics`` (Prometheus text format) and ``/healthz`` (200 while the loop
turns, 503 when it has been stuck longer than :data:`STALL_SECONDS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# A loop turn is bounded by the getmany wait (<= 1 s) plus one batch; 60 s without a turn means the
# loop is wedged (or paused by a broker outage long enough that an orchestrator should know).
STALL_SECONDS = 60.0

# Firing lateness buckets: a healthy loop fires within a few ms of the deadline; a restore after a
# crash fires overdue timers seconds or minutes late, and both must be visible.
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)


class Metrics:
    """Every metric the runtime exports (names are documented in the README)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.records_in = Counter("stream_app_records_in", "Input records read", ["topic"], registry=r)
        self.records_out = Counter(
            "stream_app_records_out", "Records produced (outputs, changelog)", ["topic"], registry=r
        )
        self.dead_letters = Counter(
            "stream_app_dead_letters", "Input records sent to dead-letters", ["topic"], registry=r
        )
        self.consumer_lag = Gauge(
            "stream_app_consumer_lag", "Records behind the partition end", ["topic", "partition"], registry=r
        )
        self.pending_timers = Gauge(
            "stream_app_pending_timers", "Flows with a pending timer", ["partition"], registry=r
        )
        self.timers_fired = Counter("stream_app_timers_fired", "Timers fired through decide()", registry=r)
        self.timer_lateness = Histogram(
            "stream_app_timer_lateness_seconds",
            "How long after its deadline a timer fired",
            buckets=LATENESS_BUCKETS,
            registry=r,
        )
        self.restore_records = Counter(
            "stream_app_restore_records",
            "Changelog records replayed into the store",
            ["partition"],
            registry=r,
        )
        self.restore_remaining = Gauge(
            "stream_app_restore_remaining",
            "Changelog records still to replay for a partition being restored",
            ["partition"],
            registry=r,
        )
        self.restore_skipped = Counter(
            "stream_app_restore_skipped",
            "Changelog records skipped on restore because their input offset was never committed",
            ["partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "stream_app_assigned_partitions", "Partitions this instance owns", registry=r
        )
        self.batch_seconds = Histogram(
            "stream_app_batch_seconds", "Time to process and commit one batch", registry=r
        )
        self.errors = Counter(
            "stream_app_loop_errors", "Loop turns that failed and were retried", ["kind"], registry=r
        )
        self.last_turn = time.monotonic()

    def turned(self) -> None:
        self.last_turn = time.monotonic()

    def healthy(self) -> bool:
        return time.monotonic() - self.last_turn < STALL_SECONDS


async def serve(
    metrics: Metrics, port: int, host: str = "0.0.0.0", *, healthy: Callable[[], bool] | None = None
) -> asyncio.Server:
    """Start the ``/metrics`` + ``/healthz`` endpoint; the caller closes the returned server."""
    check = healthy or metrics.healthy

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing we need
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            if path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(metrics.registry)
            elif path == "/healthz":
                ok = check()
                status = "200 OK" if ok else "503 Service Unavailable"
                ctype, body = "text/plain; charset=utf-8", b"ok\n" if ok else b"stalled\n"
            else:
                status, ctype, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass  # a slow or vanished scraper is its own problem, never the processor's
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
