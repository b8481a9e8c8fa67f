"""RFC 3339 timestamps <-> epoch milliseconds.

The decision core counts time in integer epoch milliseconds (cheap to store, compare and pack);
records carry RFC 3339 strings. Output is always UTC with a ``Z`` suffix (CONTRACT.md).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

#: The longest duration a record (``ttl``, ``fallbackAfter``) or a setting (``STREAM_APP_*_SECONDS``)
#: may give: ten years, in seconds. Time is counted in epoch ms, and every instant the core names is
#: built back into a datetime (an outcome's times, a command's ``notAfter``).
MAX_SECONDS = 315_360_000
#: The instants an input record may carry, in UTC: from datetime's own first instant (so
#: ``0001-01-01T00:00:00Z``, the zero time some gateways send, still reads) to the start of year
#: 9000, which leaves any instant plus ``MAX_SECONDS`` (a flow's end) below datetime's year 9999 cap,
#: where :func:`from_ms` can still build it. An instant outside used to be accepted and only failed
#: when the core built a time from it: a flow that never got its outcome (an ``initialAttempt.sentAt``
#: in year 9999), a processor that stopped at every start (a channel-control ``until`` there).
MIN_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an offset-aware datetime, sub-millisecond digits dropped (floor).

    Integer arithmetic on purpose: ``int(value.timestamp() * 1000)`` goes through a float and
    turned ``...:53.471Z`` into ...470 ms for some instants (regression test in test_timefmt.py).
    """
    return (value - _EPOCH) // _MS


_MIN_MS = to_ms(MIN_INSTANT)
_MAX_MS = to_ms(MAX_INSTANT)


def within_instants(ms: float) -> bool:
    """Whether epoch ms (or a float a computation gave, perhaps infinite) is in ``MIN_INSTANT``
    inclusive .. ``MAX_INSTANT`` exclusive, as the models bound a record's times.

    For a time read from a person (a CLI's ``--since 7d``), checked before anything builds a
    datetime from it: an instant outside failed later with an OverflowError.
    """
    return _MIN_MS <= ms < _MAX_MS


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
        t = time.gmtime(sec)
        # Written out, not strftime("%Y..."): glibc writes year 1 as "1", and RFC 3339 wants four
        # digits ("0001-01-01T00:00:00Z", the zero time some gateways send, came out "1-01-01...").
        base = _SECONDS[sec] = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        )
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


#: The range :func:`within_instants` accepts, in words for an error message.
INSTANTS = f"the times from {format_ms(_MIN_MS)} to before {format_ms(_MAX_MS)}"
