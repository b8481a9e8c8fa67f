"""Structured logs: one ``key=value`` line per event, destinations masked.

A log line must be greppable and safe to ship to a shared log store: phone numbers are personal
data, so :func:`mask` keeps only enough of them to tell two apart when debugging a flow.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from stream_app.kafka.outage import outage_filter

LOGGER = logging.getLogger("stream_app.runtime")

# Keep the country code plus a prefix (6 chars: "+39340") and the last 2 digits, as support desks do;
# everything in between is masked so a log line alone never identifies a person.
_KEEP_HEAD = 6
_KEEP_TAIL = 2


def mask(destination: str) -> str:
    """``+393401234567`` -> ``+39340*****67``; short values are masked entirely."""
    hidden = len(destination) - _KEEP_HEAD - _KEEP_TAIL
    if hidden < 3:
        return "*" * len(destination)
    return destination[:_KEEP_HEAD] + "*" * hidden + destination[-_KEEP_TAIL:]


def _fmt(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return text


def kv(event: str, **fields: Any) -> str:
    """``event=<event> k=v ...`` with values quoted when they hold spaces, quotes or ``=``."""
    parts = [f"event={_fmt(event)}"]
    parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)
    return " ".join(parts)


def log(level: int, event: str, **fields: Any) -> None:
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, kv(event, **fields))


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... event=...``: the message is already ``key=value`` pairs."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line = f"ts={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} logger={record.name} "
        msg = record.getMessage()
        line += msg if msg.startswith("event=") else kv("log", msg=msg)
        if record.exc_info:
            line += " exc=" + _fmt(self.formatException(record.exc_info).splitlines()[-1])
        return line


def configure(level: int = logging.INFO) -> None:
    """Send every ``stream_app`` and ``aiokafka`` log line to stderr as ``key=value``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at ERROR during an outage; WARNING keeps the news
    # without drowning the processor's own lines.
    logging.getLogger("aiokafka").setLevel(max(level, logging.WARNING))
    outage_filter()  # and an outage in three lines, not eighty a second
