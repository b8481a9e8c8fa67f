"""``--log-level`` and ``--log-format`` for every long-running command, with one meaning everywhere."""

from __future__ import annotations

import argparse
import os

from stream_app.errors import ConfigError
from stream_app.logs import FORMAT_ENV, FORMATS, LEVEL_ENV, LEVELS, configure


def add_log_options(parser: argparse.ArgumentParser) -> None:
    """The two logging options; their defaults come from the environment, as every setting's do."""
    parser.add_argument(
        "--log-level",
        default=None,
        choices=LEVELS,
        help=f"log level (env {LEVEL_ENV}; default info; debug shows every command, destinations masked)",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=FORMATS,
        help=f"kv: one key=value line per event; json: one JSON object per line (env {FORMAT_ENV}; "
        "default kv)",
    )


def configure_logging(args: argparse.Namespace, env: dict[str, str] | None = None) -> None:
    """Configure the process's logs from the options, else the environment, else the defaults.

    A bad value in the environment is a one-line error, as a bad option is.
    """
    env = dict(os.environ) if env is None else env
    level = args.log_level or env.get(LEVEL_ENV, "info").lower()
    fmt = args.log_format or env.get(FORMAT_ENV, FORMATS[0]).lower()
    if level not in LEVELS:
        raise ConfigError(f"{LEVEL_ENV}={level!r}: choose one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"{FORMAT_ENV}={fmt!r}: choose one of {', '.join(FORMATS)}")
    configure(level, fmt)
