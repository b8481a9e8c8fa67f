"""``stream-app webhook``: receive gateway DLR callbacks and publish them on delivery-status."""

from __future__ import annotations

import argparse
import asyncio

from stream_app.cli._logs import add_log_options, configure_logging
from stream_app.config import MAX_PORT, add_options, check_state_dir, from_args, listen_port
from stream_app.gateway.runner import run_service

ORDER = 31

EPILOG = """\
authentication, STREAM_APP_WEBHOOK_AUTH (secret in STREAM_APP_WEBHOOK_SECRET):
  hmac   header X-Signature: sha256=<hex HMAC-SHA256 of the raw body> (default with a secret)
  token  the secret in header X-Webhook-Token or in the callback URL's ?token= (the Qlara gateway
         signs nothing: register https://host/dlr?token=SECRET as the callback URL)
  none   no check at all; only behind a proxy that authenticates the gateway
A refused call gets 401; bodies over 64 KiB get 413.

Every documented callback shape is read (status answer, eventType DELIVERY/READ/INBOUND, the older
status/error shape); RECEIVED is published as SENT, UNKNOWN, unmapped codes and INBOUND replies are
answered 200 and counted, not published. customerMessageId "<messageId>:<attempt>" (the dispatcher's
commandId) is split back; a READ that names only the gateway's messageId is matched to its attempt
through the providerMessageId seen on delivery-status (an index kept in STREAM_APP_STATE_DIR), held
(202) until then, and dead-lettered after STREAM_APP_ORPHAN_STATUS_SECONDS. Any other body gets 400
with its reason and is kept on dead-letters.

endpoints on the same --host/--port: GET /metrics (Prometheus: callbacks by result, statuses
published) and GET /healthz (200, or 503 once the broker has refused every record for 60 s).
Expose only the callback path to the internet (route /dlr alone through the TLS proxy).

examples:
  STREAM_APP_WEBHOOK_SECRET=s3cret stream-app webhook --port 19310
  STREAM_APP_WEBHOOK_SECRET=s3cret stream-app gateway-sim --webhook-url http://127.0.0.1:19310/dlr

  body='{"customerMessageId":"m1:0","channel":"SMS","deliveryStatus":"DELIVERED"}'
  sig=$(printf %s "$body" | openssl dgst -sha256 -hmac s3cret | sed 's/^.* //')
  curl -s localhost:19310/dlr -H "X-Signature: sha256=$sig" -d "$body"
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "webhook",
        help="receive gateway delivery callbacks and publish them on delivery-status",
        description=(
            "An HTTP receiver for the gateway's delivery-report callbacks. Each authenticated DLR becomes a "
            "DeliveryStatus on delivery-status, keyed by messageId, acknowledged to the gateway only "
            "after the broker has it (503 otherwise, so the gateway retries)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(
        p,
        "bootstrap_servers",
        "topic_prefix",
        "state_dir",
        "orphan_status_seconds",
        "max_flow_seconds",
        "late_status_seconds",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=listen_port, default=19310, help=f"port to listen on, 0-{MAX_PORT} (default 19310)"
    )
    p.add_argument("--path", type=_callback_path, default="/dlr", help="callback path (default /dlr)")
    add_log_options(p)
    p.set_defaults(func=run)


def _callback_path(text: str) -> str:
    """``--path`` (argparse ``type``): an absolute URL path; ``dlr`` was an AssertionError traceback."""
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must start with /, e.g. /dlr, got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    from stream_app.gateway.settings import gateway_from_env
    from stream_app.gateway.webhook import run_webhook

    settings = from_args(args)
    gateway = gateway_from_env()
    check_state_dir(args, settings)

    async def main(stop: asyncio.Event) -> None:
        ready = asyncio.Event()
        bound: list[int] = []  # the port listened on: the one the system chose for --port 0

        async def announce() -> None:
            await ready.wait()
            where = f"http://{args.host}:{bound[0] if bound else args.port}{args.path}"
            print(f"webhook receiver listening on {where} -> {settings.topics.delivery_status}", flush=True)

        task = asyncio.create_task(announce())
        try:
            await run_webhook(
                settings,
                gateway,
                host=args.host,
                port=args.port,
                path=args.path,
                stop=stop,
                ready=ready,
                on_bound=bound,
            )
        finally:
            task.cancel()

    configure_logging(args)
    return run_service(main, "webhook")
