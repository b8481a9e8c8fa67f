"""Read ``dead-letters`` for people and scripts: each refused record with the reason in its headers.

A dead letter's key and value are the refused record's own bytes (anything at all: that is why it
was refused), and the why is in Kafka Connect's ``__error.*`` headers. Reads like ``outcomes``: no
consumer group, a snapshot or ``--follow``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from stream_app.admin.follow import Raw
from stream_app.contracts.catalogue import TRACE_HEADER
from stream_app.terminal import printable

#: Characters of a key or value shown on a readable line; --json has them whole.
PREVIEW = 120


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of ``dead-letters`` with its ``__error.*`` headers read (None when absent)."""

    raw: Raw
    reason: str | None
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    error_class: str | None
    traceparent: str | None

    @classmethod
    def of(cls, raw: Raw) -> DeadLetter:
        # A header without a value (any producer may write one; a dead letter keeps the input's own
        # headers) says nothing: as if absent.
        headers = {
            name: value.decode("utf-8", errors="replace") for name, value in raw.headers if value is not None
        }
        return cls(
            raw=raw,
            reason=headers.get("__error.reason"),
            source_topic=headers.get("__error.source.topic"),
            source_partition=_int(headers.get("__error.source.partition")),
            source_offset=_int(headers.get("__error.source.offset")),
            error_class=headers.get("__error.class"),
            traceparent=headers.get(TRACE_HEADER),
        )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:  # a header written by someone else: show nothing rather than fail the view
        return None


def _preview(data: bytes | None) -> str:
    if data is None:
        return "null"
    text = " ".join(data.decode("utf-8", errors="replace").split())  # one line, whatever it holds
    return text if len(text) <= PREVIEW else f"{text[: PREVIEW - 3]}..."


def format_line(letter: DeadLetter) -> str:
    """``08:20:04Z  send-requests[3]@17  InvalidRecord  destination: ...  key=m-1 value={...}``"""
    when = datetime.fromtimestamp(letter.raw.timestamp_ms / 1000, UTC).strftime("%H:%M:%SZ")
    where = letter.source_topic or "unknown source"
    if letter.source_partition is not None and letter.source_partition >= 0:
        where += f"[{letter.source_partition}]@{letter.source_offset}"
    kind = letter.error_class or "?"
    reason = letter.reason or "no __error.reason header"
    key, value = _preview(letter.raw.key), _preview(letter.raw.value)
    # The key and value are the refused bytes, anything at all: an escape in them must not reach the
    # terminal as one (stream_app/terminal.py).
    return printable(f"{when}  {where}  {kind}  {reason}  key={key} value={value}")


def json_line(letter: DeadLetter) -> str:
    """The dead letter as one JSON object: where it is, why, and the refused key and value.

    The key and value are given as UTF-8 text (``key``/``value``) when they are valid UTF-8, else
    base64 (``keyBase64``/``valueBase64``), so bytes that are not text survive the trip.
    """
    body: dict[str, Any] = {
        "partition": letter.raw.partition,
        "offset": letter.raw.offset,
        "timestamp": datetime.fromtimestamp(letter.raw.timestamp_ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "reason": letter.reason,
        "sourceTopic": letter.source_topic,
        "sourcePartition": letter.source_partition,
        "sourceOffset": letter.source_offset,
        "errorClass": letter.error_class,
    }
    if letter.traceparent is not None:
        body["traceparent"] = letter.traceparent
    for name, data in (("key", letter.raw.key), ("value", letter.raw.value)):
        if data is None:
            body[name] = None
            continue
        try:
            body[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            body[f"{name}Base64"] = base64.b64encode(data).decode()
    return orjson.dumps(body).decode()
