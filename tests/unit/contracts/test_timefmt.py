"""Timestamps: the cached formatter writes exactly what datetime.isoformat would, for any millisecond."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from stream_app.contracts import format_ms, from_ms, timefmt, to_ms

# 0001-01-01 .. 9999-12-31, the range RFC 3339 years can write.
MS = st.integers(min_value=-62_135_596_800_000, max_value=253_402_300_799_999)


def _reference(ms: int) -> str:
    # isoformat, not strftime("%Y"): glibc's strftime writes year 1 as "1" (the formatter once did too).
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    frac = ms % 1000
    base = dt.replace(tzinfo=None).isoformat(timespec="seconds")
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


@given(MS)
def test_format_ms_matches_the_reference(ms: int) -> None:
    assert format_ms(ms) == _reference(ms)


def test_a_year_before_1000_has_four_digits_regression() -> None:
    # Go's zero time, which some gateways send as an unset occurredAt, came out as "1-01-01T00:00:00Z":
    # not RFC 3339, so a consumer of the outcome refused it.
    assert format_ms(-62_135_596_800_000) == "0001-01-01T00:00:00Z"
    assert format_ms(to_ms(datetime(1000, 1, 1, tzinfo=UTC)) - 1) == "0999-12-31T23:59:59.999Z"


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_ms_round_trip(ms: int) -> None:
    assert to_ms(from_ms(ms)) == ms


def test_second_cache_is_bounded() -> None:
    for sec in range(timefmt._SECONDS_MAX + 10):
        format_ms(sec * 1000)
    assert len(timefmt._SECONDS) <= timefmt._SECONDS_MAX
    assert format_ms(0) == "1970-01-01T00:00:00Z"


def test_fraction_and_whole_seconds() -> None:
    assert format_ms(1775722500123) == "2026-04-09T08:15:00.123Z"
    assert format_ms(1775722500000) == "2026-04-09T08:15:00Z"
    assert format_ms(-1) == "1969-12-31T23:59:59.999Z"


def test_to_ms_is_exact_where_float_seconds_were_not() -> None:
    """Regression: int(timestamp() * 1000) gave 137438953470 for this instant, a millisecond early."""
    assert to_ms(from_ms(137438953471)) == 137438953471
    parsed = datetime(1974, 5, 10, 17, 29, 13, 471000, tzinfo=UTC)
    assert to_ms(parsed) == 137438953471


def test_to_ms_drops_sub_millisecond_digits_towards_the_past() -> None:
    assert to_ms(datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC)) == 0
    assert to_ms(datetime(1969, 12, 31, 23, 59, 59, 999_500, tzinfo=UTC)) == -1
