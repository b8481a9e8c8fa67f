"""One log format for every service: a ``key=value`` line per event, or one JSON object per line.

Every long-running command (processor, dispatcher, webhook, poller, gateway-sim) calls
:func:`configure` once, so a log store sees the same fields from all of them: ``ts``, ``level``,
``logger``, ``event`` and the event's own fields. ``key=value`` is the default because it reads well
in a terminal and greps well; ``--log-format json`` (or ``STREAM_APP_LOG_FORMAT=json``) is for log
shippers that parse JSON.

A log line must be safe to ship to a shared store: phone numbers are personal data, so :func:`mask`
keeps only enough of them to tell two apart when debugging a flow.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from stream_app.kafka.outage import outage_filter

#: The ``--log-format`` choices; the first is the default.
FORMATS = ("kv", "json")
#: The ``--log-level`` choices.
LEVELS = ("debug", "info", "warning", "error")
#: Environment variables giving the defaults of ``--log-format`` and ``--log-level``.
FORMAT_ENV = "STREAM_APP_LOG_FORMAT"
LEVEL_ENV = "STREAM_APP_LOG_LEVEL"

# Keep the country code plus a prefix (6 chars: "+39340") and the last 2 digits, as support desks do;
# everything in between is masked so a log line alone never identifies a person.
_KEEP_HEAD = 6
_KEEP_TAIL = 2
#: The attribute of a LogRecord that carries an event's structured fields (see :func:`event`).
_FIELDS = "stream_app_fields"


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


def kv(event_name: str, /, **fields: Any) -> str:
    """``event=<event> k=v ...`` with values quoted when they hold spaces, quotes or ``=``."""
    parts = [f"event={_fmt(event_name)}"]
    parts.extend(f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None)
    return " ".join(parts)


def event(logger: logging.Logger, level: int, name: str, /, **fields: Any) -> None:
    """Log event ``name`` with its fields: text for ``key=value``, the fields kept for JSON."""
    if logger.isEnabledFor(level):
        kept = {k: v for k, v in fields.items() if v is not None}
        logger.log(level, kv(name, **kept), extra={_FIELDS: (name, kept)})


def _ts(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _last_line(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    # One line per event: a traceback is summed up by its last line (the exception and message).
    if not record.exc_info:
        return None
    lines = formatter.formatException(record.exc_info).splitlines()
    return lines[-1] if lines else None


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=... logger=... event=...``: plain messages become ``event=log msg="..."``."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"ts={_ts(record)} level={record.levelname.lower()} logger={record.name} "
        msg = record.getMessage()
        line += msg if msg.startswith("event=") else kv("log", msg=msg)
        exc = _last_line(self, record)
        if exc is not None:
            line += " exc=" + _fmt(exc)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same keys as :class:`KeyValueFormatter`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": _ts(record), "level": record.levelname.lower(), "logger": record.name}
        structured = getattr(record, _FIELDS, None)
        if structured is not None:
            name, fields = structured
            out["event"] = name
            for key, value in fields.items():
                out.setdefault(key, value)
        else:
            out["event"] = "log"
            out["msg"] = record.getMessage()
        exc = _last_line(self, record)
        if exc is not None:
            out["exc"] = exc
        return orjson.dumps(out, default=str).decode()


def configure(level: int | str = logging.INFO, fmt: str = "kv") -> None:
    """Send every log line of the process to stderr in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every reconnect attempt at ERROR during an outage; WARNING keeps the news
    # without drowning the service's own lines.
    logging.getLogger("aiokafka").setLevel(max(level, logging.WARNING))
    # httpx logs every request at INFO: hundreds of lines a second from a busy dispatcher.
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
    outage_filter()  # and an outage in three lines, not eighty a second
