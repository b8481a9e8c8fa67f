"""Send windows against a reference that walks the clock: every zone's oddities, every minute.

``test_window.py`` holds :class:`Window` to the contract's inside rule around Rome's two changes of
2026. Here the next opening is held to the plainest reading there is: step forward one UTC minute at
a time from the instant, asking at each one what the local wall clock of the zone says, until the
window is open. Every offset in the zones below is a whole number of minutes and every change happens
on a whole minute, so the first instant inside after one that is outside is a whole UTC minute.

The zones are those whose rules break a naive reading: half-hour and 45-minute offsets, a 30-minute
daylight-saving change (Lord Howe), changes at local midnight (Santiago, Havana, Asuncion), a
negative daylight-saving offset (Dublin), a two-hour change (Troll), two changes a month apart
(Casablanca's Ramadan), and the far future past 2037 (rules from the zone's POSIX string) and leap days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from hypothesis import example, given, settings
from hypothesis import strategies as s

from stream_app.fallback.window import Window

MINUTE = 60_000
DAY = 86_400_000
ZONES = [
    "Europe/Rome",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
    "America/Santiago",
    "America/Havana",
    "America/Asuncion",
    "Europe/Dublin",
    "Antarctica/Troll",
    "Africa/Casablanca",
    "America/St_Johns",
    "Asia/Kolkata",
    "UTC",
]


def ms_of(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def utc(year: int, month: int = 1, day: int = 1, hour: int = 0) -> int:
    return ms_of(datetime(year, month, day, hour, tzinfo=UTC))


def local(zone: str, ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(zone))


def inside(w: Window, ms: int) -> bool:
    """The contract's words, read off the wall clock: ``days`` names the day a window opens on."""
    wall = local(w.zone, ms)
    minute = wall.hour * 60 + wall.minute
    opened_today = bool(w.days & (1 << wall.weekday()))
    opened_yesterday = bool(w.days & (1 << (wall.weekday() + 6) % 7))
    if w.start < w.stop:
        return opened_today and w.start <= minute < w.stop
    return (opened_today and minute >= w.start) or (opened_yesterday and minute < w.stop)


def first_inside(w: Window, ms: int, limit_days: int = 15) -> int | None:
    if inside(w, ms):
        return ms
    minute = -(-ms // MINUTE) * MINUTE
    if minute == ms:
        minute += MINUTE
    end = ms + limit_days * DAY
    while minute < end:
        if inside(w, minute):
            return minute
        minute += MINUTE
    return None


@cache
def changes(zone: str) -> tuple[int, ...]:
    """The zone's offset changes from 2024 to 2028, and in 2101 and 2400 (a leap year far out)."""
    tz = ZoneInfo(zone)
    found: list[int] = []
    for year, years in ((2024, 5), (2101, 1), (2400, 1)):
        start = ms_of(datetime(year, 1, 1, tzinfo=UTC))
        prev = start
        for day in range(1, 366 * years):
            at = start + day * DAY
            a = datetime.fromtimestamp(prev / 1000, tz=tz).utcoffset()
            b = datetime.fromtimestamp(at / 1000, tz=tz).utcoffset()
            if a != b:
                lo, hi = prev, at
                while hi - lo > MINUTE:
                    mid = (lo + hi) // 2 // MINUTE * MINUTE
                    if datetime.fromtimestamp(mid / 1000, tz=tz).utcoffset() == a:
                        lo = mid
                    else:
                        hi = mid
                found.append(hi)
            prev = at
    return tuple(found)


clock = s.one_of(
    s.integers(0, 24 * 60 - 1),
    s.sampled_from([0, 30, 60, 90, 120, 135, 150, 165, 180, 1410, 1439]),  # midnight and change hours
)


@s.composite
def windows(draw: s.DrawFn) -> Window:
    start = draw(clock)
    stop = draw(clock.filter(lambda c: c != start))
    days = draw(s.one_of(s.just(0x7F), s.integers(1, 0x7F)))
    return Window(zone=draw(s.sampled_from(ZONES)), days=days, start=start, stop=stop, applies_all=False)


@s.composite
def cases(draw: s.DrawFn) -> tuple[Window, int]:
    w = draw(windows())
    near = changes(w.zone)
    kind = draw(s.integers(0, 3))
    if kind == 0 and near:
        at = draw(s.sampled_from(near))
        ms = draw(s.integers(at - 2 * DAY, at + 2 * DAY))
    elif kind == 1:  # leap days, near and far
        leap = draw(s.sampled_from([datetime(2028, 2, 29), datetime(2096, 2, 29), datetime(2400, 2, 29)]))
        ms = ms_of(leap.replace(tzinfo=UTC)) + draw(s.integers(-2 * DAY, 2 * DAY))
    elif kind == 2:  # far future
        ms = draw(s.integers(utc(2038), utc(2500)))
    else:
        ms = draw(s.integers(utc(2024), utc(2029)))
    if draw(s.booleans()):
        ms = ms // MINUTE * MINUTE  # on a minute: where openings and closings are
    return w, ms


@settings(max_examples=400, deadline=None)
@given(cases())
def test_inside_agrees_with_the_wall_clock(case: tuple[Window, int]) -> None:
    w, ms = case
    assert w.is_open(ms) == inside(w, ms)


@settings(max_examples=120, deadline=None)
@given(cases())
@example(  # Rome, spring forward: 02:30 does not exist on 29 March 2026
    (Window("Europe/Rome", 0x7F, 150, 240, False), utc(2026, 3, 29))
)
@example(  # ... nor does any of 02:15-02:45, Sundays only: the next opening is 5 April
    (Window("Europe/Rome", 1 << 6, 135, 165, False), utc(2026, 3, 27, 12))
)
@example(  # Troll jumps two hours, 01:00 -> 03:00, on Sunday 31 March 2024
    (Window("Antarctica/Troll", 1 << 6, 135, 150, False), utc(2024, 3, 29, 10))
)
@example(  # Lord Howe, spring forward by 30 minutes: 02:00 -> 02:30 on 4 October 2026
    (Window("Australia/Lord_Howe", 0x7F, 135, 600, False), utc(2026, 10, 3, 14))
)
def test_the_next_opening_is_the_first_minute_the_wall_clock_says_inside(case: tuple[Window, int]) -> None:
    w, ms = case
    expected = first_inside(w, ms)
    assert expected is not None, "every window opens within two weeks"
    assert w.next_opening(ms) == expected


def test_the_reference_sees_rome_skip_and_repeat_an_hour() -> None:
    """The reference itself, on the changes it must see: otherwise it proves nothing."""
    spring, autumn = changes("Europe/Rome")[4:6]  # 2026
    assert local("Europe/Rome", spring) == datetime(2026, 3, 29, 3, tzinfo=ZoneInfo("Europe/Rome"))
    assert local("Europe/Rome", spring - 1).hour == 1
    assert local("Europe/Rome", autumn).hour == 2 and local("Europe/Rome", autumn - 1).hour == 2
    assert (
        timedelta(hours=1)
        == local("Europe/Rome", autumn - 1).utcoffset()
        - local(  # type: ignore[operator]
            "Europe/Rome", autumn
        ).utcoffset()
    )
