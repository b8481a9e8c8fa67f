"""The gateway services' metrics: result labels of every gateway answer, names, and health."""

from __future__ import annotations

import pytest

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
from stream_app.gateway.metrics import (
    STALL_SECONDS,
    DispatcherMetrics,
    PollerMetrics,
    WebhookMetrics,
    poll_result,
    send_result,
)


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (Accepted("p-1", 2), "ok"),
        (Rejected(("NO_WHATSAPP",)), "rejected"),
        (Rejected(("template not approved",), http_status=422), "rejected"),
        (RateLimited(1.0), "retryable"),
        (Transient("ReadTimeout", maybe_sent=True), "retryable"),
        (Permanent(400, "bad body"), "failed"),
        (Permanent(401, "bad key"), "failed"),
    ],
)
def test_send_result_labels(result: SendResult, label: str) -> None:
    assert send_result(result) == label


@pytest.mark.parametrize(
    ("result", "label"),
    [
        (Found("DELIVERED", None, (), None, "p-1"), "found"),
        (NotFound(), "not_found"),
        (RateLimited(None), "retryable"),
        (Transient("HTTP 502", maybe_sent=True), "retryable"),
        (Permanent(404 + 6, "gone"), "failed"),
    ],
)
def test_poll_result_labels(result: StatusResult, label: str) -> None:
    assert poll_result(result) == label


#: The names the README documents; a renamed metric must fail here before it breaks a dashboard.
DOCUMENTED = {
    DispatcherMetrics: {
        "stream_app_dispatcher_commands_in_total",
        "stream_app_dispatcher_sends_total",
        "stream_app_dispatcher_statuses_total",
        "stream_app_dispatcher_sentlog_skips_total",
        "stream_app_dispatcher_not_after_total",
        "stream_app_dispatcher_dead_letters_total",
        "stream_app_dispatcher_produce_retries_total",
        "stream_app_dispatcher_in_flight",
        "stream_app_dispatcher_consumer_lag",
        "stream_app_dispatcher_breaker_state",
        "stream_app_dispatcher_breaker_transitions_total",
        "stream_app_dispatcher_breaker_probes_total",
        "stream_app_dispatcher_channel_control_total",
        "stream_app_gateway_request_seconds",
    },
    WebhookMetrics: {
        "stream_app_webhook_callbacks_total",
        "stream_app_webhook_statuses_total",
        "stream_app_webhook_ignored_total",
        "stream_app_webhook_held",
        "stream_app_webhook_held_results_total",
    },
    PollerMetrics: {
        "stream_app_poller_polls_total",
        "stream_app_poller_statuses_total",
        "stream_app_poller_errors_total",
        "stream_app_poller_ignored_total",
        "stream_app_poller_attempts_in_flight",
        "stream_app_gateway_request_seconds",
    },
}


@pytest.mark.parametrize("cls", list(DOCUMENTED), ids=lambda c: c.__name__)
def test_exported_names_are_the_documented_ones(cls: type) -> None:
    families = cls().registry.collect()
    exported = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    assert exported == DOCUMENTED[cls]


def test_instances_never_share_a_registry() -> None:
    one, two = DispatcherMetrics(), DispatcherMetrics()
    one.commands_in.inc()
    assert two.registry.get_sample_value("stream_app_dispatcher_commands_in_total") == 0


def test_label_series_exist_at_zero_before_the_first_event() -> None:
    m = DispatcherMetrics()
    assert (
        m.registry.get_sample_value("stream_app_dispatcher_sends_total", {"channel": "SMS", "result": "ok"})
        == 0
    )
    w = WebhookMetrics()
    assert w.registry.get_sample_value("stream_app_webhook_callbacks_total", {"result": "bad_signature"}) == 0


@pytest.mark.parametrize("cls", [DispatcherMetrics, PollerMetrics], ids=lambda c: c.__name__)
def test_dispatcher_and_poller_stall_without_a_beat(cls: type[DispatcherMetrics | PollerMetrics]) -> None:
    m = cls()
    now = [0.0]
    m.heartbeat.clock = lambda: now[0]
    m.heartbeat.beat()
    now[0] = STALL_SECONDS - 1
    assert m.healthy()
    now[0] = STALL_SECONDS
    assert not m.healthy()


def test_webhook_is_unhealthy_only_after_a_long_run_of_refused_publishes() -> None:
    m = WebhookMetrics()
    now = [1000.0]
    m.heartbeat.clock = lambda: now[0]
    now[0] += 10 * STALL_SECONDS  # idle for a long time: still healthy
    assert m.healthy()
    m.publish_failed()
    now[0] += STALL_SECONDS / 2
    m.publish_failed()  # a second failure does not restart the clock
    assert m.healthy()
    now[0] += STALL_SECONDS / 2
    assert not m.healthy()
    m.published()  # the broker took one again
    assert m.healthy()
