"""Quiet hours: when a step may go out under a request's ``sendWindow`` (CONTRACT.md v1.1).

The rule is defined on the local wall clock of the window's IANA timezone, through the standard
library's ``zoneinfo``, so daylight-saving changes are the zone's own:

- an instant is *inside* the window when its local day and time are: with ``from`` < ``to``, on one
  of ``days`` at a local time in ``[from, to)``; with ``from`` > ``to`` (across midnight), on one of
  ``days`` at ``from`` or later, or on the day after one of ``days`` before ``to``. ``days`` names
  the day on which a window opens.
- the *next opening* of an instant is the first instant at or after it that is inside. A local
  ``from`` skipped by a spring-forward change opens the window at the change itself (the first
  instant whose local time is past ``from``), unless that is past ``to`` too: a window wholly in
  the gap does not open that day; a window whose end is repeated by a fall-back change
  is open again during the repeated local hour, as the wall clock says.

Pure: no clock reads. The zone's rules come from the tz database the machine (or the ``tzdata``
package) has; the state stores the instant a deferral wakes at, so a tz data update never moves a
deferral already decided.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from stream_app.contracts import SendWindow, WindowScope
from stream_app.contracts.models import WEEKDAY_NUMBER

_MINUTE_MS = 60_000
_DAY_MS = 86_400_000
#: Every day's bit set: the default ``days``.
ALL_DAYS = 0x7F
#: Dates searched for an opening: any non-empty ``days`` opens within a week, and a day either side
#: covers a window across midnight and the zone's offset from UTC.
_SEARCH_DAYS = 9
#: ... unless a spring-forward change skips that day's window (02:15-02:45 on the Sunday the clocks
#: jump from 02:00 to 03:00), which puts the next opening a week later: then the dates up to this
#: are searched too (only then, so the usual search costs no more).
_LONGEST_SEARCH_DAYS = 16


@dataclass(frozen=True, slots=True)
class Window:
    """A request's send window as the core stores it: the zone's name, a weekday bitmask (bit 0 is
    Monday), ``from`` and ``to`` in minutes after local midnight, and whether step 0 is held too."""

    zone: str
    days: int
    start: int
    stop: int
    applies_all: bool

    def applies(self, step: int) -> bool:
        """Whether step ``step`` (0 is the first) waits for the window."""
        return self.applies_all or step > 0

    def is_open(self, ms: int) -> bool:
        """Whether the instant ``ms`` (epoch milliseconds) is inside the window."""
        local = _local(self.zone, ms)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.start < self.stop:
            return bool(self.days >> day & 1) and self.start <= minute < self.stop
        if minute >= self.start:
            return bool(self.days >> day & 1)
        return minute < self.stop and bool(self.days >> ((day - 1) % 7) & 1)

    def next_opening(self, ms: int) -> int:
        """The first instant at or after ``ms`` inside the window (``ms`` itself when inside).

        Between two consecutive candidates below, whether an instant is inside cannot change from
        outside to inside: that only happens when the local clock reaches ``from`` (on a date, or by
        jumping over it at a change) or when a fall-back change turns the clock back into an open
        span. So the first candidate inside is the first opening.
        """
        if self.is_open(ms):
            return ms
        first = _local(self.zone, ms).date() - timedelta(days=1)
        found = self._first_open(ms, first, 0, _SEARCH_DAYS)
        if found is None:  # every candidate so far is outside: the first inside is among the later ones
            found = self._first_open(ms, first, _SEARCH_DAYS + 1, _LONGEST_SEARCH_DAYS)
        if found is None:  # pragma: no cover
            raise AssertionError(f"no opening of {self!r} within {_LONGEST_SEARCH_DAYS} days")
        return found

    def _first_open(self, ms: int, first: date, lo: int, hi: int) -> int | None:
        """The first candidate after ``ms`` inside, among those of the dates ``first`` + ``lo`` to
        ``first`` + ``hi`` (both included); None when none is."""
        zone = _zone(self.zone)
        candidates: set[int] = set()
        for offset in range(lo, hi + 1):
            day = first + timedelta(days=offset)
            for fold in (0, 1):
                wall = datetime(day.year, day.month, day.day, self.start // 60, self.start % 60, fold=fold)
                candidates.add(_to_ms(wall.replace(tzinfo=zone)))
            candidates.update(_changes(self.zone, day))
        for candidate in sorted(c for c in candidates if c > ms):
            if self.is_open(candidate):
                return candidate
        return None


def window_of(spec: SendWindow) -> Window:
    """The core's form of a (validated) request ``sendWindow``."""
    days = 0
    for day in spec.days:
        days |= 1 << WEEKDAY_NUMBER[day]
    start_h, start_m = spec.from_.split(":")
    stop_h, stop_m = spec.to.split(":")
    return Window(
        zone=spec.timezone,
        days=days,
        start=int(start_h) * 60 + int(start_m),
        stop=int(stop_h) * 60 + int(stop_m),
        applies_all=spec.applies_to is WindowScope.ALL,
    )


# ------------------------------------------------------------------------------------------ helpers


@lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _local(zone: str, ms: int) -> datetime:
    """The local wall clock at ``ms``, to the second (zones change offset on whole seconds)."""
    return datetime.fromtimestamp(ms // 1000, tz=_zone(zone))


def _to_ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@lru_cache(maxsize=4096)
def _changes(zone: str, day: date) -> tuple[int, ...]:
    """The instants (epoch ms) at which the zone's UTC offset changes during the local ``day``.

    Found by bisection between the day's local midnights: zones change offset at most once a day,
    at a whole second, so about 27 halvings of a day in milliseconds find it exactly.
    """
    tz = _zone(zone)
    lo = _to_ms(datetime(day.year, day.month, day.day, tzinfo=tz))
    hi = lo + _DAY_MS + 2 * 3_600_000  # past the next local midnight whatever the day's length
    if _offset(tz, lo) == _offset(tz, hi):
        return ()
    before = _offset(tz, lo)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(tz, mid) == before:
            lo = mid
        else:
            hi = mid
    return (hi,)


def _offset(tz: zoneinfo.ZoneInfo, ms: int) -> timedelta | None:
    return datetime.fromtimestamp(ms // 1000, tz=tz).utcoffset()
