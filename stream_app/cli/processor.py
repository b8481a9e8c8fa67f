"""``stream-app processor``: run the fallback processor until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from dataclasses import fields
from typing import Any

from stream_app.cli._logs import add_log_options, configure_logging
from stream_app.config import Settings, add_options, check_state_dir, from_args

ORDER = 30

DESCRIPTION = """\
Run the fallback processor: read send-requests and delivery-status, decide the next channel and
when a message has ended, and publish retry-commands, outcomes and dead-letters. Its pending timers
and flow states live in a local RocksDB store per partition (STREAM_APP_STATE_DIR), backed by the
compacted <app-id>-flows-changelog topic, so any instance can take over a partition.

Start as many instances as you like with the same STREAM_APP_APP_ID: they share the partitions.
SIGTERM (or Ctrl-C) stops it cleanly: the batch in flight is finished, offsets are committed and
a restarted instance carries on every pending timer.
"""

EPILOG = """\
examples:
  stream-app processor
      the defaults: broker localhost:9092, app id fallback-processor, metrics on :9464
  KAFKA_BOOTSTRAP_SERVERS=kafka:9092 STREAM_APP_STATE_DIR=/var/lib/stream-app stream-app processor
  stream-app processor --topic-prefix prod. --metrics-port 0     no HTTP endpoint
  stream-app processor --processing-guarantee exactly_once       needs a broker with transactions

endpoints: http://HOST:METRICS_PORT/metrics (Prometheus) and /healthz
logs: key=value lines on stderr (--log-format json: one JSON object per line); --log-level debug
      shows every command (destinations masked)
SIGUSR1 logs where each task of the processor waits (to diagnose a stall)
the topics must exist first: stream-app topics create
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "processor",
        help="run the fallback processor",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Every setting but the partition count, which only `topics create` uses (the processor reads
    # the counts the topics have).
    add_options(parser, *(f.name for f in fields(Settings) if f.name not in ("security", "partitions")))
    add_log_options(parser)
    parser.set_defaults(func=run)


def _dump_tasks() -> None:
    """SIGUSR1: log where every task of the processor waits (diagnosing a stall without a debugger)."""
    from stream_app.runtime.logs import log

    for task in asyncio.all_tasks():
        frames: list[str] = []
        coro: Any = task.get_coro()
        while coro is not None and len(frames) < 30:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        log(logging.WARNING, "task_stack", task=task.get_name(), stack=" > ".join(frames))


async def _main(settings: Settings) -> None:
    from stream_app.runtime import run_processor
    from stream_app.runtime.heap import tune_gc

    tune_gc()  # about 10% less CPU a record (stream_app/runtime/heap.py)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    await run_processor(settings, stop=stop)


def run(args: argparse.Namespace) -> int:
    configure_logging(args)
    settings = from_args(args)
    check_state_dir(args, settings)
    asyncio.run(_main(settings))
    return 0
