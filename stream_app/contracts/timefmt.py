"""RFC 3339 timestamps <-> epoch milliseconds.

The decision core counts time in integer epoch milliseconds (cheap to store, compare and pack);
records carry RFC 3339 strings. Output is always UTC with a ``Z`` suffix (CONTRACT.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an offset-aware datetime, sub-millisecond digits dropped (floor).

    Integer arithmetic on purpose: ``int(value.timestamp() * 1000)`` goes through a float and
    turned ``...:53.471Z`` into ...470 ms for some instants (regression test in test_timefmt.py).
    """
    return (value - _EPOCH) // _MS


#: Epoch ms -> its (immutable) UTC datetime. Every command of a batch is issued at the batch's one
#: ``now`` and most share one ``notAfter``, so a small cache saves building the same datetime again;
#: 4096 entries bound the memory, as for ``_SECONDS`` below.
_DATETIMES: dict[int, datetime] = {}
_DATETIMES_MAX = 4096


def from_ms(ms: int) -> datetime:
    """Offset-aware UTC datetime of epoch milliseconds."""
    value = _DATETIMES.get(ms)
    if value is None:
        if len(_DATETIMES) >= _DATETIMES_MAX:
            _DATETIMES.clear()
        value = _DATETIMES[ms] = _EPOCH + timedelta(milliseconds=ms)
    return value


#: Second -> "YYYY-MM-DDTHH:MM:SS". strftime costs about 4 us, twice per command (issuedAt,
#: notAfter), while the records of one batch share a handful of seconds; 4096 entries bound the
#: memory (a few hundred KiB) and cover over an hour of distinct seconds before the cache restarts.
_SECONDS: dict[int, str] = {}
_SECONDS_MAX = 4096


def format_ms(ms: int) -> str:
    """RFC 3339 UTC string of epoch milliseconds, millisecond precision when there is a fraction."""
    sec, frac = divmod(ms, 1000)
    base = _SECONDS.get(sec)
    if base is None:
        if len(_SECONDS) >= _SECONDS_MAX:
            _SECONDS.clear()
        base = _SECONDS[sec] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"
