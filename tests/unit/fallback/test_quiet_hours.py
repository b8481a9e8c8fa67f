"""``sendWindow`` in the core: a step that falls due outside the window waits for the next opening.

The issue's own example: a promotional WhatsApp at 19:30 with a 2-hour fallback must not send its
SMS at 21:30 but at the next 09:00, its command saying when it fell due (``deferredFrom``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from stream_app.contracts import AttemptEnd, CommandReason, Result, to_ms
from stream_app.fallback import SendCommand
from tests.unit.fallback.driver import MINUTE, Driver, closing, request, status

ROME = ZoneInfo("Europe/Rome")
HOUR = 60 * MINUTE
WINDOW = {"timezone": "Europe/Rome", "from": "09:00", "to": "20:00"}


def rome(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    return to_ms(datetime(year, month, day, hour, minute, second, tzinfo=ROME))


def promo() -> list[dict[str, Any]]:
    return [{"channel": "WHATSAPP", "fallbackAfter": 7200}, {"channel": "SMS"}]


def test_the_fallback_sms_waits_for_the_morning() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    assert [c.reason for c in d.commands] == [CommandReason.INITIAL]  # step 0 is not held (FALLBACK)
    d.run_until(rome(2026, 4, 10, 8, 59, 59) + 999)
    assert len(d.commands) == 1, "never early"
    assert d.state is not None and d.state.deadline_ms == rome(2026, 4, 10, 9, 0)
    d.run_until(rome(2026, 4, 10, 9, 0))
    sms = d.commands[1]
    assert (sms.attempt, sms.channel, sms.reason) == (1, "SMS", CommandReason.TIMEOUT)
    assert to_ms(sms.issued_at) == rome(2026, 4, 10, 9, 0)
    assert sms.deferred_from is not None and to_ms(sms.deferred_from) == rome(2026, 4, 9, 21, 30)
    assert d.commands[0].deferred_from is None


def test_a_failure_at_night_defers_with_reason_failed() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 59))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.advance(2 * MINUTE)  # 20:01
    d.report(status("WHATSAPP", "REJECTED", 0))
    assert len(d.commands) == 1
    d.run_until(rome(2026, 4, 10, 9, 0))
    assert d.commands[1].reason is CommandReason.FAILED
    assert to_ms(d.commands[1].deferred_from or d.commands[1].issued_at) == rome(2026, 4, 9, 20, 1)


def test_applies_to_all_holds_step_zero_too() -> None:
    d = Driver(now=rome(2026, 4, 9, 23, 0))
    d.send(request(channels=promo(), sendWindow={**WINDOW, "appliesTo": "ALL"}))
    assert d.commands == []
    d.run_until(rome(2026, 4, 10, 9, 0))
    (first,) = d.commands
    assert (first.attempt, first.reason) == (0, CommandReason.INITIAL)
    assert first.deferred_from is not None and to_ms(first.deferred_from) == rome(2026, 4, 9, 23, 0)


def test_inside_the_window_nothing_changes() -> None:
    d = Driver(now=rome(2026, 4, 9, 10, 0))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.advance(2 * HOUR)
    assert [c.deferred_from for c in d.commands] == [None, None]
    assert to_ms(d.commands[1].issued_at) == rome(2026, 4, 9, 12, 0)


def test_an_opening_after_the_expiry_ends_expired_at_once() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW, ttl=8 * 3600))  # expires 03:30
    d.run_until(rome(2026, 4, 9, 21, 30))
    assert len(d.commands) == 1
    out = d.outcome
    assert (out.result, out.reason) == (Result.EXPIRED, "OUTSIDE_SEND_WINDOW")
    assert to_ms(out.completed_at) == rome(2026, 4, 9, 21, 30)
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.TIMEOUT]


def test_an_opening_exactly_at_the_expiry_is_too_late() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW, expiresAt="2026-04-10T09:00:00+02:00"))
    d.run_until(rome(2026, 4, 9, 21, 30))
    assert (d.outcome.result, d.outcome.reason) == (Result.EXPIRED, "OUTSIDE_SEND_WINDOW")
    d2 = Driver(now=rome(2026, 4, 9, 19, 30))
    d2.send(request(channels=promo(), sendWindow=WINDOW, expiresAt="2026-04-10T09:00:00.001+02:00"))
    d2.run_until(rome(2026, 4, 10, 9, 0))
    assert len(d2.commands) == 2 and d2.outcomes == []


def test_a_cancel_while_deferred_issues_nothing_more() -> None:
    from tests.unit.fallback.driver import cancel

    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.run_until(rome(2026, 4, 9, 22, 0))
    d.stop(cancel(reason="paid"))
    d.drain()
    assert len(d.commands) == 1 and d.outcome.result is Result.CANCELLED


def test_a_deferred_step_on_a_channel_closed_by_the_morning_is_skipped_then() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(
        request(
            channels=[{"channel": "WHATSAPP", "fallbackAfter": 7200}, {"channel": "RCS"}, {"channel": "SMS"}],
            sendWindow=WINDOW,
        )
    )
    d.run_until(rome(2026, 4, 9, 22, 0))
    d.control(closing("RCS"))
    d.run_until(rome(2026, 4, 10, 9, 0))
    sms = d.commands[-1]
    assert (sms.attempt, sms.channel, sms.reason) == (2, "SMS", CommandReason.SKIPPED)
    assert sms.deferred_from is None  # it fell due when RCS was skipped, inside the window


def test_a_late_timer_outside_the_window_defers_again_keeping_the_first_due_time() -> None:
    """A processor down all day: the wake comes at 21:00, outside again; the step waits for the next 09:00."""
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.run_until(rome(2026, 4, 9, 21, 30))  # deferred to 09:00
    d.now = rome(2026, 4, 10, 21, 0)
    d.tick()
    assert len(d.commands) == 1
    d.run_until(rome(2026, 4, 11, 9, 0))
    assert to_ms(d.commands[1].issued_at) == rome(2026, 4, 11, 9, 0)
    assert d.commands[1].deferred_from is not None
    assert to_ms(d.commands[1].deferred_from) == rome(2026, 4, 9, 21, 30)


def test_the_window_and_the_deferral_survive_the_store() -> None:
    d = Driver(now=rome(2026, 4, 9, 19, 30), roundtrip=True)
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.run_until(rome(2026, 4, 9, 21, 30))
    assert d.state is not None and d.state.deferred is not None and d.state.window is not None
    assert not any(isinstance(e, SendCommand) and e.command.attempt == 1 for e in d.effects)


def test_the_morning_after_a_daylight_saving_change_is_local_nine() -> None:
    """Rome's changes of 2026: the SMS due Saturday night goes at Sunday 09:00 local, CEST or CET."""
    for saturday, sunday_nine_utc in (((2026, 3, 28), 7), ((2026, 10, 24), 8)):
        d = Driver(now=rome(*saturday, 19, 30))
        d.send(request(channels=promo(), sendWindow=WINDOW))
        d.drain_until_commands(2)
        sms = d.commands[1]
        issued = datetime.fromtimestamp(to_ms(sms.issued_at) / 1000, tz=ROME)
        assert (issued.day, issued.hour, issued.minute) == (saturday[2] + 1, 9, 0)
        assert sms.issued_at.astimezone(ZoneInfo("UTC")).hour == sunday_nine_utc


