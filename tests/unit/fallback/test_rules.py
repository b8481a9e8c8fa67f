"""One test per rule of CONTRACT.md that ``decide()`` implements."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from stream_app.contracts import AttemptEnd, Channel, CommandReason, Result, Status, format_ms, to_ms
from stream_app.fallback import (
    MAX_HELD,
    CancelEvent,
    DeadLetter,
    EmitLateStatus,
    EmitOutcome,
    Phase,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    decide,
    encode_state,
)
from tests.unit.fallback.driver import (
    HOUR,
    LIMITS,
    MINUTE,
    SECOND,
    T0,
    Driver,
    cancel,
    commands_of,
    outcomes_of,
    request,
    status,
)

THREE: list[dict[str, Any]] = [
    {"channel": "WHATSAPP", "fallbackAfter": 60, "content": {"w": 1}},
    {"channel": "RCS", "fallbackAfter": 60, "content": {"r": 2}},
    {"channel": "SMS", "content": {"s": 3}},
]


def running(channels: list[dict[str, Any]] | None = None, **fields: Any) -> Driver:
    d = Driver()
    d.send(request(channels=channels if channels is not None else THREE, **fields))
    return d


# ------------------------------------------------------------------------------------------ commands


def test_command_ids_are_message_id_and_attempt_and_consecutive() -> None:
    d = running()
    d.drain()
    assert [c.command_id for c in d.commands] == ["msg-1:0", "msg-1:1", "msg-1:2"]
    assert [c.attempt for c in d.commands] == [0, 1, 2]


def test_command_copies_request_fields_and_content_unchanged() -> None:
    content = {"z": [3, 2, 1], "a": {"nested": True, "b": None}, "text": "Ciao è"}
    d = running(
        [{"channel": "SMS", "content": content}],
        tenant="t1",
        campaignId="c1",
        simulation=True,
        destination="+393471234567",
    )
    (cmd,) = d.commands
    assert cmd.content == content and list(cmd.content) == ["z", "a", "text"]  # key order kept too
    assert (cmd.tenant, cmd.campaign_id, cmd.simulation, cmd.destination) == (
        "t1",
        "c1",
        True,
        "+393471234567",
    )
    assert (cmd.reason, cmd.previous, to_ms(cmd.issued_at)) == (CommandReason.INITIAL, None, T0)


def test_previous_names_the_attempt_before_and_its_last_status() -> None:
    d = running()
    d.report(status("WHATSAPP", "SENT", 0))
    d.advance(MINUTE)
    rcs = d.commands[1]
    assert rcs.previous is not None
    assert (rcs.previous.attempt, rcs.previous.channel, rcs.previous.status) == (
        0,
        Channel.WHATSAPP,
        Status.SENT,
    )
    d.advance(MINUTE)
    sms = d.commands[2]
    assert sms.previous is not None and (sms.previous.attempt, sms.previous.status) == (1, None)


@pytest.mark.parametrize(
    ("fields", "expected_end"),
    [
        ({"ttl": 3600, "requestedAt": "2026-04-09T10:00:00+02:00"}, T0 - 15 * MINUTE + HOUR),
        ({"ttl": 3600}, T0 + HOUR),  # no requestedAt: from the receive time
        ({"expiresAt": "2026-04-09T12:00:00+02:00"}, T0 + 105 * MINUTE),
        ({"requestedAt": "2026-04-09T10:00:00+02:00"}, T0 - 15 * MINUTE + 72 * HOUR),
        ({}, T0 + 72 * HOUR),  # max flow time from the receive time
    ],
)
def test_not_after_is_the_flows_end(fields: dict[str, Any], expected_end: int) -> None:
    d = running(**fields)
    (cmd,) = d.commands
    assert cmd.not_after is not None and to_ms(cmd.not_after) == expected_end
    d.run_until(expected_end - 1)
    assert d.outcomes == []
    d.run_until(expected_end)
    assert d.outcome.result == Result.EXPIRED and to_ms(d.outcome.completed_at) == expected_end


def test_fractional_fallback_after_is_honoured_to_the_millisecond() -> None:
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 0.3}, {"channel": "SMS"}])
    assert d.state is not None and d.state.deadline_ms == T0 + 300
    assert not d.advance(299)
    assert [c.channel for c in commands_of(d.advance(1))] == [Channel.SMS]


# --------------------------------------------------------------------------------- success levels


@pytest.mark.parametrize(
    ("success", "reported", "succeeds"),
    [
        ("ACCEPTED", "ACCEPTED", True),
        ("SENT", "ACCEPTED", False),
        ("SENT", "DELIVERED", True),
        ("DELIVERED", "SENT", False),
        ("DELIVERED", "READ", True),
        ("READ", "DELIVERED", False),
        ("READ", "READ", True),
    ],
)
def test_a_status_at_or_above_success_status_succeeds(success: str, reported: str, succeeds: bool) -> None:
    d = running([{"channel": "WHATSAPP", "successStatus": success}, {"channel": "SMS"}])
    d.report(status("WHATSAPP", reported, 0))
    if succeeds:
        assert (d.outcome.result, d.outcome.status) == (Result.SUCCEEDED, Status(reported))
    else:
        assert d.outcomes == [] and len(d.commands) == 1  # progress alone does not move the chain


@pytest.mark.parametrize("failure", ["REJECTED", "ERROR", "EXPIRED"])
def test_failure_statuses_fall_back_at_once(failure: str) -> None:
    d = running()
    d.advance(5 * SECOND)
    effects = d.report(status("WHATSAPP", failure, 0))
    (rcs,) = commands_of(effects)
    assert (rcs.channel, rcs.reason, to_ms(rcs.issued_at)) == (
        Channel.RCS,
        CommandReason.FAILED,
        T0 + 5 * SECOND,
    )
    assert d.state is not None and d.state.deadline_ms == T0 + 5 * SECOND + MINUTE  # its fallbackAfter


def test_last_step_failing_ends_failed() -> None:
    d = running([{"channel": "WHATSAPP"}, {"channel": "SMS", "fallbackAfter": 60}])
    d.report(status("WHATSAPP", "REJECTED", 0))
    d.report(status("SMS", "ERROR", 1))
    assert d.outcome.result == Result.FAILED
    assert [a.ended_by for a in d.outcome.attempts] == [AttemptEnd.FAILED, AttemptEnd.FAILED]


def test_last_step_timing_out_ends_failed() -> None:
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS", "fallbackAfter": 60}])
    d.advance(2 * MINUTE)
    assert d.outcome.result == Result.FAILED
    assert [a.ended_by for a in d.outcome.attempts] == [AttemptEnd.TIMEOUT, AttemptEnd.TIMEOUT]
    assert to_ms(d.outcome.completed_at) == T0 + 2 * MINUTE


# ----------------------------------------------------------------------------------------- expiry


def test_ttl_ends_expired_and_closes_the_open_attempt() -> None:
    d = running([{"channel": "WHATSAPP"}, {"channel": "SMS"}], ttl=600)
    d.report(status("WHATSAPP", "SENT", 0))
    assert not d.advance(600 * SECOND - 1)
    d.advance(1)
    out = d.outcome
    assert out.result == Result.EXPIRED and (out.channel, out.status) == (None, None)
    assert [(a.last_status, a.ended_by) for a in out.attempts] == [(Status.SENT, AttemptEnd.EXPIRED)]
    assert len(d.commands) == 1


def test_expiry_beats_a_fallback_due_at_the_same_moment() -> None:
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}], ttl=60)
    d.advance(MINUTE)
    assert d.outcome.result == Result.EXPIRED
    assert [c.channel for c in d.commands] == [Channel.WHATSAPP]


def test_no_attempt_after_the_end_even_when_a_failure_arrives_late() -> None:
    d = running([{"channel": "WHATSAPP"}, {"channel": "SMS"}], ttl=60)
    d.now += 2 * MINUTE  # the runtime has not fired the timer yet when the REJECTED arrives
    effects = d.report(status("WHATSAPP", "REJECTED", 0))
    assert commands_of(effects) == []
    assert [o.result for o in outcomes_of(effects)] == [Result.EXPIRED]
    assert to_ms(d.outcome.completed_at) == d.now


def test_held_failure_applied_after_the_end_issues_no_attempt() -> None:
    d = Driver()
    d.report(status("WHATSAPP", "REJECTED", 0))  # held: the request is not there yet
    effects = d.send(
        request(
            channels=[{"channel": "WHATSAPP"}, {"channel": "SMS"}],
            initialAttempt={"sentAt": format_ms(T0 - HOUR)},
            expiresAt=format_ms(T0 - MINUTE),
        )
    )
    assert commands_of(effects) == []
    assert d.outcome.result == Result.EXPIRED
    assert [(a.last_status, a.ended_by) for a in d.outcome.attempts] == [(Status.REJECTED, AttemptEnd.FAILED)]


def test_request_already_past_its_expiry_ends_expired_with_no_command() -> None:
    d = Driver()
    effects = d.send(request(expiresAt="2026-04-09T10:00:00+02:00"))  # 15 minutes ago
    assert commands_of(effects) == []
    assert (d.outcome.result, d.outcome.attempt_count, d.outcome.attempts) == (Result.EXPIRED, 0, [])


def test_every_message_ends_even_without_ttl_or_any_status() -> None:
    d = running([{"channel": "WHATSAPP"}], metadata={"k": "v"})
    d.drain()
    assert d.outcome.result == Result.EXPIRED and d.state is None
    assert d.outcome.metadata == {"k": "v"}


# ------------------------------------------------------------------------------------ initialAttempt


def test_initial_attempt_issues_no_command_and_times_from_sent_at() -> None:
    sent = T0 - 30 * SECOND
    d = running(
        [{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}],
        initialAttempt={"providerMessageId": "wa-1", "sentAt": format_ms(sent)},
    )
    assert d.commands == [] and d.state is not None and d.state.deadline_ms == sent + MINUTE
    (sms,) = commands_of(d.advance(30 * SECOND))
    assert (sms.attempt, sms.command_id, sms.reason) == (1, "msg-1:1", CommandReason.TIMEOUT)
    d.report(status("SMS", "DELIVERED", 1))
    assert d.outcome.attempts[0].provider_message_id == "wa-1"
    assert to_ms(d.outcome.attempts[0].issued_at) == sent


def test_initial_attempt_already_overdue_falls_back_on_arrival() -> None:
    d = Driver()
    effects = d.send(
        request(
            channels=[{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}],
            initialAttempt={"sentAt": format_ms(T0 - HOUR)},
        )
    )
    assert [(c.attempt, c.reason) for c in commands_of(effects)] == [(1, CommandReason.TIMEOUT)]


# -------------------------------------------------------------------------------------------- cancel


def test_cancel_ends_cancelled_and_nothing_follows() -> None:
    d = running()
    d.advance(10 * SECOND)
    d.stop(cancel(reason="paid"))
    out = d.outcome
    assert (out.result, out.reason) == (Result.CANCELLED, "paid")
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.CANCELLED]
    d.report(status("WHATSAPP", "REJECTED", 0))
    d.drain()
    assert len(d.commands) == 1 and len(d.outcomes) == 1


def test_cancel_for_an_unknown_message_changes_nothing() -> None:
    decision = decide(None, CancelEvent(cancel()), T0, LIMITS)
    assert decision.state is None and decision.effects == ()


def test_cancel_for_an_ended_message_changes_nothing() -> None:
    d = running([{"channel": "SMS"}])
    d.report(status("SMS", "DELIVERED", 0))
    before = d.state
    decision = decide(before, CancelEvent(cancel()), d.now, LIMITS)
    assert decision.state is before and decision.effects == ()


# ------------------------------------------------------------------------------------------- orphans


def test_statuses_before_the_request_are_held_and_applied_on_arrival() -> None:
    d = Driver()
    d.report(status("WHATSAPP", "REJECTED", 0))
    assert d.state is not None and d.state.phase == Phase.HOLDING
    assert d.state.deadline_ms == T0 + 600 * SECOND
    d.advance(5 * SECOND)
    effects = d.send(request(channels=THREE))
    assert [(c.attempt, c.reason) for c in commands_of(effects)] == [
        (0, CommandReason.INITIAL),
        (1, CommandReason.FAILED),
    ]
    assert d.state is not None and d.state.held == []


def test_held_statuses_apply_in_arrival_order() -> None:
    d = Driver()
    d.report(status("SMS", "DELIVERED", 0, providerMessageId="p1"))
    d.report(status("SMS", "SENT", 0, providerMessageId="p2"))
    d.send(request(channels=[{"channel": "SMS"}]))
    out = d.outcome
    assert (out.result, out.status, out.attempts[0].provider_message_id) == (
        Result.SUCCEEDED,
        Status.DELIVERED,
        "p1",
    )


def test_a_held_orphan_whose_request_never_comes_is_dropped_without_outcome() -> None:
    d = Driver()
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert not d.advance(600 * SECOND - 1)
    effects = d.advance(1)
    assert effects == () and d.state is None and d.outcomes == []  # forgotten, timer and all


def test_orphans_held_per_message_are_bounded() -> None:
    d = Driver()
    for _ in range(MAX_HELD):
        assert not d.report(status("WHATSAPP", "SENT", 0)) or d.state is not None
    effects = d.report(status("WHATSAPP", "READ", 0))
    assert [type(e) for e in effects] == [DeadLetter]
    assert d.state is not None and len(d.state.held) == MAX_HELD


def test_each_held_orphan_keeps_its_own_hold_time() -> None:
    d = Driver()
    d.report(status("WHATSAPP", "SENT", 0))
    d.advance(5 * MINUTE)
    d.report(status("WHATSAPP", "DELIVERED", 0))
    d.advance(5 * MINUTE)  # the first one's hold ends
    assert d.state is not None and [h.signal.status for h in d.state.held] == [Status.DELIVERED]
    d.send(request(channels=[{"channel": "WHATSAPP"}]))
    assert d.outcome.result == Result.SUCCEEDED


# ----------------------------------------------------------------------------------- status matching


def test_progress_never_goes_backwards() -> None:
    d = running([{"channel": "WHATSAPP", "successStatus": "READ"}, {"channel": "SMS"}])
    d.report(status("WHATSAPP", "DELIVERED", 0))
    # the first SENT and ACCEPTED after it move nothing; they only say when they happened (statusTimes)
    for late in ("SENT", "ACCEPTED"):
        assert d.report(status("WHATSAPP", late, 0)) == ()
    assert d.state is not None and d.state.attempts[0].last_status is Status.DELIVERED
    before = d.state
    for late in ("SENT", "ACCEPTED", "DELIVERED", "ERROR"):
        decision = decide(before, StatusEvent(status("WHATSAPP", late, 0)), d.now, LIMITS)
        assert decision.state is before and decision.effects == ()
    # a late SENT that brings the provider's id records the id, and still not the SENT
    d.report(status("WHATSAPP", "SENT", 0, providerMessageId="wamid.7"))
    assert d.state is not None
    first = d.state.attempts[0]
    assert (first.last_status, first.provider_message_id) == (Status.DELIVERED, "wamid.7")


def test_a_sent_after_an_error_changes_nothing() -> None:
    d = running([{"channel": "WHATSAPP"}, {"channel": "RCS"}, {"channel": "SMS"}])
    d.report(status("WHATSAPP", "ERROR", 0))
    d.report(status("WHATSAPP", "SENT", 0))
    assert d.state is not None and d.state.attempts[0].last_status == Status.ERROR


def test_a_delivered_after_an_error_is_a_success_and_supersedes_the_next_attempt() -> None:
    d = running()
    d.report(status("WHATSAPP", "ERROR", 0))
    assert len(d.commands) == 2
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert (d.outcome.result, d.outcome.channel) == (Result.SUCCEEDED, Channel.WHATSAPP)
    assert [a.ended_by for a in d.outcome.attempts] == [AttemptEnd.SUCCEEDED, AttemptEnd.SUPERSEDED]


def test_status_without_attempt_belongs_to_the_latest_attempt_on_its_channel() -> None:
    d = running(
        [
            {"channel": "SMS", "fallbackAfter": 60, "content": {"sender": "A"}},
            {"channel": "SMS", "content": {"sender": "B"}},
        ]
    )
    d.advance(MINUTE)
    assert len(d.commands) == 2
    d.report(status("SMS", "DELIVERED"))
    out = d.outcome
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.TIMEOUT, AttemptEnd.SUCCEEDED]


@pytest.mark.parametrize(
    ("channel", "attempt"),
    [("RCS", 1), ("SMS", 7), ("RCS", 0), ("VIBER", None)],  # not issued yet / wrong channel / never used
)
def test_status_for_an_unknown_attempt_is_ignored(channel: str, attempt: int | None) -> None:
    d = running()
    before = d.state
    decision = decide(before, StatusEvent(status(channel, "DELIVERED", attempt)), d.now, LIMITS)
    assert decision.state is before and decision.effects == ()


def test_earlier_attempt_succeeding_later_ends_on_its_channel_and_supersedes() -> None:
    d = running()
    d.advance(MINUTE)  # RCS issued
    effects = d.report(status("WHATSAPP", "DELIVERED", 0))
    out = d.outcome
    assert (out.result, out.channel) == (Result.SUCCEEDED, Channel.WHATSAPP)
    assert [a.ended_by for a in out.attempts] == [AttemptEnd.SUCCEEDED, AttemptEnd.SUPERSEDED]
    assert commands_of(effects) == []
    d.drain()
    assert len(d.commands) == 2  # no SMS ever


def test_failure_of_an_attempt_already_left_behind_does_not_skip_a_step() -> None:
    d = running()
    d.advance(MINUTE)  # WhatsApp timed out, RCS open
    d.report(status("WHATSAPP", "ERROR", 0))
    assert len(d.commands) == 2 and d.outcomes == []
    d.report(status("RCS", "DELIVERED", 1))
    assert d.outcome.attempts[0].last_status == Status.ERROR


# ---------------------------------------------------------------------------------- after the end


def ended_on_sms() -> Driver:
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}])
    d.advance(MINUTE)
    d.report(status("SMS", "DELIVERED", 1))
    assert d.outcome.result == Result.SUCCEEDED
    return d


def test_late_success_on_another_attempt_is_a_double_delivery() -> None:
    d = ended_on_sms()
    d.advance(HOUR)
    effects = d.report(status("WHATSAPP", "READ", 0, occurredAt="2026-04-09T11:00:00+02:00"))
    (late,) = d.lates
    assert (late.attempt, late.channel, late.status, late.double_delivery) == (
        0,
        Channel.WHATSAPP,
        Status.READ,
        True,
    )
    assert format_ms(to_ms(late.occurred_at)) == "2026-04-09T09:00:00Z"
    assert len(effects) == 1 and len(d.outcomes) == 1


def test_late_read_of_the_winning_attempt_is_not_a_double_delivery() -> None:
    d = ended_on_sms()
    d.report(status("SMS", "READ", 1))
    assert [(late.status, late.double_delivery) for late in d.lates] == [(Status.READ, False)]


def test_late_success_after_a_failed_message_is_not_a_double_delivery_until_a_second_one() -> None:
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS", "fallbackAfter": 60}])
    d.advance(2 * MINUTE)
    assert d.outcome.result == Result.FAILED
    d.report(status("SMS", "DELIVERED", 1))
    d.report(status("SMS", "DELIVERED", 1))  # a repeat: reported once
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert [(late.attempt, late.double_delivery) for late in d.lates] == [(1, False), (0, True)]


def test_late_non_success_statuses_are_not_reported() -> None:
    d = ended_on_sms()
    before = d.state
    for st in (status("WHATSAPP", "SENT", 0), status("WHATSAPP", "ERROR", 0), status("RCS", "READ")):
        decision = decide(before, StatusEvent(st), d.now, LIMITS)
        assert decision.state is before and decision.effects == ()


def test_late_statuses_stop_after_the_late_window() -> None:
    limits = replace(LIMITS, late_status_ms=HOUR, dedup_ms=2 * HOUR)
    d = Driver(limits)
    d.send(request(channels=[{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}]))
    d.advance(MINUTE)
    d.report(status("SMS", "DELIVERED", 1))
    d.advance(HOUR)
    assert not d.report(status("WHATSAPP", "DELIVERED", 0))
    assert d.state is not None  # still remembered for dedup


def test_ended_state_is_deleted_after_the_longer_window_then_the_id_is_new_again() -> None:
    d = ended_on_sms()
    ended_at = d.now
    assert d.state is not None and d.state.deadline_ms == ended_at + 24 * HOUR
    assert d.state.opaque == b"" and d.state.destination == ""  # the ended state is small
    assert d.advance(24 * HOUR) == ()
    assert d.state is None
    effects = d.send(request(channels=[{"channel": "SMS"}]))
    assert [c.command_id for c in commands_of(effects)] == ["msg-1:0"]


def test_an_ended_flow_is_kept_for_the_longer_of_the_dedup_and_late_status_windows() -> None:
    # Dedup longer: a repeat after the late-status window is still a repeat, never a second send.
    d = Driver(replace(LIMITS, late_status_ms=HOUR, dedup_ms=24 * HOUR))
    d.send(request(channels=[{"channel": "SMS"}]))
    d.report(status("SMS", "DELIVERED", 0))
    d.advance(2 * HOUR)
    assert d.state is not None
    assert d.send(request(channels=[{"channel": "SMS"}], requestedAt="2026-04-09T09:00:00Z")) == ()
    # Late-status longer: a late success after the dedup window is still reported.
    d = Driver(replace(LIMITS, late_status_ms=24 * HOUR, dedup_ms=HOUR))
    d.send(request(channels=[{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}]))
    d.advance(MINUTE)
    d.report(status("SMS", "DELIVERED", 1))
    d.advance(2 * HOUR)
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert [(late.attempt, late.double_delivery) for late in d.lates] == [(0, True)]


# ------------------------------------------------------------------------------------------ repeats


@pytest.mark.parametrize("when", ["running", "ended"])
def test_repeat_request_with_same_content_issues_nothing(when: str) -> None:
    d = ended_on_sms() if when == "ended" else running(THREE)
    before = d.state
    again = request(
        channels=[{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}]
        if when == "ended"
        else THREE,
        requestedAt="2026-04-09T09:00:00Z",  # a different requestedAt is still the same request
    )
    decision = decide(before, RequestEvent(again), d.now, LIMITS)
    assert decision.state is before and decision.effects == ()


@pytest.mark.parametrize("when", ["running", "ended"])
def test_conflicting_repeat_is_dead_lettered_and_the_flow_untouched(when: str) -> None:
    d = ended_on_sms() if when == "ended" else running(THREE)
    before = d.state
    assert before is not None
    snapshot = encode_state(before)
    decision = decide(before, RequestEvent(request(channels=[{"channel": "SMS"}])), d.now, LIMITS)
    assert decision.state is before and encode_state(before) == snapshot
    (dead,) = decision.effects
    assert isinstance(dead, DeadLetter) and "conflict" in dead.reason and "\n" not in dead.reason


def test_a_record_for_another_message_id_is_dead_lettered() -> None:
    d = running()
    decision = decide(d.state, StatusEvent(status("WHATSAPP", "DELIVERED", 0, "other")), d.now, LIMITS)
    assert decision.state is d.state and [type(e) for e in decision.effects] == [DeadLetter]


# ------------------------------------------------------------------------------------------ outcome


def test_outcome_fields() -> None:
    d = running(
        THREE,
        tenant="t",
        campaignId="c",
        metadata={"order": [1, 2]},
        requestedAt="2026-04-09T10:14:00+02:00",
    )
    d.report(status("WHATSAPP", "SENT", 0, providerMessageId="wamid.1"))
    d.advance(MINUTE)
    d.report(status("RCS", "READ", 1, providerMessageId="rcs-9"))
    out = d.outcome
    assert (out.tenant, out.campaign_id, out.metadata) == ("t", "c", {"order": [1, 2]})
    assert (out.result, out.channel, out.status, out.attempt_count) == (
        Result.SUCCEEDED,
        Channel.RCS,
        Status.READ,
        2,
    )
    assert to_ms(out.requested_at) == T0 - MINUTE
    assert to_ms(out.completed_at) == T0 + MINUTE and out.duration_ms == 2 * MINUTE
    assert [
        (a.attempt, a.channel, to_ms(a.issued_at), a.last_status, a.ended_by, a.provider_message_id)
        for a in out.attempts
    ] == [
        (0, Channel.WHATSAPP, T0, Status.SENT, AttemptEnd.TIMEOUT, "wamid.1"),
        (1, Channel.RCS, T0 + MINUTE, Status.READ, AttemptEnd.SUCCEEDED, "rcs-9"),
    ]


def test_outcome_requested_at_defaults_to_receive_time() -> None:
    d = Driver(now=T0 + 7)
    d.send(request(channels=[{"channel": "SMS"}]))
    d.advance(SECOND)
    d.report(status("SMS", "DELIVERED", 0))
    assert to_ms(d.outcome.requested_at) == T0 + 7 and d.outcome.duration_ms == SECOND


# ------------------------------------------------------------------------------------------- timers


def test_timer_events_never_fire_early() -> None:
    d = running()
    before = d.state
    assert before is not None and before.deadline_ms == T0 + MINUTE
    for at in (T0, T0 + MINUTE - 1):
        decision = decide(before, TimerEvent(), at, LIMITS)
        assert decision.state is before and decision.effects == ()


def test_a_timer_event_with_no_state_does_nothing() -> None:
    assert decide(None, TimerEvent(), T0, LIMITS).effects == ()


def test_decide_never_changes_its_input_state() -> None:
    d = running()
    before = d.state
    assert before is not None
    snapshot = encode_state(before)
    decide(before, StatusEvent(status("WHATSAPP", "REJECTED", 0)), T0, LIMITS)
    decide(before, TimerEvent(), T0 + HOUR, LIMITS)
    decide(before, CancelEvent(cancel()), T0, LIMITS)
    assert encode_state(before) == snapshot


def test_one_timer_per_message_is_the_state_deadline() -> None:
    """Timers are data (DESIGN.md rule 4): the state's deadline, which the store indexes; no effect."""
    d = running()
    d.advance(5 * SECOND)
    effects = d.report(status("WHATSAPP", "REJECTED", 0))
    assert d.state is not None and d.state.deadline_ms == T0 + 5 * SECOND + MINUTE
    assert all(isinstance(e, SendCommand | EmitOutcome | EmitLateStatus | DeadLetter) for e in effects)


