"""``stream-app demo``: start everything on one laptop and play the seed pages' scenarios."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
from collections.abc import Mapping

from stream_app.config import SECURITY_PREFIXES, add_options, from_args
from stream_app.errors import ConfigError
from stream_app.kafka.connect import quiet_client_logs

ORDER = 1

DESCRIPTION = """\
Play the seed scenarios end to end: a local Kafka-compatible broker (Tansu), the topics, the
fallback processor, the dispatcher, the webhook receiver and the gateway simulator, all in this
process. One send request per scenario (FashionOutlet, ClinicaSalute, BancaSicura, Banca Adriatica,
TelcoMobile, FarmaExpress, all channels failing) with the seed pages' timeouts divided by --speed,
live progress as outcomes arrive, and a table per message at the end. Exit 0 when every message ended
as its scenario says, 1 otherwise.

Then the outage act (skip it with --no-outage; about 30 s more): the simulated gateway takes WhatsApp
down mid-run. Two promotions sent then fail on WhatsApp and are retried; the dispatcher's circuit
breaker counts the failures and publishes WHATSAPP CLOSED (with an until) on channel-control, and
those two go by SMS after their own wait. A promotion sent while WhatsApp is closed skips it at once
(its WhatsApp attempt ends SKIPPED, the SMS goes without waiting). WhatsApp comes back, the breaker's
probe after until succeeds and it publishes WHATSAPP OPEN; a last promotion goes by WhatsApp again.
The demo's breaker trips on 4 calls with more than half failed and closes for 15 s (see `stream-app
dispatcher --help` for the real defaults).
"""

EPILOG = """\
examples:
  stream-app demo                        local broker on a free port, 2 h timeouts played in 6 s
  (above --speed 2000 the gateway's own second-long timelines outgrow the scaled timeouts and
  the stories change: a WhatsApp delivered after its scaled timeout is a double delivery)
  stream-app demo --speed 600            slower: 2 h plays in 12 s
  stream-app demo --bootstrap-servers localhost:9092
                                         use a running broker instead (fresh topic prefix per run)
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from stream_app.demo.run import DEFAULT_SPEED, DEFAULT_TIMEOUT

    parser = sub.add_parser(
        "demo",
        help="run everything locally and play the seed scenarios (about a minute)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help=f"divide every fallbackAfter/ttl by this (default {DEFAULT_SPEED:g}: 2 h -> 6 s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when outcomes are missing after this long (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument("--verbose", action="store_true", help="show the services' logs")
    parser.add_argument(
        "--no-outage",
        dest="outage",
        action="store_false",
        help="skip the outage act (WhatsApp down, closed by the circuit breaker, skipped, reopened)",
    )
    # Not add_options' --bootstrap-servers: its help would show localhost:9092 as the default, but the
    # demo starts its own broker unless this option is given (KAFKA_BOOTSTRAP_SERVERS is not read).
    parser.add_argument(
        "--bootstrap-servers",
        dest="setting_bootstrap_servers",
        metavar="HOST:PORT",
        default=None,
        help="play against this running broker instead (default: start a local Tansu broker on a free "
        "port, plaintext: KAFKA_BOOTSTRAP_SERVERS is not read, and KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and "
        "KAFKA_SSL_* are left out)",
    )
    add_options(parser, "topic_prefix")
    parser.set_defaults(func=run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _without_security(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without its Kafka security settings, saying which ones it leaves out."""
    dropped = sorted(
        var for var in environ if var == "KAFKA_SECURITY_PROTOCOL" or var.startswith(SECURITY_PREFIXES)
    )
    if dropped:
        print(
            f"the local broker is plaintext: {', '.join(dropped)} left out "
            "(give --bootstrap-servers to play against your secured cluster)",
            flush=True,
        )
    return {var: value for var, value in environ.items() if var not in dropped}


def run(args: argparse.Namespace) -> int:
    from stream_app.demo.run import play, report
    from stream_app.logs import configure

    # nan passed a "<= 0" check, and inf divided every fallbackAfter down to 0.
    if not (math.isfinite(args.speed) and args.speed > 0):
        raise ConfigError(f"--speed: must be a number > 0, got {args.speed}")
    if not (math.isfinite(args.timeout) and args.timeout > 0):  # nan never timed out, 0 or less at once
        raise ConfigError(f"--timeout: must be a number of seconds > 0, got {args.timeout}")
    # The services' own log format (stream_app.logs); only warnings unless --verbose.
    configure("info" if args.verbose else "warning")
    if not args.verbose:
        quiet_client_logs()
    explicit = args.setting_bootstrap_servers is not None
    # The local broker speaks plaintext: a KAFKA_SECURITY_PROTOCOL or KAFKA_SASL_*/KAFKA_SSL_* meant
    # for the user's cluster would make every client fail its handshake against it.
    environ = dict(os.environ) if explicit else _without_security(os.environ)
    settings = from_args(args, environ)

    async def main() -> int:
        if explicit:
            rows = await play(settings, speed=args.speed, timeout=args.timeout, outage=args.outage)
        else:
            from stream_app.broker import LocalBroker

            broker = LocalBroker(port=_free_port())
            print(f"starting a local broker (Tansu) on {broker.bootstrap_servers} ...", flush=True)
            async with broker:
                local = from_args(args, {**environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers})
                rows = await play(local, speed=args.speed, timeout=args.timeout, outage=args.outage)
        print()
        print(report(rows))
        ok = all(r.ok for r in rows)
        print()
        print("every message ended as its scenario says" if ok else "some messages did NOT end as expected")
        return 0 if ok else 1

    return asyncio.run(main())
