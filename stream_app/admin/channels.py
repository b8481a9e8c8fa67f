"""Close, open and list channels on the ``channel-control`` table (``stream-app channel``).

Records are built as JSON and checked by the contract's own decoder (``decode_control``, with the
key rule) before anything is produced, so the CLI can never publish a record the processor would
dead-letter. The table is read without a consumer group, from the beginning to the end offsets seen
at start, and the last record of each key is its state, exactly as every processor reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from stream_app.admin.errors import InvalidInput
from stream_app.admin.follow import read_topic
from stream_app.admin.publish import produce
from stream_app.config import Settings
from stream_app.contracts import (
    ChannelControl,
    ChannelState,
    InvalidRecord,
    decode_control,
    format_ms,
    to_ms,
)
from stream_app.contracts.models import Timestamp
from stream_app.contracts.timefmt import MAX_SECONDS

#: ``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``, or a plain number of seconds.
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?"
)
_TIMESTAMP = TypeAdapter(Timestamp)


def parse_until(text: str, now: datetime) -> datetime:
    """``--until``: a duration from ``now`` (``90s``, ``30m``, ``2h``, ``1d``, ``1h30m``, ``600``)
    or an RFC 3339 time with an offset (``2026-04-09T12:00:00Z``). Must be in the future."""
    given = text.strip()
    match = _DURATION.fullmatch(given.lower())
    if given and match is not None and any(match.groups()):
        if given[-1].isdigit() and any(match.groups()[:3]):
            # A bare number is seconds only alone (``600``): after another unit (``1h30``) whoever
            # typed it means the next unit down as often as seconds, so it is not guessed.
            raise InvalidInput(
                f"--until {text!r}: give the unit of the last number (1h30m for 90 minutes, 1h30s "
                "for an hour and 30 seconds)"
            )
        days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
        total = days * 86_400 + hours * 3_600 + minutes * 60 + seconds  # inf for a few hundred digits
        if total > MAX_SECONDS:  # timedelta or the date after it overflowed (3000000d, 999999999999999h)
            raise InvalidInput(f"--until {text!r}: at most {MAX_SECONDS} s (ten years) from now")
        until = now + timedelta(seconds=total)
    else:
        try:
            until = _TIMESTAMP.validate_python(given)
        except ValidationError:
            raise InvalidInput(
                f"--until {text!r}: give a duration (90s, 30m, 2h, 1d, 1h30m) or an RFC 3339 time with "
                "an offset (2026-04-09T12:00:00Z)"
            ) from None
    if until <= now:
        raise InvalidInput(f"--until {text!r}: {format_ms(to_ms(until))} is not in the future")
    return until


def _record(body: dict[str, Any]) -> tuple[bytes, bytes, ChannelControl]:
    """Key, value and record of a control body, checked by the processor's own rules."""
    value = orjson.dumps(body)
    try:
        record = decode_control(value)
    except InvalidRecord as exc:
        raise InvalidInput(f"channel control: {exc.reason}") from None
    return record.key.encode(), value, record


def closing(
    channel: str,
    *,
    tenant: str | None = None,
    until: str | None = None,
    reason: str | None = None,
    in_flight: str = "WAIT",
    now: datetime | None = None,
) -> tuple[bytes, bytes, ChannelControl]:
    """The record that closes ``channel`` (for ``tenant``, or for all)."""
    at = now or datetime.now(UTC)
    body: dict[str, Any] = {
        "type": "channel-control",
        "channel": channel,
        "tenant": tenant,
        "state": "CLOSED",
        "inFlight": in_flight.upper(),
        "at": format_ms(to_ms(at)),
    }
    if until is not None:
        body["until"] = format_ms(to_ms(parse_until(until, at)))
    if reason is not None:
        body["reason"] = reason
    return _record(body)


def opening(
    channel: str, *, tenant: str | None = None, now: datetime | None = None
) -> tuple[bytes, bytes, ChannelControl]:
    """The record that opens ``channel`` again (for ``tenant``, or for all)."""
    at = now or datetime.now(UTC)
    body = {
        "type": "channel-control",
        "channel": channel,
        "tenant": tenant,
        "state": "OPEN",
        "at": format_ms(to_ms(at)),
    }
    return _record(body)


async def publish(settings: Settings, key: bytes, value: bytes) -> tuple[int, int]:
    """Produce one control record; (partition, offset)."""
    [where] = await produce(settings, settings.topics.channel_control, [(key, value)])
    return where


@dataclass(frozen=True, slots=True)
class Entry:
    """The last record of one key of the table."""

    key: str
    record: ChannelControl | None  # None: a tombstone
    partition: int
    offset: int

    def closed(self, now_ms: int) -> bool:
        r = self.record
        return (
            r is not None and r.state is ChannelState.CLOSED and (r.until is None or now_ms < to_ms(r.until))
        )


async def read_table(settings: Settings) -> tuple[list[Entry], int]:
    """The last valid record of every key (sorted by key), and how many invalid records were skipped."""
    entries: dict[str, Entry] = {}
    invalid = 0
    records = read_topic(settings, settings.topics.channel_control)
    try:
        async for raw in records:
            if raw.key is None:
                invalid += 1
                continue
            key = raw.key.decode("utf-8", "replace")
            if raw.value is None:
                entries[key] = Entry(key, None, raw.partition, raw.offset)
                continue
            try:
                record = decode_control(raw.value, raw.key)
            except InvalidRecord:
                invalid += 1  # the processors dead-letter it and ignore it: so does the table
                continue
            entries[key] = Entry(key, record, raw.partition, raw.offset)
    finally:
        await records.aclose()
    return [entries[k] for k in sorted(entries)], invalid


def describe(record: ChannelControl) -> str:
    """``WHATSAPP for every tenant until 2026-04-09T12:00:00Z, in-flight attempts wait``."""
    who = "every tenant" if record.tenant is None else f"tenant {record.tenant}"
    if record.state is ChannelState.OPEN:
        return f"{record.channel} for {who}"
    until = "until opened" if record.until is None else f"until {format_ms(to_ms(record.until))}"
    flight = "wait" if record.in_flight.value == "WAIT" else "fall back at once"
    return f"{record.channel} for {who} {until}, in-flight attempts {flight}"
