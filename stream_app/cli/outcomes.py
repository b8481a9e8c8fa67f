"""``stream-app outcomes``: show the outcomes (and late statuses) of messages, once or as they come."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncGenerator, Callable

from stream_app.admin.follow import Followed, follow_outcomes, format_line, json_line
from stream_app.cli._view import add_view_options, check_view_options, show
from stream_app.config import add_options, from_args
from stream_app.kafka.connect import quiet_client_logs

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
a failed attempt shows the gateway's reasons, when it gave any: WHATSAPP(REJECTED: template not approved)

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
    add_view_options(parser, "outcomes")
    parser.add_argument(
        "--message-id", action="append", metavar="ID", help="only these messages (repeatable)"
    )
    add_options(parser, "bootstrap_servers", "topic_prefix")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    if (complaint := check_view_options(args)) is not None:
        print(f"stream-app: error: {complaint}", file=sys.stderr)
        return 2
    wanted = set(args.message_id or [])

    def read(stop: asyncio.Event, ready: Callable[[], None]) -> AsyncGenerator[Followed, None]:
        return follow_outcomes(
            settings, follow=args.follow, from_beginning=args.from_beginning, stop=stop, on_ready=ready
        )

    def keep(item: Followed) -> bool:
        return not wanted or (item.record is not None and item.record.message_id in wanted)

    render = json_line if args.json else format_line
    return show(args, settings, settings.topics.outcomes, "outcomes", read, render, keep)
