"""Prometheus metrics of one processor.

Each processor gets its own :class:`CollectorRegistry`, so two processors in one Python process (as
the tests run them) never collide on metric names. The endpoint (:mod:`stream_app.metrics_http`) is
an ``asyncio`` server on the processor's own loop: ``/metrics`` (Prometheus text format) and
``/healthz`` (200 while the loop turns, 503 when it has been stuck longer than :data:`STALL_SECONDS`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app.metrics_http import STALL_SECONDS, Heartbeat

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
        self.input_gaps = Counter(
            "stream_app_input_gaps",
            "Input batches that did not start where the last one ended, by what was done: rewind "
            "(first sighting), gap_confirmed (nothing readable there), gap_repaired (records had been "
            "skipped: a bug, read again), overlap (already processed, dropped)",
            ["kind"],
            registry=r,
        )
        self.control_records = Counter(
            "stream_app_channel_control_records",
            "channel-control records applied, by kind: closed, open, tombstone, invalid",
            ["kind"],
            registry=r,
        )
        self.channels_closed = Gauge(
            "stream_app_channels_closed",
            "Entries of the channel-control table that close a channel (some may be past their until)",
            registry=r,
        )
        self.sweep_flows = Counter(
            "stream_app_channel_control_sweep_flows",
            "Flows examined by inFlight FALLBACK sweeps of the owned partitions' stores",
            registry=r,
        )
        self.errors = Counter(
            "stream_app_loop_errors", "Loop turns that failed and were retried", ["kind"], registry=r
        )
        #: Beaten once per loop turn; ``/healthz`` is 503 after STALL_SECONDS without a turn.
        self.heartbeat = Heartbeat(STALL_SECONDS)

    def turned(self) -> None:
        self.heartbeat.beat()

    def healthy(self) -> bool:
        return self.heartbeat.healthy()
