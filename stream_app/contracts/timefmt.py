"""RFC 3339 timestamps <-> epoch milliseconds.

The decision core counts time in integer epoch milliseconds (cheap to store, compare and pack);
records carry RFC 3339 strings. Output is always UTC with a ``Z`` suffix (CONTRACT.md).
"""

from __future__ import annotations

from datetime import UTC, datetime


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an offset-aware datetime."""
    return int(value.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Offset-aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_ms(ms: int) -> str:
    """RFC 3339 UTC string of epoch milliseconds, millisecond precision when there is a fraction."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    frac = ms % 1000
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"
