"""``stream-app channel``'s record building: --until parsing and the contract's checks, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream_app.admin.channels import closing, opening, parse_until
from stream_app.admin.errors import InvalidInput


def test_until_takes_durations_and_times() -> None:
    now = datetime(2026, 4, 9, 10, tzinfo=UTC)
    assert parse_until("90s", now) == now + timedelta(seconds=90)
    assert parse_until("1h30m", now) == now + timedelta(minutes=90)
    assert parse_until("1d", now) == now + timedelta(days=1)
    assert parse_until("600", now) == now + timedelta(seconds=600)
    assert parse_until("2026-04-09T13:00:00+02:00", now) == now + timedelta(hours=1)
    for bad in ("", "h", "-5m", "12:00", "2026-04-09T12:00:00", "0s", "2026-04-09T12:00:00+02:00"):
        with pytest.raises(InvalidInput):
            parse_until(bad, now)


def test_records_carry_the_key_rule_and_the_time_they_were_written() -> None:
    now = datetime(2026, 4, 9, 10, tzinfo=UTC)
    key, value, record = closing("rcs", tenant="acme", until="30m", in_flight="fallback", now=now)
    assert key == b"acme/RCS" and record.in_flight == "FALLBACK"
    assert record.at == now and record.until == now + timedelta(minutes=30)
    assert b'"channel":"rcs"' in value  # published as given; the processor reads names in any case
    key, _, record = opening("SMS", now=now)
    assert (key, record.state, record.tenant) == (b"SMS", "OPEN", None)
    with pytest.raises(InvalidInput, match="channel control: tenant: String should have at least 1"):
        closing("SMS", tenant="")


@pytest.mark.parametrize("until", ["3000000d", "999999999999999h", "315360001", "9" * 400 + "s"])
def test_until_past_ten_years_overflowed_regression(until: str) -> None:
    """timedelta (or the date after it) raised OverflowError: a traceback instead of a refusal."""
    now = datetime(2026, 4, 9, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput, match=r"at most 315360000 s \(ten years\) from now"):
        parse_until(until, now)
    assert parse_until("3650d", now) == now + timedelta(days=3650)  # ten years is still fine


@pytest.mark.parametrize("until", ["1h30", "2d5", "1d2h30"])
def test_a_number_without_its_unit_after_another_unit_is_refused_regression(until: str) -> None:
    """Regression: ``1h30`` was read as 1 hour 30 seconds (a bare number is seconds), when whoever
    typed it meant 1 hour 30 minutes: the channel reopened about half an hour early."""
    now = datetime(2026, 4, 9, 10, tzinfo=UTC)
    with pytest.raises(InvalidInput, match=r"give the unit of the last number"):
        parse_until(until, now)
    assert parse_until("1h30m", now) == now + timedelta(minutes=90)
    assert parse_until("1h30s", now) == now + timedelta(hours=1, seconds=30)
