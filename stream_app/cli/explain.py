"""``stream-app explain MESSAGE_ID``: why a message went the way it went, replayed and checked."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from stream_app.config import add_options, from_args
from stream_app.contracts import to_ms
from stream_app.contracts.catalogue import CATALOGUE
from stream_app.contracts.timefmt import INSTANTS, within_instants
from stream_app.explain import (
    DEFAULT_TOLERANCE_MS,
    Bounds,
    Explanation,
    Progress,
    UnknownMessage,
    explain_file,
    explain_kafka,
)
from stream_app.explain.records import EXPLAIN_IDS, GLOBAL_IDS
from stream_app.explain.render import render_json, render_text
from stream_app.kafka.connect import quiet_client_logs
from stream_app.runtime.logs import LOGGER

ORDER = 47

#: Exit status when the replay and the published records disagree (0: they agree; 1: unknown id;
#: 2: an error such as an unreachable broker or missing topics).
EXIT_DIFFERENCES = 3
EXIT_UNKNOWN = 1

DESCRIPTION = """\
Explain one message: find its records on the topics (its send requests and delivery statuses, the
channel-control records, the commands and the outcome the processor published, any late status),
replay its inputs through the processor's own decision step in order, at their record timestamps,
with the timers that fire in between at their deadlines, and print a timeline: each input, each
timer, the rule behind each decision (e.g. "WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s
-> SMS, reason TIMEOUT"), and what it produced. Every replayed command, outcome and late status is
held against what was published; any difference (a bug or a non-determinism) is printed with !!!
and exit status 3.

Closed channels and send windows are replayed too: each channel-control record goes, at its
timestamp, through the processor's own control table (into the view later decisions see; an
inFlight FALLBACK closure ends the message's open attempt on that channel, as the processor's sweep
does). The timeline names the record that skipped a step (SKIPPED: its key, reason and until) or cut
an attempt short (CONTROL), CHANNELS_CLOSED when no step is left open, a step held by the sendWindow
(DEFERRED: until when, and the deferredFrom its command carries) and OUTSIDE_SEND_WINDOW.

Only the message's partition of each topic is read (the partition its messageId key hashes to,
murmur2 as every producer of the contract), from the start of the topics' retention unless --since,
--until or --offsets bound it; and all of channel-control, every partition, up to --until but from
its beginning whatever --since says (a channel closed before the message still applies to it). A
long scan reports its progress on stderr. Reads without a consumer group: it never moves anyone's
offsets, and never talks to a running processor.

Run it with the processor's settings (STREAM_APP_TOPIC_PREFIX and the STREAM_APP_*_SECONDS bounds):
the replay decides with them. Times within --tolerance of the replay's count as equal: the processor
read its clock a little after each record's timestamp, and fired each timer a little after its deadline.
"""

_TOPICS = ", ".join(s.stem for s in CATALOGUE if s.id in EXPLAIN_IDS)

EPILOG = f"""\
examples:
  stream-app explain order-42                        the timeline, checked against what was published
  stream-app explain order-42 --since 2h             only records of the last two hours
  stream-app explain order-42 --since 2026-04-09T08:00:00Z --until 2026-04-09T12:00:00Z
  stream-app explain order-42 --offsets send-requests=1200: --offsets delivery-status=5000:
  stream-app explain order-42 --json | jq '.timeline[].rules[].text'
  stream-app explain order-42 --export order-42.jsonl     also save the records found, to replay later
  stream-app explain order-42 --from-file order-42.jsonl  replay an export offline (no broker needed)

a timeline looks like:
  08:20:00.104Z  input  send-requests[1]@0  send WHATSAPP 7200 s > SMS
                   ACCEPTED       request accepted: WHATSAPP(fallbackAfter 7200 s, until DELIVERED) > ...
                   INITIAL        -> WHATSAPP attempt 0, reason INITIAL
                   => command order-42:0 WHATSAPP reason INITIAL   = published retry-commands[1]@0 (+9 ms)
  10:20:00.104Z  timer  the message's timer, at its deadline
                   TIMEOUT        WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s -> SMS, reason TIMEOUT
  and with channel control:
                   SKIPPED        WHATSAPP attempt 0 not issued: channel-control 'WHATSAPP': WHATSAPP
                                  closed for all (provider outage), until 2026-04-09T12:00:00Z, ...
                   CONTROL        WHATSAPP attempt 0 still SENT, cut short by channel-control 'WHATSAPP': ...

export format (--export writes it, --from-file reads it; kcat can write it too): one JSON object per line,
  {{"topic": "send-requests", "partition": 1, "offset": 0, "timestamp": 1775722800104,
   "key": "order-42", "value": "<the record value as text>", "headers": [["traceparent", "00-..."]]}}
  timestamp: epoch ms or RFC 3339; value may also be the JSON object itself; keyBase64/valueBase64 for
  bytes that are not UTF-8; partition, offset and headers are optional. A broken line is reported
  with its number and the other lines are used. Topics: {_TOPICS},
  with or without a topic prefix.

exit status: 0 the replay agrees with what was published, 1 no record of that messageId,
  2 error (broker unreachable, topics missing, bad option, unreadable file),
  {EXIT_DIFFERENCES} the replay and the published records differ, 130 interrupted