def test_days_name_the_days_the_window_opens_on() -> None:
    d = Driver(now=rome(2026, 4, 10, 19, 30))  # a Friday
    d.send(request(channels=promo(), sendWindow={**WINDOW, "days": ["MON", "TUE", "WED", "THU", "FRI"]}))
    d.drain_until_commands(2)
    assert to_ms(d.commands[1].issued_at) == rome(2026, 4, 13, 9, 0)  # Monday


def test_a_window_across_midnight_lets_a_night_step_go_at_once() -> None:
    night = {"timezone": "Europe/Rome", "from": "22:00", "to": "06:00"}
    d = Driver(now=rome(2026, 4, 9, 23, 0))
    d.send(request(channels=promo(), sendWindow=night))
    d.advance(2 * HOUR)  # 01:00, still inside: the SMS goes at once
    assert to_ms(d.commands[1].issued_at) == rome(2026, 4, 10, 1, 0)
    d2 = Driver(now=rome(2026, 4, 10, 4, 30))
    d2.send(request(channels=promo(), sendWindow=night))
    d2.advance(2 * HOUR)  # 06:30, outside: waits for 22:00
    assert len(d2.commands) == 1
    d2.drain_until_commands(2)
    assert to_ms(d2.commands[1].issued_at) == rome(2026, 4, 10, 22, 0)


def test_a_fallback_timer_fired_late_says_when_its_step_fell_due_regression() -> None:
    """The WhatsApp's 2 hours ran out at 21:30 while no processor ran; one wakes at 08:00 (outside
    the window) and holds the SMS for 09:00. Its deferredFrom said 08:00, the moment the timer was
    fired, hiding ten and a half hours of the wait it reports: the step fell due at 21:30."""
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.now = rome(2026, 4, 10, 8, 0)
    d.tick()
    assert len(d.commands) == 1 and d.state is not None
    assert d.state.attempts[0].ended_by is AttemptEnd.TIMEOUT
    d.run_until(rome(2026, 4, 10, 9, 0))
    sms = d.commands[1]
    assert to_ms(sms.issued_at) == rome(2026, 4, 10, 9, 0)
    assert sms.deferred_from is not None
    assert to_ms(sms.deferred_from) == rome(2026, 4, 9, 21, 30)


