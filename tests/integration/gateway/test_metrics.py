"""The gateway services' /metrics and /healthz over real HTTP, while they work against a real broker.

Each test drives a service with the simulator and reads the counters the way Prometheus would: by
scraping the endpoint and parsing the text format.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream_app.contracts import Channel, DeliveryStatus, Status, encode
from stream_app.gateway.client import GatewayClient
from stream_app.gateway.poller import Poller, PollOptions, run_poller
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.signing import SIGNATURE_HEADER, sign
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import free_port, running_simulator, running_webhook
from stream_app.lifecycle import wait_started
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_statuses,
    running_dispatcher,
)
from tests.support.kafka import consume_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def _scrape(http: httpx.AsyncClient, url: str) -> Samples:
    r = await http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_dispatcher_counters_move_with_the_commands(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "01", "channel": "WHATSAPP", "reject": ["NO_WHATSAPP"]},'
        b' {"destinationSuffix": "07", "rateLimit": 2, "retryAfter": 0.05}]}'
    )
    cmds = [
        command("ok-sms"),  # ok
        command("no-wa", channel="WHATSAPP", destination="+393401234501"),  # rejected
        command("slow", destination="+393401234507"),  # 2 x 429 (retryable), then ok
        command("bad-body", content={"text": "no sender"}),  # 400: failed
        command("late", notAfter="2020-01-01T00:00:00Z"),  # never sent: NOT_SENT_BEFORE_NOT_AFTER
    ]
    async with running_simulator(rules) as (sim, url):
        port = free_port()  # once the simulator has its port, or both would get the same one
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        gw = GatewaySettings(
            url=url, api_key="test-key", backoff_base=0.02, backoff_max=0.2, dispatcher_metrics_port=port
        )
        async with running_dispatcher(settings, gw) as disp, httpx.AsyncClient() as http:
            before = await _scrape(http, metrics_url)
            assert _value(before, "stream_app_dispatcher_sends_total", channel="SMS", result="ok") == 0
            records = [as_record(c) for c in cmds] + [(b"junk", b"{not a command")]
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)
            await read_statuses(kafka_bootstrap, settings, len(cmds))
            await consume_until(kafka_bootstrap, settings.topics.dead_letters, count=1)
            # the first command again, once its status is out: the sent-log drops it
            await eventually(lambda: disp.counts["published"] == len(cmds), what="every status published")
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(cmds[0])])
            await eventually(lambda: disp.counts["repeats"] == 1, what="the repeat dropped")
            # the loop sets the gauge at each turn (every 200 ms at most)
            reg = disp.metrics.registry
            await eventually(
                lambda: reg.get_sample_value("stream_app_dispatcher_in_flight") == 0, what="nothing in flight"
            )
            after = await _scrape(http, metrics_url)
            health = await http.get(f"http://127.0.0.1:{port}/healthz")
            assert (health.status_code, health.text) == (200, "ok\n")
            disp.metrics.heartbeat.stall_seconds = 0  # as if the loop had not turned for too long
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 503
    sends = "stream_app_dispatcher_sends_total"
    assert _value(after, "stream_app_dispatcher_commands_in_total") == len(records) + 1
    assert _value(after, sends, channel="SMS", result="ok") == 2  # ok-sms, slow
    assert _value(after, sends, channel="SMS", result="retryable") == 2  # slow's two 429s
    assert _value(after, sends, channel="SMS", result="failed") == 1  # bad-body
    assert _value(after, sends, channel="WHATSAPP", result="rejected") == 1  # no-wa
    statuses = "stream_app_dispatcher_statuses_total"
    assert _value(after, statuses, channel="SMS", status="ACCEPTED") == 2
    assert _value(after, statuses, channel="SMS", status="REJECTED") == 2  # bad-body, late
    assert _value(after, statuses, channel="WHATSAPP", status="REJECTED") == 1
    assert _value(after, "stream_app_dispatcher_not_after_total", channel="SMS") == 1
    assert _value(after, "stream_app_dispatcher_dead_letters_total") == 1
    assert _value(after, "stream_app_dispatcher_sentlog_skips_total", reason="done") == 1
    assert sim.state.sends["ok-sms:0"] == 1  # the skipped repeat was not sent again
    # every call to the gateway is in the latency histogram: ok-sms 1, slow 3, bad-body 1
    latency = "stream_app_gateway_request_seconds_count"
    assert _value(after, latency, endpoint="send", channel="SMS") == 5
    assert _value(after, latency, endpoint="send", channel="WHATSAPP") == 1
    lags = [v for (name, _), v in after.items() if name == "stream_app_dispatcher_consumer_lag"]
    assert lags and all(v >= 0 for v in lags)


SECRET = b"s3cret"


def _dlr(cid: str, status: str = "DELIVERED", **over: Any) -> bytes:
    return orjson.dumps({"customerMessageId": cid, "channel": "SMS", "deliveryStatus": status, **over})


async def test_webhook_counts_good_badly_signed_and_invalid_callbacks(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    good, invalid = _dlr("m1:0"), _dlr("m2:0", "NOT_A_STATUS")
    async with running_webhook(settings, SECRET) as (rx, url), httpx.AsyncClient() as http:
        base = url.removesuffix("/dlr")
        headers = {"Content-Type": "application/json"}
        ok = await http.post(url, content=good, headers=headers | {SIGNATURE_HEADER: sign(SECRET, good)})
        assert ok.status_code == 200, ok.text
        wrong = {SIGNATURE_HEADER: sign(b"not-the-secret", good)}
        assert (await http.post(url, content=good, headers=headers | wrong)).status_code == 401
        assert (await http.post(url, content=good, headers=headers)).status_code == 401  # unsigned
        signed_invalid = headers | {SIGNATURE_HEADER: sign(SECRET, invalid)}
        assert (await http.post(url, content=invalid, headers=signed_invalid)).status_code == 400
        samples = await _scrape(http, f"{base}/metrics")
        assert (await http.get(f"{base}/healthz")).status_code == 200
        rx.metrics.failing_since = rx.metrics.heartbeat.clock() - 61  # the broker refused for 61 s
        stalled = await http.get(f"{base}/healthz")
        assert stalled.status_code == 503 and stalled.json()["status"] == "stalled"
        assert (await http.post(f"{base}/metrics")).status_code == 405  # scrape-only
    callbacks = "stream_app_webhook_callbacks_total"
    assert _value(samples, callbacks, result="accepted") == 1
    assert _value(samples, callbacks, result="bad_signature") == 2
    assert _value(samples, callbacks, result="invalid_body") == 1
    assert _value(samples, callbacks, result="too_large") == 0
    assert _value(samples, "stream_app_webhook_statuses_total", channel="SMS", status="DELIVERED") == 1
    published = await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=1)
    assert [r.key for r in published] == [b"m1"]


async def test_poller_counts_polls_and_statuses(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_simulator(time_scale=0.2) as (_, url):
        port = free_port()
        body = {"destination": "+393401234500", "messageId": "p1:0", "sender": "S", "text": "t"}
        async with GatewayClient(url, "test-key") as client:
            await client.send(Channel.SMS, body)
        accepted = DeliveryStatus(message_id="p1", attempt=0, channel=Channel.SMS, status=Status.ACCEPTED)
        await produce_all(kafka_bootstrap, settings.topics.delivery_status, [(b"p1", encode(accepted))])
        stop, ready = asyncio.Event(), asyncio.Event()
        holder: list[Poller] = []
        gw = GatewaySettings(url=url, api_key="test-key", poller_metrics_port=port)
        options = PollOptions(min_interval=0.05, max_interval=0.2, max_age=30)
        task = asyncio.create_task(
            run_poller(settings, gw, options=options, stop=stop, ready=ready, poller=holder)
        )
        await wait_started(task, ready, "poller")
        try:
            await eventually(lambda: "p1:0" in holder[0].tracker.ended, what="the attempt ended")
            reg = holder[0].metrics.registry
            await eventually(
                lambda: reg.get_sample_value("stream_app_poller_attempts_in_flight") == 0,
                what="none in flight",
            )
            async with httpx.AsyncClient() as http:
                samples = await _scrape(http, f"http://127.0.0.1:{port}/metrics")
                assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        finally:
            stop.set()
            await task
    assert _value(samples, "stream_app_poller_polls_total", channel="SMS", result="found") >= 1
    assert _value(samples, "stream_app_poller_statuses_total", channel="SMS", status="DELIVERED") == 1
    assert _value(samples, "stream_app_poller_errors_total", kind="publish") == 0
    assert _value(samples, "stream_app_poller_attempts_in_flight") == 0
    polls = sum(v for (n, _), v in samples.items() if n == "stream_app_poller_polls_total")
    assert (
        _value(samples, "stream_app_gateway_request_seconds_count", endpoint="status", channel="SMS") == polls
    )