"""

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_STEMS = {s.stem: s.id for s in CATALOGUE if s.id in EXPLAIN_IDS and s.id not in GLOBAL_IDS}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="replay one message's inputs and say why each decision was taken; flag any difference",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("message_id", metavar="MESSAGE_ID", help="the messageId to explain")
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="read records from TIME on: RFC 3339 (with an offset) or an age (30m, 2h, 7d)",
    )
    parser.add_argument("--until", metavar="TIME", help="read records up to TIME; timers replay up to it too")
    parser.add_argument(
        "--offsets",
        action="append",
        metavar="TOPIC=FROM:TO",
        help="read only offsets FROM (inclusive) to TO (exclusive) of the message's partition of TOPIC "
        "(its name without prefix); either side may be empty (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the timeline")
    parser.add_argument(
        "--from-file",
        metavar="FILE",
        type=Path,
        help="replay an export (JSON Lines, format below) instead of Kafka",
    )
    parser.add_argument(
        "--export", metavar="FILE", type=Path, help="also write the records found to FILE (JSON Lines)"
    )
    parser.add_argument(
        "--tolerance",
        metavar="SECONDS",
        type=float,
        default=DEFAULT_TOLERANCE_MS / 1000,
        help=f"times this close to the replay's count as equal (default {DEFAULT_TOLERANCE_MS / 1000:g})",
    )
    add_options(
        parser,
        "bootstrap_servers",
        "topic_prefix",
        "max_flow_seconds",
        "orphan_status_seconds",
        "late_status_seconds",
        "dedup_seconds",
        "max_request_bytes",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The replay drives the processor's own step, which logs each dead letter it stages: the timeline
    # says so already, and a replay's log lines on stderr would read like a processor's.
    level = LOGGER.level
    LOGGER.setLevel(logging.CRITICAL)
    try:
        return _run(args)
    finally:
        LOGGER.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    settings = from_args(args)
    quiet_client_logs()
    now = int(time.time() * 1000)
    try:
        if not args.message_id:  # a messageId has at least one character (contracts.MessageId)
            raise ValueError("MESSAGE_ID: must not be empty")
        bounds = Bounds(
            since_ms=_time(args.since, now, "--since"),
            until_ms=_time(args.until, now, "--until"),
            offsets=_offsets(args.offsets or []),
        )
        if bounds.since_ms is not None and bounds.until_ms is not None and bounds.until_ms <= bounds.since_ms:
            raise ValueError("--until must be later than --since")
        if not (math.isfinite(args.tolerance) and args.tolerance >= 0):  # nan, inf: a traceback at round()
            raise ValueError(f"--tolerance: must be >= 0 and finite (seconds), got {args.tolerance}")
        if args.from_file is not None and (args.export is not None or args.offsets):
            raise ValueError("--from-file reads no topic: --export and --offsets do not apply to it")
    except ValueError as exc:
        print(f"stream-app: error: {exc}", file=sys.stderr)
        return 2
    tolerance = round(args.tolerance * 1000)
    try:
        if args.from_file is not None:
            ex = explain_file(
                settings,
                args.message_id,
                args.from_file,
                tolerance_ms=tolerance,
                since_ms=bounds.since_ms,
                until_ms=bounds.until_ms,
            )
        else:
            ex = asyncio.run(
                explain_kafka(
                    settings,
                    args.message_id,
                    bounds,
                    tolerance_ms=tolerance,
                    progress=_Progress(),
                    export=args.export,
                )
            )
    except UnknownMessage as exc:
        print(f"stream-app: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    _show(ex, args.json)
    return 0 if ex.agrees else EXIT_DIFFERENCES


def _show(ex: Explanation, as_json: bool) -> None:
    print(render_json(ex) if as_json else render_text(ex), flush=True)


class _Progress:
    """Progress of a long scan on stderr: nothing for a scan under a second, then a line a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        if p.elapsed < 1.0 or p.elapsed - self.last < 1.0:
            return
        self.last = p.elapsed
        share = f" ({min(100, 100 * p.read // p.total)}%)" if p.total else ""
        print(
            f"scanning: {p.read:,} of {p.total:,} records{share}, {p.elapsed:.0f} s",
            file=sys.stderr,
            flush=True,
        )


def _time(text: str | None, now_ms: int, option: str) -> int | None:
    """Epoch ms of an RFC 3339 time with an offset, or of now minus an age (``30m``, ``2h``, ``7d``)."""
    if text is None:
        return None
    rel = _RELATIVE.fullmatch(text.strip())
    if rel is not None:
        age = float(rel.group(1)) * _UNIT_MS[rel.group(2)]  # inf for a few hundred digits
        ms = now_ms - round(age) if within_instants(now_ms - age) else None
    else:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(
                f"{option}: {text!r} is neither an RFC 3339 time nor an age like 30m, 2h, 7d"
            ) from None
        if when.tzinfo is None:
            raise ValueError(f"{option}: {text!r} needs an offset (Z or +02:00)")
        ms = to_ms(when.astimezone(UTC))
    if ms is None or not within_instants(ms):
        raise ValueError(f"{option}: {text!r} is outside {INSTANTS}")
    return ms


def _offsets(values: list[str]) -> dict[str, tuple[int | None, int | None]]:
    out: dict[str, tuple[int | None, int | None]] = {}
    for value in values:
        topic, sep, span = value.partition("=")
        lo, colon, hi = span.partition(":")
        if not sep or not colon or topic not in _STEMS:
            raise ValueError(
                f"--offsets: {value!r} is not TOPIC=FROM:TO with TOPIC one of {', '.join(_STEMS)}"
            )
        try:
            start, end = (int(lo) if lo else None, int(hi) if hi else None)
        except ValueError:
            raise ValueError(f"--offsets: {value!r}: FROM and TO must be whole numbers") from None
        if any(bound is not None and bound < 0 for bound in (start, end)):
            raise ValueError(f"--offsets: {value!r}: offsets are 0 or more")
        if start is not None and end is not None and start >= end:
            raise ValueError(f"--offsets: {value!r}: FROM must be below TO")  # TO is exclusive
        out[_STEMS[topic]] = (start, end)
    return out
