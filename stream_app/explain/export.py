"""The export line format: one JSON object per record, what ``--export`` writes and ``--from-file`` reads.

```
{"topic": "send-requests", "partition": 3, "offset": 17, "timestamp": 1775722500123,
 "key": "order-42", "value": "{\"messageId\": \"order-42\", ...}", "headers": [["traceparent", "00-..."]]}
```

- ``topic``: the topic's name, with or without a ``STREAM_APP_TOPIC_PREFIX`` (matched by its stem);
  lines of other topics are skipped.
- ``timestamp``: the record's Kafka timestamp, epoch milliseconds, or an RFC 3339 time with an offset.
- ``key``: the record key as text (``keyBase64`` when it is not UTF-8). Only lines keyed by the
  messageId asked for are used (and every line of a global input such as ``channel-control``).
- ``value``: the record value as text (usually JSON text), or the JSON object itself (what ``kcat -f
  '%s'`` prints); ``valueBase64`` when it is not UTF-8; ``null`` for a tombstone.
- ``partition``, ``offset`` (optional, default 0 and the line number): where it was; records of one
  topic replay in offset order.
- ``headers`` (optional): ``[[name, text], ...]`` or ``{name: text}``; a text may be null (a header
  without a value).

A line that is not such an object is reported with its number and reason; the other lines are used.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from stream_app.config import Settings
from stream_app.contracts import to_ms
from stream_app.explain.errors import ExportFileError
from stream_app.explain.records import Record, kind_of


class _Line(BaseModel):
    """One export line as written; checked here, at the edge, once."""

    model_config = ConfigDict(extra="ignore", strict=False)

    topic: str
    partition: int = 0
    offset: int | None = None
    timestamp: int | datetime
    key: str | None = None
    keyBase64: str | None = None
    value: Any = None
    valueBase64: str | None = None
    headers: list[tuple[str, str | None]] | dict[str, str | None] | None = None


def read_export(path: Path, message_id: str, settings: Settings) -> tuple[list[Record], list[str], int]:
    """The records of ``message_id`` in the export at ``path``, the problems per line, and lines read.

    Raises :class:`ExportFileError` only when the file itself cannot be read.
    """
    try:
        with path.open("rb") as f:
            lines = f.read().split(b"\n")
    except OSError as exc:
        raise ExportFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    records, problems, used = parse_lines(lines, message_id, settings)
    return records, problems, used


def parse_lines(
    lines: Iterable[bytes], message_id: str, settings: Settings
) -> tuple[list[Record], list[str], int]:
    """See :func:`read_export`; lines are numbered from 1, blank lines are skipped silently."""
    key = message_id.encode()
    records: list[Record] = []
    problems: list[str] = []
    count = 0
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        count += 1
        try:
            rec = _record(raw, n, settings)
        except ValueError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        if rec is not None and (rec.key == key or not rec.keyed):
            records.append(rec)
    return records, problems, count


def _record(raw: bytes, n: int, settings: Settings) -> Record | None:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.args[0] if exc.args else exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"a JSON object is expected, got {type(data).__name__}")
    try:
        line = _Line.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "line"
        raise ValueError(f"{where}: {err['msg']}") from None
    kind = kind_of(line.topic, settings)
    if kind is None:
        return None  # another topic's record: not part of a message's story
    ts = line.timestamp if isinstance(line.timestamp, int) else _aware_ms(line.timestamp)
    return Record(
        kind=kind,
        topic=line.topic,
        partition=line.partition,
        offset=line.offset if line.offset is not None else n,
        timestamp_ms=ts,
        key=_bytes(line.key, line.keyBase64, "key"),
        value=_value(line),
        headers=_headers(line.headers),
    )


def _aware_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("timestamp: an RFC 3339 time needs an offset (Z or +02:00), or give epoch ms")
    return to_ms(when)


def _bytes(text: str | None, b64: str | None, name: str) -> bytes | None:
    if b64 is not None:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{name}Base64: not base64") from None
    return text.encode() if text is not None else None


def _value(line: _Line) -> bytes | None:
    if line.valueBase64 is not None:
        return _bytes(None, line.valueBase64, "value")
    v = line.value
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode()
    return orjson.dumps(v)  # the JSON object itself, as kcat's %s prints a JSON value


def _headers(
    h: list[tuple[str, str | None]] | dict[str, str | None] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    if h is None:
        return ()
    pairs = h.items() if isinstance(h, dict) else h
    return tuple((k, None if v is None else v.encode()) for k, v in pairs)


# -------------------------------------------------------------------------------------------- writing


def export_line(rec: Record) -> bytes:
    """One line of the export format for ``rec`` (text where it is UTF-8, base64 where it is not)."""
    out: dict[str, Any] = {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "timestamp": rec.timestamp_ms,
    }
    for name, data in (("key", rec.key), ("value", rec.value)):
        if data is None:
            out[name] = None
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            out[f"{name}Base64"] = base64.b64encode(data).decode()
    # A header without a value (Kafka allows one) is written as null, and read back as one.
    out["headers"] = [[k, None if v is None else v.decode("utf-8", "replace")] for k, v in rec.headers]
    return orjson.dumps(out) + b"\n"


def write_export(records: Iterable[Record], out: TextIO | Path) -> int:
    """Write ``records`` in the export format; returns how many lines were written."""
    lines = list(_lines(records))
    if isinstance(out, Path):
        try:
            out.write_bytes(b"".join(lines))
        except OSError as exc:
            raise ExportFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    else:
        out.write(b"".join(lines).decode())
    return len(lines)


def _lines(records: Iterable[Record]) -> Iterator[bytes]:
    for rec in records:
        yield export_line(rec)
