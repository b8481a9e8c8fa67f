"""Channel control in the core: a closed channel's step is skipped; ``inFlight: FALLBACK`` cuts it short.

The control view is an input of every decision (like ``now``), and the records themselves are
events, so a replay that feeds them in order decides the same.
"""

from __future__ import annotations

from typing import Any

from stream_app.contracts import AttemptEnd, CommandReason, Result, to_ms
from stream_app.fallback import NO_CONTROLS, ControlEvent, ControlView, RequestEvent, decide
from stream_app.fallback.why import Rule, explain
from tests.unit.fallback.driver import LIMITS, MINUTE, T0, Driver, closing, request, status

CHAIN: list[dict[str, Any]] = [
    {"channel": "WHATSAPP", "fallbackAfter": 600},
    {"channel": "RCS", "fallbackAfter": 300},
    {"channel": "SMS"},
]


def test_a_closed_channel_is_skipped_and_the_chain_moves_on_at_once() -> None:
    d = Driver()
    d.control(closing("whatsapp", reason="provider outage"))
    d.send(request(channels=CHAIN))
    (rcs,) = d.commands
    assert (rcs.attempt, rcs.channel, rcs.reason) == (1, "RCS", CommandReason.SKIPPED)
    assert rcs.previous is not None and (rcs.previous.attempt, rcs.previous.channel) == (0, "WHATSAPP")
    assert rcs.previous.status is None
    assert to_ms(rcs.issued_at) == T0
    d.report(status("RCS", "DELIVERED", 1))
    out = d.outcome
    assert out.result is Result.SUCCEEDED and out.attempt_count == 2
    assert [(a.channel, a.ended_by) for a in out.attempts] == [
        ("WHATSAPP", AttemptEnd.SKIPPED),
        ("RCS", AttemptEnd.SUCCEEDED),
    ]


def first_channel(view: ControlView, now: int = T0, **fields: Any) -> str:
    """The channel of the first command of a fresh message under ``view`` at ``now``."""
    d = Driver(now=now)
    d.controls = view
    d.send(request(channels=CHAIN, **fields))
    return d.commands[0].channel.value


def test_closed_for_one_tenant_only() -> None:
    view = NO_CONTROLS.apply("acme/WHATSAPP", closing("WHATSAPP", tenant="acme"))
    assert first_channel(view, tenant="acme") == "RCS"
    assert first_channel(view, tenant="globex") == "WHATSAPP"
    assert first_channel(view) == "WHATSAPP"  # no tenant: only a closure for all applies
    everyone = NO_CONTROLS.apply("WHATSAPP", closing("WHATSAPP"))
    assert first_channel(everyone, tenant="globex") == "RCS"
    assert first_channel(everyone) == "RCS"


def test_until_reopens_by_itself() -> None:
    view = NO_CONTROLS.apply("WHATSAPP", closing("WHATSAPP", until="2026-04-09T08:20:00Z"))  # T0 + 5 min
    assert first_channel(view, T0 + 5 * MINUTE - 1) == "RCS"
    assert first_channel(view, T0 + 5 * MINUTE) == "WHATSAPP"


def test_open_and_tombstone_reopen() -> None:
    view = NO_CONTROLS.apply("WHATSAPP", closing("WHATSAPP"))
    assert first_channel(view) == "RCS"
    assert first_channel(view.apply("WHATSAPP", closing("WHATSAPP", state="OPEN"))) == "WHATSAPP"
    assert first_channel(view.apply("WHATSAPP", None)) == "WHATSAPP"
    assert view.apply("WHATSAPP", None) == NO_CONTROLS


def test_every_step_closed_ends_failed_channels_closed_with_no_command() -> None:
    d = Driver()
    for channel in ("WHATSAPP", "RCS", "SMS"):
        d.control(closing(channel))
    d.send(request(channels=CHAIN))
    assert d.commands == []
    out = d.outcome
    assert (out.result, out.reason) == (Result.FAILED, "CHANNELS_CLOSED")
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.SKIPPED] * 3


def test_the_last_step_closed_after_a_failure_also_says_channels_closed() -> None:
    d = Driver()
    d.control(closing("SMS"))
    d.send(request(channels=CHAIN))
    d.report(status("WHATSAPP", "REJECTED", 0))
    d.report(status("RCS", "ERROR", 1))
    assert (d.outcome.result, d.outcome.reason) == (Result.FAILED, "CHANNELS_CLOSED")
    assert d.outcome.attempts[2].ended_by is AttemptEnd.SKIPPED


def test_a_plain_failure_of_the_last_step_gives_no_reason() -> None:
    d = Driver()
    d.send(request(channels=CHAIN))
    for i, channel in enumerate(("WHATSAPP", "RCS", "SMS")):
        d.report(status(channel, "REJECTED", i))
    assert (d.outcome.result, d.outcome.reason) == (Result.FAILED, None)


def test_in_flight_wait_leaves_the_open_attempt_alone() -> None:
    d = Driver()
    d.send(request(channels=CHAIN))
    d.control(closing("WHATSAPP"))
    assert len(d.commands) == 1
    d.advance(10 * MINUTE)
    assert [(c.channel, c.reason) for c in d.commands] == [
        ("WHATSAPP", CommandReason.INITIAL),
        ("RCS", CommandReason.TIMEOUT),
    ]
    assert to_ms(d.commands[1].issued_at) == T0 + 10 * MINUTE


