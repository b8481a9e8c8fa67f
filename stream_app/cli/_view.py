"""What ``stream-app outcomes`` and ``stream-app dead-letters`` share: show a topic once or as it grows.

Both read without a consumer group, print one line per record (readable, or JSON for scripts), stop
at ``--max``, and end cleanly on SIGTERM or Ctrl-C; only the topic and the rendering differ.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from stream_app.config import Settings

T = TypeVar("T")

#: Builds the record stream: ``(stop, on_ready)`` -> records.
Reader = Callable[[asyncio.Event, Callable[[], None]], AsyncGenerator[T, None]]


def add_view_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--follow``, ``--from-beginning``, ``--json`` and ``--max``, worded for ``what``."""
    parser.add_argument("--follow", "-f", action="store_true", help=f"keep waiting for new {what}")
    parser.add_argument(
        "--from-beginning", action="store_true", help="with --follow: start at the oldest record, not now"
    )
    parser.add_argument("--json", action="store_true", help="print each record as one line of JSON")
    parser.add_argument("--max", type=int, metavar="N", help="stop after showing N records")


def check_view_options(args: argparse.Namespace) -> str | None:
    """The one-line complaint about the view options, or None when they are fine."""
    if args.max is not None and args.max < 1:
        return "--max must be at least 1"
    return None


def show(
    args: argparse.Namespace,
    settings: Settings,
    topic: str,
    what: str,
    read: Reader[T],
    render: Callable[[T], str],
    keep: Callable[[T], bool] = lambda _: True,
) -> int:
    """Print the records of ``topic`` per the view options; 0 when done or stopped by SIGTERM."""

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
                print(f"following {topic} from {where}; Ctrl-C to stop", file=sys.stderr, flush=True)

        records = read(stop, ready)
        try:
            async for item in records:
                if not keep(item):
                    continue
                print(render(item), flush=True)
                shown += 1
                if args.max is not None and shown >= args.max:
                    break
        finally:
            await records.aclose()
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                loop.remove_signal_handler(signal.SIGTERM)
        if shown == 0 and not args.follow and not args.json:
            print(f"no {what} on {topic}", file=sys.stderr)
        return 0

    return asyncio.run(go())
