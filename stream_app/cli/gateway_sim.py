"""``stream-app gateway-sim``: the local gateway simulator (see :mod:`stream_app.gateway.simulator`)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from pathlib import Path

from stream_app.cli._logs import add_log_options, configure_logging
from stream_app.config import MAX_PORT, http_url, listen_port
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.runner import run_service

ORDER = 60

EPILOG = """\
default rules (by the destination's last two digits; --rules FILE replaces them):
  01 no WhatsApp (REJECTED)          05 WhatsApp READ after 2 s       09 every channel refused
  02 WhatsApp stuck in SENT          06 WhatsApp EXPIRED (code 8)     other: SENT, DELIVERED after 1 s
  03 WhatsApp ERROR (code 6)         07 429 burst (3 calls)           10 SENT, RECEIVED, DELIVERED, READ,
  04 WA + RCS refused, SMS 2 parts   08 slow answers (2 s)               then an inbound reply
                                                                      11 SENT, then UNKNOWN

examples:
  stream-app gateway-sim --port 19300
  stream-app gateway-sim --port 19300 --rules rules.json --time-scale 0.1
  STREAM_APP_WEBHOOK_SECRET=s3cret stream-app gateway-sim --webhook-url http://127.0.0.1:19310/dlr

  curl -s -X POST localhost:19300/api/message-server/sms/send -H 'X-Api-Key: k' \\
       -d '{"destination":"+393401234500","sender":"Shop","text":"hi","messageId":"m1:0"}'
  curl -s 'localhost:19300/api/partner-gateway/v1/messages/status/m1:0?channel=SMS' -H 'X-Api-Key: k'

channel outages (what the dispatcher's circuit breaker reacts to):
  stream-app gateway-sim --down WHATSAPP         start with every WhatsApp call answering 503
  curl -s -X PUT localhost:19300/_sim/outages/whatsapp -d '{"status": 500, "delay": 0}'
                                                 take WhatsApp down now (status 500-599; delay: seconds
                                                 before the error, a timeout for a shorter client timeout)
  curl -s -X DELETE localhost:19300/_sim/outages/whatsapp    bring it back
  curl -s localhost:19300/_sim/outages           what is down, and how many calls each refused
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gateway-sim",
        help="run a local messaging-gateway simulator (Qlara partner gateway API)",
        description=(
            "A local HTTP server implementing the partner gateway API: POST "
            "/api/message-server/{whatsapp|rcs|sms|viber}/send and GET "
            "/api/partner-gateway/v1/messages/status/{id}?channel=. Behaviour is scripted per "
            "destination by rules. DLRs are pushed to --webhook-url (signed with HMAC-SHA256 of "
            "STREAM_APP_WEBHOOK_SECRET) or served on the status endpoint for the poller."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=listen_port, default=19300, help=f"port to listen on, 0-{MAX_PORT} (default 19300)"
    )
    p.add_argument("--rules", type=Path, default=None, help="JSON rules file (default: built-in demo rules)")
    p.add_argument("--webhook-url", type=http_url, default=None, help="push DLR callbacks to this URL")
    p.add_argument(
        "--webhook-style",
        choices=("status", "events", "legacy", "universal"),
        default="status",
        help="callback shape: the status answer, the webhook guide's eventType events, the older "
        "status/error shape, or the SMS Universal API's (SMS: one DELIVERY per part with "
        "statusCode 3/6 and statusDescription; other channels as events) (default status)",
    )
    p.add_argument(
        "--webhook-auth",
        choices=("hmac", "token", "none"),
        default="hmac",
        help="sign callbacks (X-Signature), send the secret as X-Webhook-Token, or nothing (default hmac)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every scripted wait by this factor (default 1)",
    )
    p.add_argument(
        "--api-key",
        default=None,
        help="accept only this X-Api-Key (env STREAM_APP_GATEWAY_API_KEY; default: any non-empty key)",
    )
    p.add_argument(
        "--down",
        action="append",
        default=[],
        metavar="CHANNEL",
        help="start with this channel down: its send and status calls answer 503 until "
        "DELETE /_sim/outages/CHANNEL (repeatable)",
    )
    add_log_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stream_app.gateway.simulator import load_rules, run_simulator

    if not math.isfinite(args.time_scale) or args.time_scale <= 0:  # NaN passes a bare "<= 0"
        raise GatewayConfigError(f"--time-scale: must be > 0 and finite, got {args.time_scale:g}")
    from stream_app.contracts import Channel

    try:
        down = tuple(Channel(name.strip().upper()) for name in args.down)
    except ValueError:
        raise GatewayConfigError(
            f"--down: channels are {', '.join(c.value for c in Channel)}, got {', '.join(args.down)}"
        ) from None
    rules = load_rules(args.rules)
    api_key = args.api_key or os.environ.get("STREAM_APP_GATEWAY_API_KEY") or None
    secret = os.environ.get("STREAM_APP_WEBHOOK_SECRET", "").encode()
    if args.webhook_url and args.webhook_auth != "none" and not secret:
        raise GatewayConfigError(
            f"--webhook-url with --webhook-auth {args.webhook_auth} needs STREAM_APP_WEBHOOK_SECRET"
        )

    async def main(stop: asyncio.Event) -> None:
        ready = asyncio.Event()
        bound: list[int] = []  # the port listened on: the one the system chose for --port 0

        async def announce() -> None:
            await ready.wait()
            port = bound[0] if bound else args.port
            print(f"gateway simulator listening on http://{args.host}:{port}", flush=True)

        t = asyncio.create_task(announce())
        try:
            await run_simulator(
                args.host,
                args.port,
                rules=rules,
                api_key=api_key,
                webhook_url=args.webhook_url,
                webhook_secret=secret,
                webhook_style=args.webhook_style,
                webhook_auth=args.webhook_auth,
                time_scale=args.time_scale,
                down=down,
                stop=stop,
                ready=ready,
                on_bound=bound,
            )
        finally:
            t.cancel()

    configure_logging(args)
    return run_service(main, "gateway-sim")
