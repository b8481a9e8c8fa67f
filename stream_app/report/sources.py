"""Where the report's records come from: a JSONL export, or the ``outcomes`` topic.

Both feed an :class:`~stream_app.report.aggregate.Aggregator` record by record and tell progress on
stderr (at most once a second, so the figures stay readable and the cost stays nil). A record that
cannot be read is shown on stderr with where it was (``FILE line 17``, ``partition 3 offset 17``)
and why, for the first :data:`SHOW_BAD` of them, then only counted; every other record still counts.
The topic is read through :func:`stream_app.admin.follow.read_topic`, the project's one way of
reading a topic without a consumer group (it never moves anyone's offsets).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import IO

from stream_app.admin.follow import read_topic
from stream_app.config import Settings
from stream_app.report.aggregate import Aggregator
from stream_app.report.errors import BadRecord, ReportError
from stream_app.report.read import parse

#: Bad records shown one per line on stderr; the rest are counted in the report.
SHOW_BAD = 20
#: File read size: whole lines are cut from it, so memory stays at a few of these.
CHUNK = 1 << 20


class Progress:
    """``read 120,000 records (58,300/s) 43%`` on stderr, at most once per ``every`` seconds."""

    def __init__(
        self, what: str, *, out: IO[str] | None = None, every: float = 1.0, quiet: bool = False
    ) -> None:
        self.what = what
        self.out = out if out is not None else sys.stderr
        self.every = every
        self.quiet = quiet
        self.started = time.monotonic()
        self._next = self.started + every
        self._tty = bool(getattr(self.out, "isatty", lambda: False)())
        self._shown = False

    def tick(self, records: int, fraction: float | None = None) -> None:
        now = time.monotonic()
        if self.quiet or now < self._next:
            return
        self._next = now + self.every
        rate = records / max(now - self.started, 1e-9)
        share = f" {fraction:.0%}" if fraction is not None else ""
        line = f"reading {self.what}: {records:,} records ({rate:,.0f}/s){share}"
        if self._tty:
            print(f"\r{line}\x1b[K", end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)
        self._shown = True

    def done(self, agg: Aggregator) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self.started
        if self._tty and self._shown:
            print("\r\x1b[K", end="", file=self.out)
        print(
            f"read {agg.records:,} records of {self.what} in {elapsed:.1f} s "
            f"({agg.records / max(elapsed, 1e-9):,.0f}/s): {agg.outcomes:,} outcomes, "
            f"{agg.late_statuses:,} late statuses, {agg.bad:,} unreadable",
            file=self.out,
            flush=True,
        )


def _bad(agg: Aggregator, where: str, reason: str, err: IO[str]) -> None:
    agg.add_bad(where, reason)
    if agg.bad <= SHOW_BAD:
        print(f"stream-app report: {where}: {reason}", file=err, flush=True)
    elif agg.bad == SHOW_BAD + 1:
        print(
            f"stream-app report: more unreadable records: counted, not shown (first {SHOW_BAD} above)",
            file=err,
            flush=True,
        )


def read_file(path: str, agg: Aggregator, progress: Progress, err: IO[str] | None = None) -> None:
    """Count every line of a JSONL export (``-`` for stdin); blank lines are skipped."""
    err = err if err is not None else sys.stderr
    name = "stdin" if path == "-" else path
    if path == "-" and sys.stdin is None:  # `<&-`, or a supervisor that gives the process no stdin
        raise ReportError("--from-file -: stdin is closed; give a file, or pipe the export in")
    try:
        handle = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from None
    size = None if path == "-" else _size(path)
    done_bytes = 0
    line_no = 0
    tail = b""
    try:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                break
            done_bytes += len(chunk)
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                line_no += 1
                _one(line, line_no, name, agg, err)
            progress.tick(agg.records, done_bytes / size if size else None)
        if tail:
            line_no += 1
            _one(tail, line_no, name, agg, err)
    except OSError as exc:
        raise ReportError(f"reading {path} failed at line {line_no}: {exc.strerror or exc}") from None
    finally:
        if path != "-":
            handle.close()


def _one(line: bytes, line_no: int, name: str, agg: Aggregator, err: IO[str]) -> None:
    if not line.strip():
        return
    try:
        agg.add(parse(line))
    except BadRecord as exc:
        _bad(agg, f"{name} line {line_no}", exc.reason, err)


def _size(path: str) -> int | None:
    try:
        return os.stat(Path(path)).st_size or None
    except OSError:
        return None


def read_kafka(
    settings: Settings,
    agg: Aggregator,
    progress: Progress,
    *,
    since_ms: int | None = None,
    err: IO[str] | None = None,
) -> None:
    """Count every record of ``outcomes`` on the broker now (a snapshot: it stops at the end).

    ``since_ms`` starts each partition at the first record written at or after it (the broker's
    time index), so a report over the last hour does not read thirty days; the aggregator's filter
    still decides by ``completedAt``.
    """
    err = err if err is not None else sys.stderr
    topic = settings.topics.outcomes

    async def go() -> None:
        records = read_topic(settings, topic, since_ms=since_ms)
        try:
            async for raw in records:
                if raw.value is None:
                    _bad(agg, f"partition {raw.partition} offset {raw.offset}", "null value", err)
                else:
                    try:
                        agg.add(parse(raw.value))
                    except BadRecord as exc:
                        _bad(agg, f"partition {raw.partition} offset {raw.offset}", exc.reason, err)
                progress.tick(agg.records)
        finally:
            await records.aclose()

    asyncio.run(go())
