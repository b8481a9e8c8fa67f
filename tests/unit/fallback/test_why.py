"""The rule behind each decision, read off the transition (``fallback.why``), for every rule of the core.

Each test drives ``decide()`` as the runtime does and checks the rule ``explain`` names for the step,
with the sentence a support engineer reads. The seed scenarios' rules are checked end to end, through
the broker, in ``tests/integration/explain/``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from stream_app.contracts import ChannelControl, format_ms, to_ms
from stream_app.fallback import (
    NO_CONTROLS,
    CancelEvent,
    ControlEvent,
    ControlView,
    Event,
    FlowState,
    RequestEvent,
    StatusEvent,
    TimerEvent,
    decide,
)
from stream_app.fallback.why import Rule, Why, control_change, explain
from tests.unit.fallback.driver import HOUR, LIMITS, MINUTE, SECOND, T0, cancel, closing, request, status

WA_SMS = [
    {"channel": "WHATSAPP", "fallbackAfter": 7200, "successStatus": "DELIVERED"},
    {"channel": "SMS"},
]


class Life:
    """One message through decide(), keeping the rules of every step."""

    def __init__(self) -> None:
        self.state: FlowState | None = None
        self.now = T0
        self.controls: ControlView = NO_CONTROLS

    def step(self, event: Event, at: int | None = None) -> tuple[Why, ...]:
        self.now = at if at is not None else self.now
        if isinstance(event, ControlEvent):  # the runtime's order: into the view, then to the message
            self.controls = self.controls.apply(event.key, event.control)
        decision = decide(self.state, event, self.now, LIMITS, self.controls)
        whys = explain(self.state, event, decision.state, decision.effects, self.controls)
        self.state = decision.state
        return whys

    def control(self, key: str, record: ChannelControl | None, at: int | None = None) -> tuple[Why, ...]:
        return self.step(ControlEvent(key, record), at)

    def timer(self) -> tuple[Why, ...]:
        assert self.state is not None and self.state.deadline_ms is not None
        return self.step(TimerEvent(), self.state.deadline_ms)


def rules(whys: tuple[Why, ...]) -> list[Rule]:
    return [w.rule for w in whys]


def test_a_request_is_accepted_and_issues_step_0() -> None:
    life = Life()
    whys = life.step(RequestEvent(request(channels=WA_SMS, ttl=3600)))
    assert rules(whys) == [Rule.ACCEPTED, Rule.INITIAL]
    assert whys[0].text == (
        "request accepted: WHATSAPP(fallbackAfter 7200 s, until DELIVERED) > SMS(until DELIVERED); "
        f"ends {format_ms(T0 + HOUR)}"
    )
    assert (whys[1].text, whys[1].attempt) == ("-> WHATSAPP attempt 0, reason INITIAL", 0)


def test_the_issue_example_timeout_names_the_attempt_its_status_and_the_next_step() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    assert rules(life.step(StatusEvent(status("WHATSAPP", "SENT", 0)), T0 + SECOND)) == [Rule.PROGRESS]
    whys = life.timer()
    assert life.now == T0 + 2 * HOUR  # fired at its deadline
    assert [(w.rule, w.text) for w in whys] == [
        (Rule.TIMEOUT, "WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s -> SMS, reason TIMEOUT")
    ]


def test_a_timeout_of_the_last_step_ends_failed() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=[{"channel": "SMS", "fallbackAfter": 0.5}])))
    whys = life.timer()
    assert rules(whys) == [Rule.TIMEOUT, Rule.LAST_STEP]
    assert whys[0].text == "SMS attempt 0 still without a status at fallbackAfter 0.5 s"
    assert whys[1].text == "no step left after step 0: outcome FAILED"


def test_a_failure_status_moves_on_at_once() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    whys = life.step(StatusEvent(status("WHATSAPP", "ERROR", 0, reasons=["boom"])), T0 + SECOND)
    assert [(w.rule, w.text) for w in whys] == [
        (Rule.FAILURE, "WHATSAPP attempt 0 got ERROR, a failure status -> SMS, reason FAILED")
    ]


def test_success_names_the_attempt_and_the_outcome_and_a_late_read_is_reported() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    whys = life.step(StatusEvent(status("WHATSAPP", "DELIVERED", 0)), T0 + SECOND)
    assert [(w.rule, w.text) for w in whys] == [
        (Rule.SUCCESS, "WHATSAPP attempt 0 reached DELIVERED (successStatus DELIVERED)"),
        (Rule.SUCCESS, "outcome SUCCEEDED on WHATSAPP DELIVERED"),
    ]
    late = life.step(StatusEvent(status("WHATSAPP", "READ", 0)), T0 + 2 * SECOND)
    assert [(w.rule, w.text) for w in late] == [
        (Rule.LATE_STATUS, "WHATSAPP attempt 0 READ after the end: late-status, doubleDelivery false")
    ]
    again = life.step(StatusEvent(status("WHATSAPP", "READ", 0)), T0 + 3 * SECOND)
    assert rules(again) == [Rule.NO_CHANGE]
    assert "already READ" in again[0].text


def test_an_earlier_attempt_succeeding_supersedes_the_open_one() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    life.step(StatusEvent(status("WHATSAPP", "SENT", 0)), T0 + SECOND)
    life.timer()  # SMS issued
    whys = life.step(StatusEvent(status("WHATSAPP", "DELIVERED", 0)), life.now + SECOND)
    assert rules(whys) == [Rule.SUCCESS, Rule.SUPERSEDED, Rule.SUCCESS]
    assert whys[1].text == "SMS attempt 1 superseded: an earlier attempt succeeded while it was open"


def test_the_flow_end_expires_an_open_attempt() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=[{"channel": "WHATSAPP"}], ttl=60)))
    whys = life.timer()
    assert life.now == T0 + MINUTE
    assert rules(whys) == [Rule.FLOW_END, Rule.FLOW_END]
    assert whys[0].text == "WHATSAPP attempt 0 still without a status at the flow's end"
    assert whys[1].text == (
        f"the flow's end {format_ms(T0 + MINUTE)} passed (ttl/expiresAt/max flow): outcome EXPIRED"
    )


def test_a_status_before_its_request_is_held_then_applied() -> None:
    life = Life()
    held = life.step(StatusEvent(status("WHATSAPP", "ERROR", 0)))
    assert rules(held) == [Rule.HELD]
    assert held[0].text.startswith(f"status before its request: held until {format_ms(T0 + 10 * MINUTE)}")
    whys = life.step(RequestEvent(request(channels=WA_SMS)), T0 + SECOND)
    assert rules(whys) == [Rule.ACCEPTED, Rule.HELD_APPLIED, Rule.INITIAL, Rule.FAILURE]
    assert whys[-1].text == "WHATSAPP attempt 0 got ERROR, a failure status -> SMS, reason FAILED"


def test_held_statuses_whose_request_never_comes_are_dropped() -> None:
    life = Life()
    life.step(StatusEvent(status("WHATSAPP", "SENT", 0)))
    whys = life.timer()
    assert [(w.rule, w.text) for w in whys] == [
        (Rule.HELD_DROPPED, "1 held status(es) dropped: their request never came")
    ]
    assert life.state is None


def test_initial_attempt_sent_upstream_issues_no_command() -> None:
    life = Life()
    sent = format_ms(T0 - MINUTE)
    whys = life.step(
        RequestEvent(request(channels=WA_SMS, initialAttempt={"providerMessageId": "p-1", "sentAt": sent}))
    )
    assert rules(whys) == [Rule.ACCEPTED, Rule.UPSTREAM_SENT]
    assert whys[1].text == f"upstream sent step 0 itself (initialAttempt): no command, timer from {sent}"


def test_a_repeat_a_conflict_and_a_late_cancel() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    assert rules(life.step(RequestEvent(request(channels=WA_SMS)), T0 + SECOND)) == [Rule.REPEAT]
    conflict = life.step(RequestEvent(request(channels=[{"channel": "SMS"}])), T0 + 2 * SECOND)
    assert rules(conflict) == [Rule.DEAD_LETTER]
    assert conflict[0].text.startswith("input dead-lettered: conflict: messageId already used")
    cancelled = life.step(CancelEvent(cancel(reason="paid")), T0 + 3 * SECOND)
    assert rules(cancelled) == [Rule.CANCELLED, Rule.CANCELLED]
    assert cancelled[-1].text == "cancelled (paid): outcome CANCELLED"
    assert rules(life.step(CancelEvent(cancel()), T0 + 4 * SECOND)) == [Rule.CANCEL_IGNORED]


def test_a_status_for_an_attempt_never_issued_changes_nothing() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    whys = life.step(StatusEvent(status("SMS", "DELIVERED", 1)), T0 + SECOND)
    assert [(w.rule, w.text) for w in whys] == [
        (Rule.NO_CHANGE, "SMS DELIVERED for attempt 1: names no issued attempt on that channel: ignored")
    ]


def test_the_ended_state_is_forgotten_after_its_windows() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    life.step(StatusEvent(status("WHATSAPP", "DELIVERED", 0)), T0 + SECOND)
    whys = life.timer()
    assert life.now == T0 + SECOND + 24 * HOUR
    assert rules(whys) == [Rule.FORGOTTEN]
    assert life.state is None


def test_a_failure_of_an_attempt_already_left_behind_only_records_its_status() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    life.step(StatusEvent(status("WHATSAPP", "SENT", 0)), T0 + SECOND)
    life.timer()  # SMS issued, WhatsApp ended TIMEOUT
    whys = life.step(StatusEvent(status("WHATSAPP", "ERROR", 0)), life.now + SECOND)
    assert [(w.rule, w.text) for w in whys] == [
        (
            Rule.PROGRESS,
            "WHATSAPP attempt 0: SENT -> ERROR (it already ended TIMEOUT: only its lastStatus changes)",
        )
    ]


# v1.1: channel control and send windows, through the real core with a control view.


def test_a_skipped_step_names_the_record_that_closed_its_channel() -> None:
    life = Life()
    life.control(
        "acme/WHATSAPP",
        closing("WHATSAPP", tenant="acme", reason="provider outage", until="2026-04-09T12:00:00Z"),
    )
    whys = life.step(RequestEvent(request(channels=WA_SMS, tenant="acme")))
    assert [(w.rule, w.text) for w in whys][1:] == [
        (
            Rule.SKIPPED,
            "WHATSAPP attempt 0 not issued: channel-control 'acme/WHATSAPP': WHATSAPP closed for tenant "
            "acme (provider outage), until 2026-04-09T12:00:00Z, inFlight WAIT -> SMS, reason SKIPPED",
        )
    ]
    assert whys[1].attempt == 0


def test_a_fallback_closure_ending_the_open_attempt_is_named_with_its_record() -> None:
    life = Life()
    life.step(RequestEvent(request(channels=WA_SMS)))
    life.step(StatusEvent(status("WHATSAPP", "SENT", 0)), T0 + SECOND)
    record = closing("WHATSAPP", inFlight="FALLBACK", reason="outage")
    whys = life.control("WHATSAPP", record, T0 + MINUTE)
    assert [(w.rule, w.text) for w in whys] == [
        (
            Rule.CONTROL,
            "WHATSAPP attempt 0 still SENT, cut short by channel-control 'WHATSAPP': WHATSAPP closed for "
            "all (outage), no until, inFlight FALLBACK -> SMS, reason TIMEOUT",
        )
    ]


def test_every_step_closed_is_channels_closed() -> None:
    life = Life()
    life.control("WHATSAPP", closing("WHATSAPP"))
    life.control("SMS", closing("SMS"))
    whys = life.step(RequestEvent(request(channels=WA_SMS)))
    assert rules(whys) == [Rule.ACCEPTED, Rule.SKIPPED, Rule.SKIPPED, Rule.CHANNELS_CLOSED]
    assert "channel-control 'SMS': SMS closed for all" in whys[2].text
    assert whys[3].text == (
        "no step left after step 1, the last skipped or cut short by a closed channel: "
        "outcome FAILED (CHANNELS_CLOSED)"
    )


WINDOW = {"timezone": "Europe/Rome", "from": "09:00", "to": "20:00"}
#: 19:30 in Rome (17:30Z) on 2026-04-09: the 2-hour fallback falls due at 21:30, outside the window.
EVENING = T0 + 9 * HOUR + 15 * MINUTE


def test_a_deferred_step_says_until_when_and_its_deferred_from() -> None:
    life = Life()
    life.now = EVENING
    life.step(RequestEvent(request(channels=WA_SMS, sendWindow=WINDOW)))
    whys = life.timer()  # 21:30 Rome
    due, wake = format_ms(EVENING + 2 * HOUR), "2026-04-10T07:00:00Z"
    assert [(w.rule, w.text) for w in whys] == [
        (
            Rule.TIMEOUT,
            "WHATSAPP attempt 0 still without a status at fallbackAfter 7200 s "
            "-> the next step waits for the send window (DEFERRED)",
        ),
        (
            Rule.DEFERRED,
            f"SMS attempt 1 (reason TIMEOUT) fell due {due}, outside the send window: held until its "
            f"next opening {wake}; its command will say deferredFrom {due}",
        ),
    ]
    whys = life.timer()  # 09:00 Rome
    assert [(w.rule, w.text, w.attempt) for w in whys] == [
        (
            Rule.DEFERRED,
            f"-> SMS attempt 1, reason TIMEOUT: the send window is open (deferredFrom {due}, when the "
            "step fell due)",
            1,
        )
    ]


def test_a_step_due_at_night_issued_by_a_late_timer_in_the_morning_names_its_deferred_from() -> None:
    """The processor was down from 21:30 to 10:00: the SMS goes at once, saying deferredFrom 21:30."""
    life = Life()
    life.now = EVENING
    life.step(RequestEvent(request(channels=WA_SMS, sendWindow=WINDOW)))
    whys = life.step(TimerEvent(), to_ms(datetime(2026, 4, 10, 8, tzinfo=UTC)))  # 10:00 Rome
    due = format_ms(EVENING + 2 * HOUR)
    assert [(w.rule, w.text) for w in whys] == [
        (
            Rule.TIMEOUT,
            "WHATSAPP attempt 0 still without a status at fallbackAfter 7200 s -> SMS, reason TIMEOUT "
            f"(deferredFrom {due}: it fell due outside the send window)",
        )
    ]


def test_step_zero_held_by_applies_to_all_is_deferred() -> None:
    life = Life()
    life.now = EVENING + HOUR  # 20:30 Rome
    whys = life.step(RequestEvent(request(channels=WA_SMS, sendWindow={**WINDOW, "appliesTo": "ALL"})))
    assert rules(whys) == [Rule.ACCEPTED, Rule.DEFERRED]
    assert whys[1].text.startswith("WHATSAPP attempt 0 (reason INITIAL) fell due")


def test_an_opening_after_the_end_is_outside_send_window() -> None:
    life = Life()
    life.now = EVENING
    life.step(RequestEvent(request(channels=WA_SMS, sendWindow=WINDOW, ttl=3 * 3600)))  # ends 22:30
    whys = life.timer()
    assert rules(whys) == [Rule.TIMEOUT, Rule.OUTSIDE_SEND_WINDOW]
    assert whys[1].text == (
        "the step due now is outside the send window, which next opens at or after the message's end "
        f"{format_ms(EVENING + 3 * HOUR)}: no command, outcome EXPIRED (OUTSIDE_SEND_WINDOW)"
    )


def test_a_control_record_says_what_it_does_to_the_view() -> None:
    until = "2026-04-09T12:00:00Z"
    closed = control_change("WHATSAPP", closing("WHATSAPP", until=until, reason="outage"), T0)
    assert (closed.rule, closed.text) == (
        Rule.CHANNEL_CONTROL,
        f"channel-control 'WHATSAPP': WHATSAPP closed for all (outage), until {until}, inFlight WAIT: "
        "steps falling due on it are skipped",
    )
    fallback = control_change("t/SMS", closing("SMS", tenant="t", inFlight="FALLBACK"), T0)
    assert fallback.text.endswith(
        "inFlight FALLBACK: steps falling due on it are skipped; attempts open on it end now"
    )
    past = control_change("WHATSAPP", closing("WHATSAPP", until="2026-04-09T08:00:00Z"), T0)
    assert past.text.endswith("its until has already passed, it closes nothing")
    opened = control_change("WHATSAPP", closing("WHATSAPP", state="OPEN"), T0)
    assert opened.text == "channel-control 'WHATSAPP': WHATSAPP open for all"
    assert (
        control_change("WHATSAPP", None, T0).text
        == "tombstone of 'WHATSAPP': whatever it closed is open again"
    )


def test_a_skip_then_a_deferral_names_each_at_its_attempt() -> None:
    life = Life()
    life.now = EVENING
    life.control("RCS", closing("RCS", reason="maintenance"))
    chain = [WA_SMS[0], {"channel": "RCS"}, WA_SMS[1]]
    life.step(RequestEvent(request(channels=chain, sendWindow=WINDOW)))
    whys = life.timer()  # 21:30 Rome: WhatsApp times out, RCS is closed, SMS waits for the morning
    assert [(w.rule, w.attempt) for w in whys] == [(Rule.TIMEOUT, 0), (Rule.SKIPPED, 1), (Rule.DEFERRED, 2)]
    assert whys[0].text == "WHATSAPP attempt 0 still without a status at fallbackAfter 7200 s"
    assert whys[1].text.endswith(
        "(maintenance), no until, inFlight WAIT -> the next step waits for the send window (DEFERRED)"
    )
    assert whys[2].text.startswith("SMS attempt 2 (reason SKIPPED) fell due")
