"""``stream-app poller``: poll the gateway's status endpoint for attempts in flight (no webhooks)."""

from __future__ import annotations

import argparse
import asyncio

from stream_app.cli._logs import add_log_options, configure_logging
from stream_app.config import add_options, from_args, http_url
from stream_app.contracts.timefmt import MAX_SECONDS
from stream_app.gateway.runner import run_service

ORDER = 32

EPILOG = """\
Learns the attempts in flight from the ACCEPTED statuses on delivery-status (the dispatcher's) and
polls GET /api/partner-gateway/v1/messages/status/<messageId>:<attempt>?channel=... with exponential
backoff, publishing each new status. An attempt stops being polled at ERROR, EXPIRED, REJECTED, READ,
at DELIVERED unless --until-read, or after --max-age seconds. Gateway URL and key as for the
dispatcher (STREAM_APP_GATEWAY_URL, STREAM_APP_GATEWAY_API_KEY).

environment:
  STREAM_APP_POLLER_METRICS_PORT  port of /metrics and /healthz (default 9466; 0 turns it off)

endpoints: http://HOST:9466/metrics (Prometheus: polls by channel and result, statuses published,
errors, gateway latency) and /healthz (200 while the poll loop turns, 503 when stuck for 60 s)

examples:
  STREAM_APP_GATEWAY_API_KEY=test stream-app poller
  STREAM_APP_GATEWAY_API_KEY=... stream-app poller --gateway-url https://lora-api.example.com
  stream-app poller --min-interval 5 --max-interval 600 --until-read
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "poller",
        help="poll the gateway's status endpoint for in-flight attempts and publish their statuses",
        description=(
            "For gateways without webhooks (or as a safety net beside them): polls the delivery status "
            "of every attempt in flight and publishes what changed on delivery-status. Stateless: on "
            "start it rebuilds the in-flight set from delivery-status."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, "bootstrap_servers", "topic_prefix", "max_flow_seconds")
    p.add_argument(
        "--gateway-url", type=http_url, default=None, help="gateway base URL (env STREAM_APP_GATEWAY_URL)"
    )
    p.add_argument(
        "--min-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="first poll of an attempt this long after its ACCEPTED; the wait then doubles (default 1)",
    )
    p.add_argument(
        "--max-interval",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="longest wait between two polls of one attempt (default 300)",
    )
    p.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop polling an attempt this long after its ACCEPTED (default: --max-flow-seconds, 259200)",
    )
    p.add_argument("--until-read", action="store_true", help="keep polling after DELIVERED until READ")
    p.add_argument(
        "--metrics-port",
        default=None,
        metavar="PORT",
        help="port of /metrics and /healthz, 0 turns it off (env STREAM_APP_POLLER_METRICS_PORT; "
        "default 9466)",
    )
    add_log_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from stream_app.gateway.errors import GatewayConfigError
    from stream_app.gateway.poller import PollOptions, run_poller
    from stream_app.gateway.settings import gateway_from_options

    settings = from_args(args)
    gateway = gateway_from_options(
        {
            "url": ("--gateway-url", args.gateway_url or None),
            "poller_metrics_port": ("--metrics-port", args.metrics_port),
        }
    )
    if not (0 < args.min_interval <= args.max_interval and math.isfinite(args.max_interval)):
        raise GatewayConfigError("--min-interval must be > 0 and <= --max-interval, both finite")
    if args.max_age is not None and not 0 < args.max_age <= MAX_SECONDS:
        # inf was an OverflowError traceback once Kafka answered; 0 or less polled nothing, ever.
        raise GatewayConfigError(
            f"--max-age: must be > 0 and at most {MAX_SECONDS} seconds, got {args.max_age:g}"
        )
    options = PollOptions(
        min_interval=args.min_interval,
        max_interval=args.max_interval,
        max_age=args.max_age if args.max_age is not None else settings.max_flow_seconds,
        until_read=args.until_read,
    )

    async def main(stop: asyncio.Event) -> None:
        await run_poller(settings, gateway, options=options, stop=stop)

    configure_logging(args)
    return run_service(main, "poller")
