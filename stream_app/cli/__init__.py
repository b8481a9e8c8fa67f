"""The ``stream-app`` command.

Each subcommand is one module of this package, kept thin: it declares its options in
``register(subparsers)`` and calls into the room that does the work. Modules are discovered, so
adding a subcommand is adding a file; ``ORDER`` (an int) sorts them in ``--help``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from stream_app import __version__
from stream_app.errors import StreamAppError

DESCRIPTION = """\
Kafka-native multi-channel fallback: send on WhatsApp, fall back to RCS, then SMS, without sending
twice and without losing a message. Configuration comes from the environment (KAFKA_BOOTSTRAP_SERVERS,
STREAM_APP_*) or the same-named options of each command.
"""

EPILOG = """\
quick start:
  stream-app demo                 run broker, processor, dispatcher and gateway simulator, play the scenarios
  stream-app broker               run a local Kafka-compatible broker (Tansu) on localhost:9092
  stream-app topics create        create the topics of docs/contract.md
  stream-app processor            run the fallback processor
  stream-app send --help          publish a send request

Run `stream-app COMMAND --help` for the options of one command.
"""


def _commands() -> list[ModuleType]:
    import stream_app.cli as pkg

    mods = [
        importlib.import_module(f"{pkg.__name__}.{info.name}")
        for info in pkgutil.iter_modules(pkg.__path__)
        if not info.name.startswith("_")
    ]
    mods = [m for m in mods if hasattr(m, "register")]
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-app",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"stream-app {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for mod in _commands():
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code = func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `stream-app outcomes | head`: the reader has what it wanted and closed the pipe. Not an
        # error, and no traceback; stdout goes to /dev/null so the flush at exit stays quiet too.
        _detach_stdout()
        return 0
    except StreamAppError as exc:
        print(f"stream-app: error: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


def _detach_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):  # no real file behind stdout (a test's capture)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