def test_late_delivered_of_a_read_step_after_another_won_is_a_double_delivery() -> None:
    """Regression (issue 9): a WhatsApp step waiting for READ that is DELIVERED after SMS won reached the
    person too. ``doubleDelivery`` is about the person, so DELIVERED counts whatever the step's
    successStatus, and the late status is reported."""
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60, "successStatus": "READ"}, {"channel": "SMS"}])
    d.advance(MINUTE)
    d.report(status("SMS", "DELIVERED", 1))
    assert d.outcome.result == Result.SUCCEEDED
    d.report(status("WHATSAPP", "DELIVERED", 0))
    d.report(status("WHATSAPP", "DELIVERED", 0))  # a repeat: reported once
    d.report(status("WHATSAPP", "READ", 0))  # then its own success status: reported, still double
    assert [(late.attempt, late.status, late.double_delivery) for late in d.lates] == [
        (0, Status.DELIVERED, True),
        (0, Status.READ, True),
    ]


def test_a_read_step_delivered_late_after_a_failed_message_is_not_reported() -> None:
    """Nobody else reached the person, and DELIVERED is below this step's READ: nothing to report."""
    d = running([{"channel": "WHATSAPP", "fallbackAfter": 60, "successStatus": "READ"}])
    d.advance(MINUTE)
    assert d.outcome.result == Result.FAILED
    assert not d.report(status("WHATSAPP", "DELIVERED", 0))
    assert d.lates == []


def test_a_winner_on_its_own_success_status_counts_for_a_late_delivered_below_success() -> None:
    """SMS won on SENT (its successStatus): the contract's own definition ("another attempt also
    succeeded") holds, and this WhatsApp DELIVERED reached the person: reported as a double delivery."""
    d = running(
        [
            {"channel": "WHATSAPP", "fallbackAfter": 60, "successStatus": "READ"},
            {"channel": "SMS", "successStatus": "SENT"},
        ]
    )
    d.advance(MINUTE)
    d.report(status("SMS", "SENT", 1))
    assert d.outcome.result == Result.SUCCEEDED
    d.report(status("WHATSAPP", "SENT", 0))  # SENT reached no one: not reported
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert [(late.status, late.double_delivery) for late in d.lates] == [(Status.DELIVERED, True)]
