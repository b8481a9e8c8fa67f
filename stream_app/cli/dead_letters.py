"""``stream-app dead-letters``: show the records that were refused, with why, once or as they come."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncGenerator, Callable

from stream_app.admin.dead_letters import DeadLetter, format_line, json_line
from stream_app.admin.follow import read_topic
from stream_app.cli._view import add_view_options, check_view_options, show
from stream_app.config import add_options, from_args
from stream_app.kafka.connect import quiet_client_logs

ORDER = 46

DESCRIPTION = """\
Show the records of the dead-letters topic: every input the processor, the dispatcher or the
webhook receiver refused (a request or status that is not valid, a conflicting repeat, a command it
cannot read, a callback body of no known shape, a held callback never matched). One line each: when,
where the record came from (topic[partition]@offset), the kind of refusal and its one-line reason,
then the start of the refused key and value. --json prints one JSON object per record with the
key and value whole (as text, or keyBase64/valueBase64 when they are not UTF-8), for scripts.

Without --follow it reads everything on the topic and exits. With --follow it waits for new dead
letters until Ctrl-C (or --max records), starting now, or at the start with --from-beginning.
Reads without a consumer group: it never moves anyone's offsets.
"""

EPILOG = """\
examples:
  stream-app dead-letters                          everything so far, then exit
  stream-app dead-letters --follow                 new dead letters as they come
  stream-app dead-letters --source-topic send-requests
  stream-app dead-letters --json | jq -r '.reason' | sort | uniq -c

a line looks like:
  08:20:04Z  send-requests[3]@17  InvalidRecord  destination: must be E.164, '+' then 8 to 15
  digits  key=m-1 value={"messageId":"m-1","destination":"12345",...}   (one line on a terminal)

A fixed record can be published again as it is (its key and value are untouched), e.g. with
`stream-app send --file` for a request. A record too large to dead-letter whole comes without what
did not fit (its value first); the reason says so and where the record is.

exit status: 0 done, 2 error (broker unreachable, dead-letters topic missing), 130 interrupted
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dead-letters",
        help="show refused records with their reasons (readable lines, or --json), once or --follow",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_view_options(parser, "dead letters")
    parser.add_argument(
        "--source-topic",
        action="append",
        metavar="TOPIC",
        help="only records refused from this topic, with or without the prefix (repeatable)",
    )
    add_options(parser, "bootstrap_servers", "topic_prefix")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    if (complaint := check_view_options(args)) is not None:
        print(f"stream-app: error: {complaint}", file=sys.stderr)
        return 2
    sources = {name for given in args.source_topic or [] for name in (given, settings.topic_prefix + given)}
    topic = settings.topics.dead_letters

    async def read(stop: asyncio.Event, ready: Callable[[], None]) -> AsyncGenerator[DeadLetter, None]:
        records = read_topic(
            settings, topic, follow=args.follow, from_beginning=args.from_beginning, stop=stop, on_ready=ready
        )
        try:
            async for raw in records:
                yield DeadLetter.of(raw)
        finally:
            await records.aclose()

    def keep(letter: DeadLetter) -> bool:
        return not sources or letter.source_topic in sources

    render = json_line if args.json else format_line
    return show(args, settings, topic, "dead letters", read, render, keep)
