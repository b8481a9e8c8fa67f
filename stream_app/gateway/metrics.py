"""Prometheus metrics of the gateway services: the dispatcher, the webhook receiver, the poller.

One class per service, each with its own :class:`CollectorRegistry`: the tests and the demo run
several services in one process, and a registry per instance keeps their names apart (the processor
does the same, stream_app.runtime.metrics). Names are ``stream_app_<service>_*``, except the gateway
HTTP latency, ``stream_app_gateway_request_seconds``, which the dispatcher and the poller both export
under the same name because it measures the same thing: the partner gateway, not our service.
The README lists every metric; keep the two in step.

Each class also carries the service's :class:`~stream_app.metrics_http.Heartbeat`, which its loop
beats and ``/healthz`` reads.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from stream_app.contracts import Channel
from stream_app.gateway.client import (
    Accepted,
    Found,
    NotFound,
    RateLimited,
    Rejected,
    SendResult,
    StatusResult,
    Transient,
)
from stream_app.metrics_http import STALL_SECONDS, Heartbeat

#: Gateway answer times: a submit usually takes 50-500 ms; the tail up to the 10 s client timeout
#: (STREAM_APP_GATEWAY_TIMEOUT_SECONDS) must stay visible, as it is what slows sending down.
GATEWAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: Label values of ``stream_app_dispatcher_sends_total{result}``.
SEND_OK, SEND_REJECTED, SEND_RETRYABLE, SEND_FAILED = "ok", "rejected", "retryable", "failed"
#: Label values of ``stream_app_poller_polls_total{result}``.
POLL_FOUND, POLL_NOT_FOUND, POLL_RETRYABLE, POLL_FAILED = "found", "not_found", "retryable", "failed"


def send_result(result: SendResult) -> str:
    """The ``result`` label of one send: ok (accepted), rejected (the gateway's definitive no for
    the message: not accepted, 422), retryable (429, 5xx, timeout, reset: tried again), failed
    (any other 4xx: our request was wrong, or 401/403, which stop the dispatcher)."""
    match result:
        case Accepted():
            return SEND_OK
        case Rejected():
            return SEND_REJECTED
        case RateLimited() | Transient():
            return SEND_RETRYABLE
        case _:
            return SEND_FAILED


def poll_result(result: StatusResult) -> str:
    """The ``result`` label of one status look-up (found, not_found, retryable, failed)."""
    match result:
        case Found():
            return POLL_FOUND
        case NotFound():
            return POLL_NOT_FOUND
        case RateLimited() | Transient():
            return POLL_RETRYABLE
        case _:
            return POLL_FAILED


def _gateway_latency(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "stream_app_gateway_request_seconds",
        "Time the partner gateway took to answer one HTTP call (or to fail it)",
        ["endpoint", "channel"],
        buckets=GATEWAY_BUCKETS,
        registry=registry,
    )


class DispatcherMetrics:
    """What ``stream-app dispatcher`` exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.heartbeat = Heartbeat(STALL_SECONDS)
        self.commands_in = Counter(
            "stream_app_dispatcher_commands_in", "Records read from retry-commands", registry=r
        )
        self.sends = Counter(
            "stream_app_dispatcher_sends",
            "Send calls to the gateway by channel and result (ok, rejected, retryable, failed)",
            ["channel", "result"],
            registry=r,
        )
        self.statuses = Counter(
            "stream_app_dispatcher_statuses",
            "Statuses published on delivery-status (ACCEPTED, REJECTED) by channel",
            ["channel", "status"],
            registry=r,
        )
        self.sentlog_skips = Counter(
            "stream_app_dispatcher_sentlog_skips",
            "Commands not sent again: done (already published, dropped), result (recorded answer "
            "published again), in_flight (same command already being sent), status (a send in doubt "
            "found on the gateway's status endpoint)",
            ["reason"],
            registry=r,
        )
        self.not_after = Counter(
            "stream_app_dispatcher_not_after",
            "Commands REJECTED with NOT_SENT_BEFORE_NOT_AFTER (not sent before their notAfter)",
            ["channel"],
            registry=r,
        )
        self.dead_letters = Counter(
            "stream_app_dispatcher_dead_letters", "Invalid command records sent to dead-letters", registry=r
        )
        self.produce_retries = Counter(
            "stream_app_dispatcher_produce_retries",
            "Produce calls that failed (broker away) and were retried",
            registry=r,
        )
        self.in_flight = Gauge(
            "stream_app_dispatcher_in_flight", "Commands read but not finished", registry=r
        )
        self.consumer_lag = Gauge(
            "stream_app_dispatcher_consumer_lag",
            "Records behind the partition end of retry-commands",
            ["topic", "partition"],
            registry=r,
        )
        self.gateway_seconds = _gateway_latency(r)
        self.breaker_state = Gauge(
            "stream_app_dispatcher_breaker_state",
            "Circuit breaker of each channel: 0 closed (channel working), 1 half-open (probing), "
            "2 open (tripped: channel-control says CLOSED)",
            ["channel"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "stream_app_dispatcher_breaker_transitions",
            "Circuit breaker state changes by channel and cause: tripped (closed -> open), probe_due "
            "(open -> half-open), probe_succeeded (half-open -> closed), probe_failed (half-open -> open)",
            ["channel", "cause"],
            registry=r,
        )
        self.breaker_probes = Counter(
            "stream_app_dispatcher_breaker_probes",
            "Probes of a tripped channel (simulation sends) by result: ok, failed, undecided (429)",
            ["channel", "result"],
            registry=r,
        )
        self.channel_control = Counter(
            "stream_app_dispatcher_channel_control",
            "ChannelControl records the breaker published on channel-control, by channel and state",
            ["channel", "state"],
            registry=r,
        )
        # Every label combination exists from the start, at 0: a rate() over a series that appears
        # only with its first event misses that event, and dashboards show "no data" instead of 0.
        for ch in Channel:
            for res in (SEND_OK, SEND_REJECTED, SEND_RETRYABLE, SEND_FAILED):
                self.sends.labels(ch.value, res)
            for cause in ("tripped", "probe_due", "probe_succeeded", "probe_failed"):
                self.breaker_transitions.labels(ch.value, cause)
            for res in ("ok", "failed", "undecided"):
                self.breaker_probes.labels(ch.value, res)
            for state in ("CLOSED", "OPEN"):
                self.channel_control.labels(ch.value, state)
        for reason in ("done", "result", "in_flight", "status"):
            self.sentlog_skips.labels(reason)

    def healthy(self) -> bool:
        return self.heartbeat.healthy()


class WebhookMetrics:
    """What ``stream-app webhook`` exports (on its own port, beside ``/dlr``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.heartbeat = Heartbeat(STALL_SECONDS)
        #: Monotonic time of the first failed publish since the last good one; None while the
        #: broker takes every record. The receiver has no loop of its own: it is stalled when the
        #: broker has refused its records for STALL_SECONDS (an idle receiver is healthy).
        self.failing_since: float | None = None
        self.callbacks = Counter(
            "stream_app_webhook_callbacks",
            "DLR callbacks received, by result: accepted (published, 200), ignored (no status to "
            "publish: UNKNOWN, an unmapped statusCode, an INBOUND reply; 200), held (only the gateway's "
            "messageId, not yet resolvable; kept, 202), bad_signature (401: bad signature or token), "
            "too_large (413), too_slow (408: the body took over 10 s), invalid_body (400, "
            "dead-lettered), unavailable (503, the broker did not take it), disconnected (the caller "
            "left mid-body)",
            ["result"],
            registry=r,
        )
        self.statuses = Counter(
            "stream_app_webhook_statuses",
            "DeliveryStatus records published on delivery-status, by channel and status",
            ["channel", "status"],
            registry=r,
        )
        self.ignored = Counter(
            "stream_app_webhook_ignored",
            "Callbacks that carry no DeliveryStatus, by kind "
            "(UNKNOWN, eventType INBOUND, statusCode unmapped)",
            ["kind"],
            registry=r,
        )
        self.held = Gauge(
            "stream_app_webhook_held",
            "Callbacks naming only the gateway's messageId, waiting for its attempt to be known",
            registry=r,
        )
        self.held_results = Counter(
            "stream_app_webhook_held_results",
            "Held callbacks by how they ended: resolved (published) or orphaned (dead-lettered after "
            "STREAM_APP_ORPHAN_STATUS_SECONDS)",
            ["result"],
            registry=r,
        )
        for result in ("resolved", "orphaned"):
            self.held_results.labels(result)
        for result in (
            "accepted",
            "ignored",
            "held",
            "bad_signature",
            "too_large",
            "too_slow",
            "invalid_body",
            "unavailable",
            "disconnected",
        ):
            self.callbacks.labels(result)

    def published(self) -> None:
        self.failing_since = None
        self.heartbeat.beat()

    def publish_failed(self) -> None:
        if self.failing_since is None:
            self.failing_since = self.heartbeat.clock()

    def healthy(self) -> bool:
        since = self.failing_since
        return since is None or self.heartbeat.clock() - since < STALL_SECONDS


class PollerMetrics:
    """What ``stream-app poller`` exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.heartbeat = Heartbeat(STALL_SECONDS)
        self.polls = Counter(
            "stream_app_poller_polls",
            "Status look-ups by channel and result (found, not_found, retryable, failed)",
            ["channel", "result"],
            registry=r,
        )
        self.statuses = Counter(
            "stream_app_poller_statuses",
            "DeliveryStatus records published on delivery-status, by channel and status",
            ["channel", "status"],
            registry=r,
        )
        self.errors = Counter(
            "stream_app_poller_errors",
            "Failures: publish (the broker did not take a status; polled again later), "
            "unknown_status (a deliveryStatus we do not know), gateway (a retryable or failed look-up)",
            ["kind"],
            registry=r,
        )
        self.ignored = Counter(
            "stream_app_poller_ignored",
            "Polled statuses that carry no DeliveryStatus, by kind (UNKNOWN, statusCode unmapped)",
            ["kind"],
            registry=r,
        )
        self.in_flight = Gauge("stream_app_poller_attempts_in_flight", "Attempts being polled", registry=r)
        self.gateway_seconds = _gateway_latency(r)
        for ch in Channel:
            for res in (POLL_FOUND, POLL_NOT_FOUND, POLL_RETRYABLE, POLL_FAILED):
                self.polls.labels(ch.value, res)
        for kind in ("publish", "unknown_status", "gateway"):
            self.errors.labels(kind)

    def healthy(self) -> bool:
        return self.heartbeat.healthy()
