"""Send windows on the local wall clock: inside or not, and the next opening (DST and midnight included).

The property tests hold :class:`Window` to an oracle written from CONTRACT.md's words alone (local
day and time of the instant, through ``datetime.astimezone``), and check that the next opening is
inside, and that no whole minute between the instant and it is inside: the deferral is to the FIRST
opening, never early and never later than needed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as s

from stream_app.contracts import SendWindow, Weekday, to_ms
from stream_app.fallback import Window, window_of

MINUTE = 60_000
DAYS = list(Weekday)
ZONES = [
    "Europe/Rome",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving change
    "America/Santiago",  # changes at local midnight
    "Asia/Kolkata",  # a half-hour offset, no changes
    "UTC",
]
#: Rome's two changes of 2026: 29 March 01:00Z (02:00 -> 03:00) and 25 October 01:00Z (03:00 -> 02:00).
ROME_SPRING = to_ms(datetime(2026, 3, 29, 1, tzinfo=UTC))
ROME_AUTUMN = to_ms(datetime(2026, 10, 25, 1, tzinfo=UTC))


def spec(
    zone: str, start: str, stop: str, days: list[str] | None = None, applies: str = "FALLBACK"
) -> Window:
    body: dict[str, object] = {"timezone": zone, "from": start, "to": stop, "appliesTo": applies}
    if days is not None:
        body["days"] = days
    return window_of(SendWindow.model_validate(body))


def oracle(window: SendWindow, ms: int) -> bool:
    """CONTRACT.md's words: local wall-clock time in the zone; ``days`` names the day a window opens."""
    local = datetime.fromtimestamp(ms // 1000, tz=UTC).astimezone(ZoneInfo(window.timezone))
    now = local.strftime("%H:%M")
    today = DAYS[local.weekday()] in window.days
    yesterday = DAYS[(local.weekday() - 1) % 7] in window.days
    if window.from_ < window.to:
        return today and window.from_ <= now < window.to
    return (today and now >= window.from_) or (yesterday and now < window.to)


clock = s.builds(lambda h, m: f"{h:02d}:{m:02d}", s.integers(0, 23), s.sampled_from([0, 0, 15, 30, 59]))


@s.composite
def windows(draw: s.DrawFn) -> SendWindow:
    start = draw(clock)
    stop = draw(clock.filter(lambda c: c != start))
    body: dict[str, object] = {"timezone": draw(s.sampled_from(ZONES)), "from": start, "to": stop}
    if draw(s.booleans()):
        body["days"] = draw(
            s.lists(s.sampled_from([d.value for d in DAYS]), min_size=1, max_size=7, unique=True)
        )
    return SendWindow.model_validate(body)


#: Instants of 2026, half of them within a day of one of Rome's changes.
instants = s.one_of(
    s.integers(to_ms(datetime(2026, 1, 1, tzinfo=UTC)), to_ms(datetime(2027, 1, 1, tzinfo=UTC))),
    s.sampled_from([ROME_SPRING, ROME_AUTUMN]).flatmap(
        lambda at: s.integers(at - 26 * 3_600_000, at + 26 * 3_600_000)
    ),
)


@settings(max_examples=300, deadline=None)
@given(windows(), instants)
def test_inside_is_the_contracts_local_wall_clock_rule(window: SendWindow, ms: int) -> None:
    assert window_of(window).is_open(ms) == oracle(window, ms)


@settings(max_examples=150, deadline=None)
@given(windows(), instants)
def test_the_next_opening_is_the_first_instant_inside(window: SendWindow, ms: int) -> None:
    w = window_of(window)
    opening = w.next_opening(ms)
    assert opening >= ms
    assert oracle(window, opening), "the step would go out outside its window"
    if opening > ms:
        assert not oracle(window, opening - 1), "an earlier instant was inside: the opening is late"
        # every whole minute (UTC, hence local) before it is outside: it is the first opening
        minute = -(-ms // MINUTE) * MINUTE
        while minute < opening:
            assert not oracle(window, minute), f"open at {minute}, before the opening {opening}"
            minute += MINUTE


def test_a_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    friday_night = spec("Europe/Rome", "22:00", "06:00", ["FRI"])
    rome = ZoneInfo("Europe/Rome")

    def at(year: int, month: int, day: int, hour: int, minute: int) -> int:
        return to_ms(datetime(year, month, day, hour, minute, tzinfo=rome))

    assert friday_night.is_open(at(2026, 4, 10, 23, 0))  # Friday 23:00
    assert friday_night.is_open(at(2026, 4, 11, 5, 59))  # Saturday 05:59: Friday's window
    assert not friday_night.is_open(at(2026, 4, 11, 6, 0))
    assert not friday_night.is_open(at(2026, 4, 11, 23, 0))  # Saturday night: not a listed day
    assert friday_night.next_opening(at(2026, 4, 11, 6, 0)) == at(2026, 4, 17, 22, 0)  # next Friday


def test_spring_forward_opens_at_the_change_when_from_does_not_exist() -> None:
    """29 March 2026 in Rome: 02:00 jumps to 03:00, 02:30 never shows; the first instant past it is 03:00."""
    w = spec("Europe/Rome", "02:30", "04:00")
    assert (
        w.next_opening(ROME_SPRING - 30 * MINUTE) == ROME_SPRING
    )  # 00:30Z (01:30 CET) -> 01:00Z (03:00 CEST)
    assert w.is_open(ROME_SPRING) and not w.is_open(ROME_SPRING - 1)


def test_spring_forward_shortens_the_night_and_the_window_keeps_its_local_hours() -> None:
    w = spec("Europe/Rome", "09:00", "20:00")
    sunday_morning = to_ms(datetime(2026, 3, 29, 7, tzinfo=UTC))  # 09:00 CEST
    assert (
        w.next_opening(to_ms(datetime(2026, 3, 28, 19, 30, tzinfo=UTC))) == sunday_morning
    )  # from 20:30 CET


def test_fall_back_repeats_an_hour_and_reopens_a_window_ending_in_it() -> None:
    """25 October 2026 in Rome: 03:00 CEST goes back to 02:00 CET; a window to 02:30 is open again."""
    w = spec("Europe/Rome", "22:00", "02:30")
    first_close = ROME_AUTUMN - 30 * MINUTE  # 02:30 CEST = 00:30Z
    assert w.is_open(first_close - 1) and not w.is_open(first_close)
    assert w.next_opening(first_close) == ROME_AUTUMN  # 02:00 CET = 01:00Z, the repeated hour
    assert not w.is_open(ROME_AUTUMN + 30 * MINUTE)  # 02:30 CET: closed again


def test_fall_back_keeps_local_opening_hours() -> None:
    w = spec("Europe/Rome", "09:00", "20:00")
    after = w.next_opening(to_ms(datetime(2026, 10, 24, 19, 0, tzinfo=UTC)))  # Saturday 21:00 CEST
    assert after == to_ms(datetime(2026, 10, 25, 8, tzinfo=UTC))  # Sunday 09:00 CET


def test_applies_to_fallback_spares_step_zero() -> None:
    assert not spec("UTC", "09:00", "17:00").applies(0)
    assert spec("UTC", "09:00", "17:00").applies(1)
    assert spec("UTC", "09:00", "17:00", applies="ALL").applies(0)


def test_window_of_reads_days_as_a_monday_first_bitmask() -> None:
    w = spec("Europe/Rome", "09:00", "20:30", ["MON", "SUN"])
    assert (w.days, w.start, w.stop, w.applies_all) == (0b1000001, 540, 1230, False)
    assert spec("UTC", "00:00", "23:59").days == 0x7F
    # a whole-week check: every instant of a week has an opening within eight days
    w = spec("Pacific/Chatham", "23:59", "00:00", ["WED"])
    start = to_ms(datetime(2026, 4, 1, tzinfo=UTC))
    for hour in range(0, 24 * 7, 5):
        ms = start + hour * 3_600_000
        assert ms <= w.next_opening(ms) < ms + 8 * 86_400_000


def test_a_window_the_spring_forward_skips_opens_the_week_after_regression() -> None:
    """02:15-02:45 on Sundays in Rome: on 29 March 2026 the clocks jump from 02:00 to 03:00, so that
    Sunday has no such local time and the window does not open; from Friday 27 March the next opening
    is Sunday 5 April, nine days on. The search for an opening stopped after nine local dates from the
    day before, and raised instead of answering."""
    w = spec("Europe/Rome", "02:15", "02:45", ["SUN"])
    friday = to_ms(datetime(2026, 3, 27, 12, tzinfo=UTC))
    assert not w.is_open(ROME_SPRING) and not w.is_open(ROME_SPRING - 1)
    assert w.next_opening(friday) == to_ms(datetime(2026, 4, 5, 0, 15, tzinfo=UTC))  # 02:15 CEST


def test_fall_back_shuts_a_window_opening_in_the_repeated_hour_until_from_comes_round_again() -> None:
    """25 October 2026 in Rome, 02:30-09:00: open at 02:30 CEST; at 03:00 CEST the clock reads 02:00
    CET, before ``from``, so the window is shut until 02:30 CET, as the wall clock says (the mirror
    of a window ending in the repeated hour being open again)."""
    w = spec("Europe/Rome", "02:30", "09:00")
    assert w.is_open(ROME_AUTUMN - 30 * MINUTE) and w.is_open(ROME_AUTUMN - 1)
    assert not w.is_open(ROME_AUTUMN)
    assert w.next_opening(ROME_AUTUMN) == ROME_AUTUMN + 30 * MINUTE