def test_in_flight_fallback_ends_the_open_attempt_at_once() -> None:
    d = Driver()
    d.send(request(channels=CHAIN))
    d.advance(MINUTE)
    d.control(closing("WHATSAPP", inFlight="FALLBACK"))
    rcs = d.commands[1]
    assert (rcs.attempt, rcs.channel, rcs.reason) == (1, "RCS", CommandReason.TIMEOUT)
    assert to_ms(rcs.issued_at) == T0 + MINUTE
    d.report(status("RCS", "DELIVERED", 1))
    assert [a.ended_by for a in d.outcome.attempts] == [AttemptEnd.TIMEOUT, AttemptEnd.SUCCEEDED]


def test_in_flight_fallback_spares_other_channels_tenants_and_past_untils() -> None:
    for record in (
        closing("RCS", inFlight="FALLBACK"),
        closing("WHATSAPP", inFlight="FALLBACK", tenant="globex"),
        closing("WHATSAPP", inFlight="FALLBACK", until="2026-04-09T08:15:00Z"),  # == now: reopened
        closing("WHATSAPP", inFlight="FALLBACK", state="OPEN"),
    ):
        d = Driver()
        d.send(request(channels=CHAIN, tenant="acme"))
        d.control(record)
        assert len(d.commands) == 1, record


def test_in_flight_fallback_on_the_last_step_fails_with_channels_closed() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "SMS"}]))
    d.control(closing("SMS", inFlight="FALLBACK"))
    assert (d.outcome.result, d.outcome.reason) == (Result.FAILED, "CHANNELS_CLOSED")
    assert d.outcome.attempts[0].ended_by is AttemptEnd.TIMEOUT


def test_a_status_never_lands_on_a_skipped_attempt() -> None:
    d = Driver()
    d.control(closing("SMS"))
    d.send(request(channels=[{"channel": "SMS"}, {"channel": "WHATSAPP"}, {"channel": "SMS"}]))
    d.report(status("SMS", "DELIVERED"))  # no attempt number: the latest SMS attempt is skipped
    d.report(status("SMS", "DELIVERED", 0))
    assert d.outcomes == []
    d.report(status("WHATSAPP", "DELIVERED", 1))
    assert d.outcome.channel == "WHATSAPP"


def test_the_same_state_and_input_with_another_view_decide_differently_and_each_replays() -> None:
    req = RequestEvent(request(channels=CHAIN))
    closed = NO_CONTROLS.apply("WHATSAPP", closing("WHATSAPP"))
    open_now = decide(None, req, T0, LIMITS)
    shut = decide(None, req, T0, LIMITS, closed)
    assert open_now.effects != shut.effects
    assert decide(None, req, T0, LIMITS, closed) == shut
    noop = decide(shut.state, ControlEvent("WHATSAPP", closing("WHATSAPP")), T0, LIMITS, closed)
    assert noop.state is shut.state and noop.effects == ()


def test_an_initial_attempt_on_a_channel_closed_with_fallback_is_cut_short_at_once_regression() -> None:
    """Upstream sent step 0 itself on a channel closed with ``inFlight: FALLBACK``. The sweep that
    ends such attempts runs when the record is read and again whenever an instance gains the
    partition; a request arriving in between left its attempt open, so whether it waited out its
    fallbackAfter or fell back at once depended on a rebalance (and a replay disagreed with the
    processor). It is an attempt on the channel while the closure lasts: it ends at once."""
    d = Driver()
    d.control(closing("WHATSAPP", inFlight="FALLBACK"))
    d.send(request(channels=CHAIN, initialAttempt={"sentAt": "2026-04-09T08:14:00Z"}))
    assert [(c.attempt, c.channel, c.reason) for c in d.commands] == [(1, "RCS", CommandReason.TIMEOUT)]
    assert to_ms(d.commands[0].issued_at) == T0
    # and explain names the closure, not a fallbackAfter that has not passed
    view = NO_CONTROLS.apply("WHATSAPP", closing("WHATSAPP", inFlight="FALLBACK"))
    req = RequestEvent(request(channels=CHAIN, initialAttempt={"sentAt": "2026-04-09T08:14:00Z"}))
    decision = decide(None, req, T0, LIMITS, view)
    assert [w.rule for w in explain(None, req, decision.state, decision.effects, view)][-1] is Rule.CONTROL
    # the same record with WAIT leaves it alone, as any attempt issued before a WAIT closure
    w = Driver()
    w.control(closing("WHATSAPP"))
    w.send(request(channels=CHAIN, initialAttempt={"sentAt": "2026-04-09T08:14:00Z"}))
    assert w.commands == []


def test_a_fallback_closure_at_its_until_cuts_nothing_in_decide_itself() -> None:
    """``until`` reopens the channel at that very millisecond, also for a caller of decide() (an
    explain replay) that hands the record over without the runtime's sweep filter."""
    d = Driver()
    d.send(request(channels=CHAIN))
    state = d.state
    assert state is not None
    record = closing("WHATSAPP", inFlight="FALLBACK", until="2026-04-09T08:20:00Z")  # T0 + 5 min
    view = NO_CONTROLS.apply(record.key, record)
    at_until = decide(state, ControlEvent(record.key, record), T0 + 5 * MINUTE, LIMITS, view)
    assert at_until.state is state and at_until.effects == ()
    before = decide(state, ControlEvent(record.key, record), T0 + 5 * MINUTE - 1, LIMITS, view)
    assert [type(e).__name__ for e in before.effects] == ["SendCommand"]
