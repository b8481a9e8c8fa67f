"""``stream-app dispatcher``: retry-commands -> gateway sends -> ACCEPTED/REJECTED on delivery-status."""

from __future__ import annotations

import argparse
import asyncio

from stream_app.cli._logs import add_log_options, configure_logging
from stream_app.config import add_options, from_args, http_url
from stream_app.gateway.runner import run_service

ORDER = 30

EPILOG = """\
environment:
  STREAM_APP_GATEWAY_URL              gateway base URL (default http://127.0.0.1:19300, the simulator)
  STREAM_APP_GATEWAY_API_KEY          sent as X-Api-Key; read from the environment only, never logged
  STREAM_APP_GATEWAY_TIMEOUT_SECONDS  per HTTP call (default 10)
  STREAM_APP_GATEWAY_MAX_CONNECTIONS  keep-alive connections to the gateway (default 100)
  STREAM_APP_DISPATCH_CONCURRENCY     in-flight sends per channel: "16" or "WHATSAPP=8,SMS=32"
  STREAM_APP_DISPATCH_RATE            sends per second per channel, e.g. "SMS=50" (default: no limit)
  STREAM_APP_DISPATCH_MAX_IN_FLIGHT   commands read but not finished before fetching pauses (1000)
  STREAM_APP_DISPATCH_BACKOFF_BASE_SECONDS  first retry wait of 429, 5xx, timeouts, resets (0.2)
  STREAM_APP_DISPATCH_BACKOFF_MAX_SECONDS   longest retry wait (30; full jitter, doubling)
  STREAM_APP_DISPATCHER_METRICS_PORT  port of /metrics and /healthz (default 9465; 0 turns it off)

circuit breaker (one per channel; publishes on channel-control):
  STREAM_APP_BREAKER_FAILURE_RATIO     trip when MORE than this share of calls failed (0.5; 1: never)
  STREAM_APP_BREAKER_WINDOW_SECONDS    over this sliding window (60)
  STREAM_APP_BREAKER_MIN_CALLS         and at least this many calls in it (20)
  STREAM_APP_BREAKER_OPEN_SECONDS      the channel is CLOSED until now + this, then probed (60)
  STREAM_APP_BREAKER_MAX_OPEN_SECONDS  each failed probe doubles it, up to this (900)
  A failure is a 5xx, 408, timeout or reset on the channel's sends and status look-ups; a 422 or
  accepted: false is about one message and counts as the channel working; a 429 does not count.
  Tripped: a ChannelControl CLOSED (key CHANNEL, inFlight WAIT, until) on channel-control, so the
  processor skips the channel. After until: a probe (the last command again, with simulation:
  true); it succeeds: OPEN; it fails: CLOSED again, for twice as long. An operator's close
  (stream-app channel close) is never lifted, and no close is ever shortened, whatever number of
  dispatchers run.

endpoints: http://HOST:9465/metrics (Prometheus: commands in, sends by channel and result, gateway
latency, sent-log skips, dead letters, consumer lag, breaker state, transitions, probes and
channel-control records) and /healthz (200 while the loop turns, 503 when it has been stuck for 60 s)

Each commandId is sent at most once, across restarts, rebalances and any number of dispatchers in the
group: the record of sent commands is the compacted topic <prefix><app-id>-dispatcher-sentlog (created
by `stream-app topics create`), partition p of which moves with partition p of retry-commands. No
local state: a dispatcher needs no persistent volume.

examples:
  stream-app gateway-sim --port 19300 &
  STREAM_APP_GATEWAY_API_KEY=test stream-app dispatcher --bootstrap-servers localhost:9092

  STREAM_APP_GATEWAY_URL=https://lora-api.example.com STREAM_APP_GATEWAY_API_KEY=... \\
  STREAM_APP_DISPATCH_RATE=SMS=50,WHATSAPP=20 stream-app dispatcher
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dispatcher",
        help="send retry-commands to the messaging gateway and publish ACCEPTED/REJECTED",
        description=(
            "Consumes retry-commands (consumer group <app-id>-dispatcher, manual commits), calls the "
            "gateway's send endpoint for each command, and publishes the answer as a DeliveryStatus "
            "(ACCEPTED with providerMessageId, or REJECTED with reasons) on delivery-status. 429, 5xx, "
            "timeouts and resets are retried with backoff and jitter; a command not sent before its "
            "notAfter becomes REJECTED with reason NOT_SENT_BEFORE_NOT_AFTER. A channel whose gateway "
            "calls fail as a whole is closed on channel-control (circuit breaker) and reopened once a "
            "probe succeeds."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, "bootstrap_servers", "topic_prefix", "app_id", "dedup_seconds")
    p.add_argument(
        "--gateway-url", type=http_url, default=None, help="gateway base URL (env STREAM_APP_GATEWAY_URL)"
    )
    p.add_argument("--concurrency", default=None, help="per channel, e.g. 16 or SMS=32,WHATSAPP=8")
    p.add_argument("--rate", default=None, help="sends/s per channel, e.g. SMS=50 (0 = no limit)")
    p.add_argument(
        "--metrics-port",
        default=None,
        metavar="PORT",
        help="port of /metrics and /healthz, 0 turns it off (env STREAM_APP_DISPATCHER_METRICS_PORT; "
        "default 9465)",
    )
    add_log_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from stream_app.gateway.dispatcher import run_dispatcher
    from stream_app.gateway.settings import gateway_from_options

    settings = from_args(args)
    gateway = gateway_from_options(
        {
            "url": ("--gateway-url", args.gateway_url or None),
            "concurrency": ("--concurrency", args.concurrency or None),
            "rate": ("--rate", args.rate or None),
            "dispatcher_metrics_port": ("--metrics-port", args.metrics_port),
        }
    )

    async def main(stop: asyncio.Event) -> None:
        await run_dispatcher(settings, gateway, stop=stop)

    configure_logging(args)
    return run_service(main, "dispatcher")
