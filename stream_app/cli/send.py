"""``stream-app send``: publish a send request (or a cancel) on ``send-requests``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from stream_app.admin.cancel import cancel_and_watch
from stream_app.admin.errors import InvalidInput
from stream_app.admin.publish import (
    Prepared,
    Published,
    Request,
    cancel_request,
    parse_records,
    publish_requests,
    request_from_flags,
)
from stream_app.config import add_options, from_args
from stream_app.contracts import CancelRequest, encode
from stream_app.kafka.connect import quiet_client_logs

ORDER = 40

#: Seconds ``send --cancel`` waits for the message's outcome: a running processor answers a cancel
#: within a batch (well under a second); longer means it is stopped or far behind, worth saying.
CANCEL_WAIT = 10.0

DESCRIPTION = """\
Publish a SendRequest (or a CancelRequest) on send-requests, keyed by its messageId. The request is
checked with the same rules as the processor's (E.164 destination, 1 to 8 steps, known channels, ttl
or expiresAt, ...) before anything is sent; a bad one is refused with a one-line reason, exit 2.

Give the request as JSON with --file (one object, an array, or JSON Lines; - reads stdin), or with
flags: --destination and --chain, plus optional --content-json, --ttl, ... A chain step is
CHANNEL[:FALLBACK_AFTER_SECONDS[:SUCCESS_STATUS]]; steps are tried in order. A request from a file is
sent as written (compacted; fields this version does not know are kept); one from flags in the
canonical form, with requestedAt set to now.
"""

EPILOG = """\
examples:
  stream-app send --destination +393401234567 --chain WHATSAPP:600:DELIVERED,RCS:300,SMS \\
      --content-json 'WHATSAPP={"phoneNumberId": 5, "template": {"id": 42}}' \\
      --content-json 'RCS={"agentId": 1, "templateId": 10}' \\
      --content-json 'SMS={"sender": "BancaAdri", "text": "Gentile Giulia, ..."}'
  stream-app send --message-id order-42 --destination +393401234567 --chain SMS --ttl 3600
  stream-app send --file request.json
  cat requests.jsonl | stream-app send --file -
  stream-app send --cancel order-42 --reason paid    then says what it did (waits up to 10 s)
  stream-app send --file request.json --dry-run       validate and print, send nothing

--content-json JSON gives every step that content; CHANNEL=JSON only the steps on that channel;
N=JSON step N (0-based). Without --message-id a unique cli-<hex> id is made and printed.

A cancel of a message that is unknown or has ended changes nothing and produces nothing, so after
publishing it `--cancel` watches the outcomes and says what happened: cancelled (exit 0), the message
had already ended or ended first (exit 1), or no outcome within --wait (exit 1: unknown messageId, or
the processor is stopped or behind).

exit status: 0 sent (or cancelled), 1 the cancel changed nothing, 2 error (invalid request, missing
topic, broker unreachable)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "send",
        help="publish a send request (from a JSON file or flags) or a cancel",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--file", "-f", metavar="PATH", help="JSON request(s): a file, or - for stdin")
    what.add_argument("--cancel", metavar="MESSAGE_ID", help="cancel this message instead of sending one")
    parser.add_argument("--reason", help="with --cancel: why (copied to the outcome)")
    parser.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"with --cancel: wait this long for the outcome to say what the cancel did (default "
        f"{CANCEL_WAIT:g}; 0: send and return)",
    )
    parser.add_argument("--message-id", help="messageId, the Kafka key (default: a new cli-<hex> id)")
    parser.add_argument("--destination", metavar="E164", help="phone number in E.164, e.g. +393401234567")
    parser.add_argument(
        "--chain", metavar="STEPS", help="fallback chain, e.g. WHATSAPP:600:DELIVERED,RCS:300,SMS"
    )
    parser.add_argument(
        "--content-json",
        action="append",
        default=[],
        metavar="[CHANNEL=|N=]JSON",
        help="content of the steps (opaque to the processor, sent to the gateway); repeatable",
    )
    parser.add_argument("--ttl", type=float, metavar="SECONDS", help="give up (EXPIRED) after this long")
    parser.add_argument("--expires-at", metavar="RFC3339", help="give up at this moment, with offset")
    parser.add_argument("--tenant")
    parser.add_argument("--campaign-id")
    parser.add_argument("--metadata-json", metavar="JSON", help="object copied to the outcome")
    parser.add_argument("--simulation", action="store_true", help="ask the gateway for a dry run")
    parser.add_argument("--traceparent", help="W3C trace context header to put on the record")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the record, send nothing")
    add_options(parser, "bootstrap_servers", "topic_prefix")
    parser.set_defaults(func=run)


def _requests(args: argparse.Namespace) -> list[Request | Prepared]:
    flags = (
        [
            f"--{name.replace('_', '-')}"
            for name in (
                "message_id",
                "destination",
                "chain",
                "ttl",
                "expires_at",
                "tenant",
                "campaign_id",
                "metadata_json",
            )
            if getattr(args, name) is not None
        ]
        + (["--content-json"] if args.content_json else [])
        + (["--simulation"] if args.simulation else [])
    )
    if args.wait is not None and args.cancel is None:
        raise InvalidInput("--wait goes with --cancel")
    if args.wait is not None and not args.wait >= 0:
        raise InvalidInput(f"--wait must be >= 0 seconds, got {args.wait:g}")
    if args.cancel is not None:
        if flags:
            raise InvalidInput(f"--cancel takes only --reason, not {', '.join(flags)}")
        return [cancel_request(args.cancel, args.reason)]
    if args.reason is not None:
        raise InvalidInput("--reason goes with --cancel")
    if args.file is not None:
        if flags:
            raise InvalidInput(f"--file gives the whole request; drop {', '.join(flags)}")
        if args.file == "-":
            if sys.stdin is None:  # `<&-`, or a supervisor that gives the process no stdin
                raise InvalidInput("--file -: stdin is closed; give a file, or pipe the requests in")
            return list(parse_records(sys.stdin.buffer.read(), "stdin"))
        path = Path(args.file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInput(f"--file {path}: {exc.strerror or exc}") from None
        return list(parse_records(data, str(path)))
    return [
        request_from_flags(
            message_id=args.message_id,
            destination=args.destination,
            chain=args.chain,
            contents=args.content_json,
            ttl=args.ttl,
            expires_at=args.expires_at,
            tenant=args.tenant,
            campaign_id=args.campaign_id,
            simulation=args.simulation,
            metadata_json=args.metadata_json,
        )
    ]


def run(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    requests = _requests(args)
    if args.dry_run:
        for request in requests:
            print((request.value if isinstance(request, Prepared) else encode(request)).decode())
        return 0
    wait = CANCEL_WAIT if args.wait is None else args.wait
    if args.cancel is not None and wait > 0:
        [cancel] = requests
        assert isinstance(cancel, CancelRequest)  # _requests made it from --cancel
        report = asyncio.run(cancel_and_watch(settings, cancel, wait, traceparent=args.traceparent))
        _sent(report.published)
        print(report.text)
        return 0 if report.cancelled else 1
    published = asyncio.run(publish_requests(settings, requests, traceparent=args.traceparent))
    for p in published:
        _sent(p)
    return 0


def _sent(p: Published) -> None:
    # "send" is the record's type; a person reads "sent request m1", not "sent send m1".
    what = "request" if p.kind == "send" else p.kind
    print(f"sent {what} {p.message_id} to {p.topic} partition {p.partition} offset {p.offset}", flush=True)
