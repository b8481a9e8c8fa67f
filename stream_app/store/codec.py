"""Binary layouts of the store: the changelog value (also the stored record), the time index key, the meta.

The changelog value and the record kept in RocksDB are the same bytes, so a restore copies a changelog
record into the store without re-encoding it, and the deadline travels with the state (a timer is state:
DESIGN.md, "What the field learned").

Record layout, version 1::

    0x11 | deadline_ms (8 bytes, big-endian, unsigned) | value      a timer is armed
    0x10 | value                                                 no timer

The high nibble is the layout version and the low bit says whether a deadline follows; a reader that sees
another first byte refuses the record instead of guessing.
"""

from __future__ import annotations

import struct

from stream_app.store.errors import InvalidChangelogRecord, InvalidDeadline

TAG_NO_TIMER = 0x10
TAG_TIMER = 0x11
#: Deadlines are stored as unsigned 8-byte big-endian integers so byte order is time order; we keep them
#: below 2**63 so they also fit a signed 64-bit field anywhere else (Kafka timestamps, Java clients).
MAX_DEADLINE_MS = 2**63 - 1
_HEADER_TIMER = 9
_HEADER_NO_TIMER = 1

#: Meta value: layout version, durable changelog offset (-1 = none yet), armed timers count.
_META = struct.Struct(">Bqq")
_META_VERSION = 1


def check_deadline(deadline_ms: int | None) -> None:
    """Refuse a deadline that cannot be ordered on disk, with a one-line reason."""
    if deadline_ms is None:
        return
    if not isinstance(deadline_ms, int):
        raise InvalidDeadline(f"deadline_ms must be an int of milliseconds, got {type(deadline_ms).__name__}")
    if not 0 <= deadline_ms <= MAX_DEADLINE_MS:
        raise InvalidDeadline(f"deadline_ms {deadline_ms} is outside 0..{MAX_DEADLINE_MS}")


def changelog_value(value: bytes, deadline_ms: int | None) -> bytes:
    """The bytes written to the changelog topic (and kept in the store) for ``value`` and its timer."""
    if deadline_ms is None:
        return b"\x10" + value
    check_deadline(deadline_ms)
    return b"\x11" + deadline_ms.to_bytes(8, "big") + value


def parse_changelog_value(record: bytes) -> tuple[bytes, int | None]:
    """Split a changelog value into ``(value, deadline_ms)``; raises :class:`InvalidChangelogRecord`."""
    deadline = record_deadline(record)
    if deadline is None:
        return record[_HEADER_NO_TIMER:], None
    return record[_HEADER_TIMER:], deadline


def record_deadline(record: bytes) -> int | None:
    """The deadline of a record, validating its header (the restore path's only check)."""
    if not record:
        raise InvalidChangelogRecord("empty value (a deletion is a tombstone, i.e. a null value)")
    tag = record[0]
    if tag == TAG_NO_TIMER:
        return None
    if tag == TAG_TIMER:
        if len(record) < _HEADER_TIMER:
            raise InvalidChangelogRecord(f"{len(record)} bytes, too short for the 9-byte timer header")
        deadline = int.from_bytes(record[1:_HEADER_TIMER], "big")
        if deadline > MAX_DEADLINE_MS:
            raise InvalidChangelogRecord(f"deadline {deadline} is outside 0..{MAX_DEADLINE_MS}")
        return deadline
    raise InvalidChangelogRecord(f"unknown layout byte 0x{tag:02x} (this version reads 0x10 and 0x11)")


def record_value(record: bytes) -> bytes:
    """The value part of a record written by this module (no validation: hot read path)."""
    return record[_HEADER_TIMER:] if record[0] == TAG_TIMER else record[_HEADER_NO_TIMER:]


def stored_deadline(record: bytes) -> int | None:
    """The deadline of a record already validated on its way in (no validation: hot read path)."""
    return int.from_bytes(record[1:_HEADER_TIMER], "big") if record[0] == TAG_TIMER else None


def index_key(deadline_ms: int, key: bytes) -> bytes:
    """Time index key: byte order is (deadline, key) order, so a range scan yields due timers in order."""
    return deadline_ms.to_bytes(8, "big") + key


def split_index_key(index: bytes) -> tuple[int, bytes]:
    return int.from_bytes(index[:8], "big"), index[8:]


def encode_meta(changelog_offset: int | None, armed: int) -> bytes:
    return _META.pack(_META_VERSION, -1 if changelog_offset is None else changelog_offset, armed)


def decode_meta(raw: bytes) -> tuple[int | None, int]:
    """``(changelog_offset, armed timers)`` from the meta value; a foreign layout is refused."""
    if len(raw) != _META.size or raw[0] != _META_VERSION:
        raise InvalidChangelogRecord(f"unreadable store meta ({len(raw)} bytes, layout byte {raw[:1]!r})")
    _, offset, armed = _META.unpack(raw)
    return (None if offset < 0 else offset), armed
