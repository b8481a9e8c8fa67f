"""Quiet hours through the processor's partition step, against the wall-clock reference.

Random windows in zones with odd rules, a flow starting within days of one of the zone's offset
changes, chains with fallbackAfter of minutes to hours, failures reported now and then, expiries of
hours to days. With timers fired on time, every step that falls due must go out exactly at the
reference's first instant inside at or after that moment (so ``deferredFrom`` is that moment when it
differs), never at or after the expiry; a flow whose next opening is at or after its expiry ends
EXPIRED ``OUTSIDE_SEND_WINDOW`` the moment the step falls due. With a processor that is down now and
then (timers fired late), no command goes out outside the window or after the expiry, and a
``deferredFrom`` is before its command.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as s

from stream_app.contracts import CommandReason, Result, Weekday, format_ms, to_ms
from stream_app.fallback import window_of
from tests.unit.fallback.driver import Driver, request, status
from tests.unit.fallback.test_window_reference import DAY, MINUTE, ZONES, changes, first_inside, inside, utc

HOUR = 60 * MINUTE
DAYS = [d.value for d in Weekday]


@s.composite
def flows(draw: s.DrawFn) -> tuple[int, dict[str, Any], list[tuple[int, bool]]]:
    zone = draw(s.sampled_from(ZONES))
    start = draw(s.integers(0, 1439))
    stop = (start + draw(s.integers(1, 1439))) % 1440
    window: dict[str, Any] = {
        "timezone": zone,
        "from": f"{start // 60:02d}:{start % 60:02d}",
        "to": f"{stop // 60:02d}:{stop % 60:02d}",
        "appliesTo": draw(s.sampled_from(["FALLBACK", "ALL"])),
    }
    if draw(s.booleans()):
        window["days"] = draw(s.lists(s.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
    near = [c for c in changes(zone) if c < utc(2029)]
    at = draw(s.sampled_from(near)) if near else utc(2026, 3, 29)
    now = (at + draw(s.integers(-3 * DAY, 3 * DAY))) // 1000 * 1000
    channels = [
        {"channel": ch, "fallbackAfter": draw(s.integers(60, 12 * 3600))}
        for ch in draw(s.lists(s.sampled_from(["WHATSAPP", "RCS", "SMS"]), min_size=2, max_size=4))
    ]
    if draw(s.booleans()):
        del channels[-1]["fallbackAfter"]
    body: dict[str, Any] = {"channels": channels, "sendWindow": window}
    if draw(s.booleans()):
        body["ttl"] = draw(s.integers(3600, 10 * 86_400))
    else:
        body["expiresAt"] = format_ms(now + draw(s.integers(HOUR, 10 * DAY)))
    # (delay, report a failure of the latest attempt when true, else only let the clock run)
    script = draw(s.lists(s.tuples(s.integers(0, 36 * HOUR), s.booleans()), max_size=6))
    return now, body, script


@settings(max_examples=60, deadline=None)
@given(flows())
def test_on_time_steps_go_at_the_first_opening_and_never_after_the_expiry(
    flow: tuple[int, dict[str, Any], list[tuple[int, bool]]],
) -> None:
    now, body, script = flow
    d = Driver(now=now)
    req = request(**body)
    assert req.send_window is not None
    w = window_of(req.send_window)
    end = to_ms(req.expires_at) if req.expires_at is not None else now + int(req.ttl or 0) * 1000
    d.send(req)
    failed_at: dict[int, int] = {}  # attempt -> when its failure was reported
    for delay, fail in script:
        d.run_until(d.now + delay)
        if fail and d.state is not None and d.state.attempts and d.state.attempts[-1].ended_by is None:
            n = len(d.state.attempts) - 1
            channel = body["channels"][n]["channel"]
            d.report(status(channel, "REJECTED", n))
            failed_at[n] = d.now
    d.drain()
    (out,) = d.outcomes
    cmds = d.commands
    for c in cmds:
        issued = to_ms(c.issued_at)
        assert issued < end and to_ms(c.not_after) == end
        if c.reason is CommandReason.INITIAL:
            due = now
        elif c.reason is CommandReason.TIMEOUT:
            prev = cmds[c.attempt - 1]
            due = to_ms(prev.issued_at) + body["channels"][c.attempt - 1]["fallbackAfter"] * 1000
        else:
            assert c.reason is CommandReason.FAILED
            due = failed_at[c.attempt - 1]
        expected = first_inside(w, due) if w.applies(c.attempt) else due
        assert issued == expected, (format_ms(due), c)
        assert (c.deferred_from is None) == (issued == due)
        if c.deferred_from is not None:
            event("a deferred command")
            assert to_ms(c.deferred_from) == due
    event(f"outcome {out.result.value} {out.reason}")
    if out.reason == "OUTSIDE_SEND_WINDOW":
        done = to_ms(out.completed_at)
        assert out.result is Result.EXPIRED and done < end
        assert not inside(w, done)
        opening = first_inside(w, done, limit_days=-(-(end - done) // DAY) + 1)
        assert opening is None or opening >= end
    elif out.result is Result.EXPIRED:
        assert to_ms(out.completed_at) == end


@settings(max_examples=40, deadline=None)
@given(flows(), s.lists(s.integers(0, 3 * DAY), min_size=1, max_size=4))
def test_late_timers_never_send_outside_the_window_nor_after_the_expiry(
    flow: tuple[int, dict[str, Any], list[tuple[int, bool]]], outages: list[int]
) -> None:
    now, body, _ = flow
    d = Driver(now=now)
    req = request(**body)
    assert req.send_window is not None
    w = window_of(req.send_window)
    end = to_ms(req.expires_at) if req.expires_at is not None else now + int(req.ttl or 0) * 1000
    d.send(req)
    for down in outages:  # the processor is down for a while, then fires whatever is due at once
        d.now += down
        d.tick()
    d.drain()
    assert len(d.outcomes) == 1
    for c in d.commands:
        issued = to_ms(c.issued_at)
        assert issued < end
        if w.applies(c.attempt):
            assert inside(w, issued), c
        if c.deferred_from is not None:
            # the moment it fell due: maybe inside the window, when the processor only got to it
            # after the window had closed again (docs/semantics.md)
            assert to_ms(c.deferred_from) < issued
