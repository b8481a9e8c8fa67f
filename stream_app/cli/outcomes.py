"""``stream-app outcomes``: show the outcomes (and late statuses) of messages, once or as they come."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from stream_app.admin.connect import quiet_client_logs
from stream_app.admin.follow import follow_outcomes, format_line, json_line
from stream_app.config import add_options, from_args

ORDER = 45

DESCRIPTION = """\
Show the records of the outcomes topic: one line per message that ended (messageId, result, the
channel and status it ended on, the path of attempts with their last statuses, and how long it
took) and one per late status (a success reported after the end; DOUBLE DELIVERY when the person
got the message twice). --json prints each record's JSON as one line, for scripts.

Without --follow it reads everything on the topic and exits. With --follow it waits for new
outcomes until Ctrl-C (or --max records), starting now, or at the start with --from-beginning.
Reads without a consumer group: it never moves anyone's offsets.
"""

EPILOG = """\
examples:
  stream-app outcomes                          everything so far, then exit
  stream-app outcomes --follow                 new outcomes as they happen
  stream-app outcomes -f --from-beginning      everything, then keep following
  stream-app outcomes --json | jq -r 'select(.result == "FAILED") | .messageId'
  stream-app outcomes --message-id order-42    only that message

a line looks like:
  08:20:04Z  txn-001  SUCCEEDED on SMS DELIVERED  path WHATSAPP(REJECTED) > SMS(DELIVERED)  in 4.2s

exit status: 0 done, 2 error (broker unreachable, outcomes topic missing), 130 interrupted
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "outcomes",
        help="show message outcomes (readable lines, or --json), once or --follow",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--follow", "-f", action="store_true", help="keep waiting for new outcomes")
    parser.add_argument(
        "--from-beginning", action="store_true", help="with --follow: start at the oldest record, not now"
    )
    parser.add_argument("--json", action="store_true", help="print each record's JSON on one line")
    parser.add_argument(
        "--message-id", action="append", metavar="ID", help="only these messages (repeatable)"
    )
    parser.add_argument("--max", type=int, metavar="N", help="stop after showing N records")
    add_options(parser, "bootstrap_servers", "topic_prefix")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    if args.max is not None and args.max < 1:
        print("stream-app: error: --max must be at least 1", file=sys.stderr)
        return 2
    wanted = set(args.message_id or [])

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # SIGTERM (a supervisor, the demo) ends the follow cleanly; only the main thread may install it.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGTERM, stop.set)
        shown = 0
        where = "the beginning" if args.from_beginning else "now"

        def ready() -> None:
            if args.follow:  # on stderr, so --json output stays pure JSON lines
                print(
                    f"following {settings.topics.outcomes} from {where}; Ctrl-C to stop",
                    file=sys.stderr,
                    flush=True,
                )

        records = follow_outcomes(
            settings, follow=args.follow, from_beginning=args.from_beginning, stop=stop, on_ready=ready
        )
        try:
            async for item in records:
                if wanted and (item.record is None or item.record.message_id not in wanted):
                    continue
                print(json_line(item) if args.json else format_line(item), flush=True)
                shown += 1
                if args.max is not None and shown >= args.max:
                    break
        finally:
            await records.aclose()
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.remove_signal_handler(signal.SIGTERM)
        if shown == 0 and not args.follow and not args.json:
            print(f"no outcomes on {settings.topics.outcomes}", file=sys.stderr)
        return 0

    return asyncio.run(go())
