"""``stream-app channel close|open|list``: the operator's lever on a channel that is down."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import orjson

from stream_app.admin import channels
from stream_app.config import add_options, from_args
from stream_app.contracts import format_ms, to_json, to_ms
from stream_app.kafka.connect import quiet_client_logs
from stream_app.terminal import printable

ORDER = 48

DESCRIPTION = """\
Close or open a channel (WHATSAPP, RCS, SMS, VIBER) for every tenant or for one, on the compacted
channel-control topic that every processor instance reads whole. While a channel is closed for a
message's tenant, a step of its chain on that channel is not issued: the outcome lists that attempt
with endedBy SKIPPED and the next step is issued at once, with reason SKIPPED; a message with no
open step left ends FAILED, reason CHANNELS_CLOSED. A closure with --until reopens by itself then.

Attempts already issued on the channel are left alone (--in-flight wait, the default) or ended at
once as if their fallbackAfter had passed (--in-flight fallback: the next step goes out now, with
reason TIMEOUT). fallback is for a channel you know is down; if it is only slow, a message may
reach the person twice (the old attempt may still deliver): see docs/semantics.md.

The records are checked by the processor's own rules before they are published. The table keeps
the last record of each key: CHANNEL (every tenant) or tenant/CHANNEL. A closure for every tenant
and one for a tenant are separate keys: either closes the channel for that tenant's messages.
"""

EPILOG = """\
examples:
  stream-app channel close WHATSAPP --reason "provider outage" --until 2h
  stream-app channel close RCS --tenant banca-adriatica --in-flight fallback
  stream-app channel close SMS --until 2026-04-09T12:00:00Z
  stream-app channel open WHATSAPP
  stream-app channel list
"""

CLOSE_EPILOG = """\
examples:
  stream-app channel close WHATSAPP --until 2h --reason "Meta outage"
  stream-app channel close RCS --tenant banca-adriatica --in-flight fallback

--until takes a duration from now (90s, 30m, 2h, 1d, 1h30m, or seconds; at most ten years) or an
RFC 3339 time with an offset. Without it the channel stays closed until `stream-app channel open`.

exit status: 0 published, 2 error (bad channel or --until, broker unreachable, topic missing)
"""

OPEN_EPILOG = """\
examples:
  stream-app channel open WHATSAPP
  stream-app channel open RCS --tenant banca-adriatica

Opens the one key named: opening a tenant does not lift a closure for every tenant (and the other
way round); `stream-app channel list` shows what is closed.

exit status: 0 published, 2 error
"""

LIST_EPILOG = """\
examples:
  stream-app channel list
  stream-app channel list --json | jq 'select(.closedNow)'

One line per key: its last record (OPEN, CLOSED, or deleted), until when, what happens to attempts
in flight, when it was written and why. A CLOSED record whose until has passed shows as
"CLOSED (expired)": the channel is open again. Invalid records (the processors dead-letter them and
ignore them) are counted, not shown.

exit status: 0 done, 2 error (broker unreachable, topic missing)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "channel",
        help="close, open or list channels (skip a channel that is down in every fallback chain)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=lambda args: _help(parser))
    actions = parser.add_subparsers(title="actions", metavar="ACTION")

    close = actions.add_parser(
        "close",
        help="close a channel: steps on it are skipped until it is opened (or --until)",
        description="Close CHANNEL for every tenant, or for --tenant. " + DESCRIPTION.split("\n\n")[1],
        epilog=CLOSE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    close.add_argument("channel", metavar="CHANNEL", help="WHATSAPP, RCS, SMS or VIBER (any case)")
    close.add_argument("--tenant", help="only this tenant's messages (default: every tenant)")
    close.add_argument(
        "--until", metavar="DURATION|TIME", help="reopen by itself then: 2h, 30m, 1d, or 2026-04-09T12:00:00Z"
    )
    close.add_argument("--reason", help="why, for people reading `channel list` and the processor's logs")
    close.add_argument(
        "--in-flight",
        choices=("wait", "fallback"),
        default="wait",
        help="attempts already issued on the channel: wait (default) or fallback (end them now)",
    )
    add_options(close, "bootstrap_servers", "topic_prefix")
    close.set_defaults(func=_close)

    open_ = actions.add_parser(
        "open",
        help="open a channel again (for every tenant, or --tenant)",
        description="Open CHANNEL again for every tenant, or for --tenant: publishes an OPEN record.",
        epilog=OPEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    open_.add_argument("channel", metavar="CHANNEL", help="WHATSAPP, RCS, SMS or VIBER (any case)")
    open_.add_argument(
        "--tenant", help="the tenant whose closure to lift (default: the one for every tenant)"
    )
    add_options(open_, "bootstrap_servers", "topic_prefix")
    open_.set_defaults(func=_open)

    list_ = actions.add_parser(
        "list",
        help="show the channel-control table: what is closed, for whom, until when",
        description="Show the last record of every key of the channel-control table.",
        epilog=LIST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    list_.add_argument("--json", action="store_true", help="one JSON object per key, for scripts")
    add_options(list_, "bootstrap_servers", "topic_prefix")
    list_.set_defaults(func=_list)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _close(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    key, value, record = channels.closing(
        args.channel, tenant=args.tenant, until=args.until, reason=args.reason, in_flight=args.in_flight
    )
    partition, offset = asyncio.run(channels.publish(settings, key, value))
    print(
        f"closed {channels.describe(record)} "
        f"(key {key.decode()}, {settings.topics.channel_control}[{partition}]@{offset})"
    )
    return 0


def _open(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    key, value, record = channels.opening(args.channel, tenant=args.tenant)
    partition, offset = asyncio.run(channels.publish(settings, key, value))
    print(
        f"opened {channels.describe(record)} "
        f"(key {key.decode()}, {settings.topics.channel_control}[{partition}]@{offset})"
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    entries, invalid = asyncio.run(channels.read_table(settings))
    now = time.time_ns() // 1_000_000
    if args.json:
        for e in entries:
            line: dict[str, Any] = {"key": e.key, "closedNow": e.closed(now)}
            line["record"] = None if e.record is None else to_json(e.record)
            print(orjson.dumps(line).decode())
        return 0
    if not entries:
        print(f"no channel-control records on {settings.topics.channel_control}: every channel is open")
    else:
        rows = [("KEY", "STATE", "UNTIL", "IN-FLIGHT", "AT", "REASON")]
        for e in entries:
            r = e.record
            if r is None:
                rows.append((printable(e.key), "DELETED", "-", "-", "-", "-"))
                continue
            state = r.state.value
            if r.state.value == "CLOSED" and not e.closed(now):
                state = "CLOSED (expired)"
            rows.append(
                (
                    printable(e.key),  # written by whoever produced to channel-control
                    state,
                    "-" if r.until is None else format_ms(to_ms(r.until)),
                    r.in_flight.value if r.state.value == "CLOSED" else "-",
                    "-" if r.at is None else format_ms(to_ms(r.at)),
                    printable(r.reason or "-"),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row[:5], widths, strict=True)) + "  " + row[5])
    if invalid:
        print(f"({invalid} invalid record(s) skipped: see `stream-app dead-letters --source-topic ...`)")
    return 0