def test_an_earlier_success_while_a_step_waits_for_the_window_keeps_the_failed_attempt_failed() -> None:
    """Only an attempt still open is superseded: one that failed stays FAILED in the outcome."""
    chain = [{"channel": "WHATSAPP", "fallbackAfter": 3600}, {"channel": "RCS"}, {"channel": "SMS"}]
    d = Driver(now=rome(2026, 4, 9, 18, 30))
    d.send(request(channels=chain, sendWindow=WINDOW))
    d.run_until(rome(2026, 4, 9, 19, 30))  # WhatsApp times out inside the window: RCS goes out
    d.run_until(rome(2026, 4, 9, 20, 1))
    d.report(status("RCS", "REJECTED", 1))  # SMS falls due at night: held for 09:00
    assert len(d.commands) == 2
    d.advance(30 * MINUTE)
    d.report(status("WHATSAPP", "DELIVERED", 0))
    out = d.outcome
    assert (out.result, out.channel) == (Result.SUCCEEDED, "WHATSAPP")
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.SUCCEEDED, AttemptEnd.FAILED]
    d.run_until(rome(2026, 4, 10, 9, 0))
    assert len(d.commands) == 2


def test_a_step_due_before_a_sunday_the_clocks_skip_waits_for_the_next_sunday_regression() -> None:
    """A Sunday-night window, 02:15-02:45, and an SMS falling due on Friday 27 March 2026: Sunday 29
    has no 02:15 (02:00 jumps to 03:00), so the SMS goes at 02:15 on 5 April. Working that opening
    out raised, and the processor disarms a timer whose decision raises: the message never ended."""
    d = Driver(now=rome(2026, 3, 27, 10, 0))
    window = {"timezone": "Europe/Rome", "from": "02:15", "to": "02:45", "days": ["SUN"]}
    d.send(request(channels=promo(), sendWindow=window, ttl=14 * 86_400))
    d.drain_until_commands(2)
    sms = d.commands[1]
    assert to_ms(sms.issued_at) == rome(2026, 4, 5, 2, 15)
    assert sms.deferred_from is not None and to_ms(sms.deferred_from) == rome(2026, 3, 27, 12, 0)


def test_a_step_due_at_night_whose_timer_fires_late_in_the_morning_says_deferred_from_regression() -> None:
    """The WhatsApp's 2 hours ran out at 21:30, outside the window, while no processor ran; one wakes
    at 10:00 the next morning, inside it, and issues the SMS at once. The step fell due outside the
    window and went out after the opening, so its command must say deferredFrom 21:30 (CONTRACT.md
    v1.1), as it does when a processor is there at 21:30 to defer it; it said nothing."""
    d = Driver(now=rome(2026, 4, 9, 19, 30))
    d.send(request(channels=promo(), sendWindow=WINDOW))
    d.now = rome(2026, 4, 10, 10, 0)
    d.tick()
    sms = d.commands[1]
    assert to_ms(sms.issued_at) == rome(2026, 4, 10, 10, 0)
    assert sms.deferred_from is not None
    assert to_ms(sms.deferred_from) == rome(2026, 4, 9, 21, 30)
    # a late timer whose deadline was inside the window is not a deferral
    d2 = Driver(now=rome(2026, 4, 9, 10, 0))
    d2.send(request(channels=promo(), sendWindow=WINDOW))
    d2.now = rome(2026, 4, 9, 13, 0)
    d2.tick()
    assert d2.commands[1].deferred_from is None


def test_a_step_due_exactly_at_the_close_waits_and_one_due_exactly_at_the_opening_goes() -> None:
    """The window is [from, to): 20:00:00.000 is outside, 09:00:00.000 is inside."""
    d = Driver(now=rome(2026, 4, 9, 18, 0))
    d.send(request(channels=promo(), sendWindow=WINDOW))  # the 2 hours run out at 20:00 exactly
    d.run_until(rome(2026, 4, 9, 20, 0))
    assert len(d.commands) == 1 and d.state is not None and d.state.deferred is not None
    d.run_until(rome(2026, 4, 10, 9, 0))
    assert to_ms(d.commands[1].issued_at) == rome(2026, 4, 10, 9, 0)
    d2 = Driver(now=rome(2026, 4, 10, 7, 0))
    d2.send(request(channels=promo(), sendWindow=WINDOW))  # runs out at 09:00 exactly
    d2.run_until(rome(2026, 4, 10, 9, 0))
    assert to_ms(d2.commands[1].issued_at) == rome(2026, 4, 10, 9, 0)
    assert d2.commands[1].deferred_from is None
