"""Per-attempt facts in the Outcome: ``statusTimes`` (issue 11 item 1) and ``reasons`` (issue 13 item 2).

They are facts for the outcome only: no rule reads them, they are gathered while the flow runs, and
the state drops them with the outcome.
"""

from __future__ import annotations

from typing import Any

from stream_app.contracts import Status, encode, format_ms, to_ms
from stream_app.fallback import MAX_REASON_CHARS, MAX_REASONS, NO_TIMES, Phase, encode_state
from tests.unit.fallback.driver import SECOND, T0, Driver, request, status

THREE: list[dict[str, Any]] = [
    {"channel": "WHATSAPP", "fallbackAfter": 60},
    {"channel": "RCS", "fallbackAfter": 60},
    {"channel": "SMS"},
]


def running() -> Driver:
    d = Driver()
    d.send(request(channels=THREE))
    return d


def at(ms: int) -> dict[str, str]:
    return {"occurredAt": format_ms(ms)}


def test_status_times_are_the_occurred_at_of_the_first_report_of_each_progress_status() -> None:
    d = running()
    d.report(status("WHATSAPP", "ACCEPTED", 0, **at(T0 + 100)))
    d.report(status("WHATSAPP", "ACCEPTED", 0, **at(T0 + 999)))  # a repeat: the first one stays
    d.report(status("WHATSAPP", "DELIVERED", 0, **at(T0 + 3000)))
    (attempt,) = d.outcome.attempts
    assert attempt.status_times is not None
    assert {k.value: to_ms(v) for k, v in attempt.status_times.items()} == {
        "ACCEPTED": T0 + 100,
        "DELIVERED": T0 + 3000,
    }


def test_status_times_are_written_in_progress_order_as_rfc3339() -> None:
    d = running()
    d.report(status("WHATSAPP", "SENT", 0, **at(T0 + 2000)))
    d.report(status("WHATSAPP", "ACCEPTED", 0, **at(T0 + 1000)))  # arrives after SENT, moves nothing
    d.report(status("WHATSAPP", "DELIVERED", 0, **at(T0 + 3500)))
    wire = encode(d.outcome)
    assert (
        b'"statusTimes":{"ACCEPTED":"2026-04-09T08:15:01Z","SENT":"2026-04-09T08:15:02Z",'
        b'"DELIVERED":"2026-04-09T08:15:03.500Z"}' in wire
    )


def test_a_report_without_occurred_at_counts_when_it_is_applied() -> None:
    d = running()
    d.now = T0 + 7 * SECOND
    d.report(status("WHATSAPP", "DELIVERED", 0))
    times = d.outcome.attempts[0].status_times
    assert times is not None and [to_ms(v) for v in times.values()] == [T0 + 7 * SECOND]


def test_an_attempt_with_no_report_has_no_status_times_nor_reasons_on_the_wire() -> None:
    d = running()
    d.drain()
    assert all(a.status_times is None and a.reasons is None for a in d.outcome.attempts)
    assert b"statusTimes" not in encode(d.outcome) and b"reasons" not in encode(d.outcome)


def test_reasons_of_a_failure_travel_to_the_outcome() -> None:
    """Regression, issue 13: ``WHATSAPP(REJECTED) > RCS(REJECTED) > SMS(DELIVERED)``, no reason anywhere."""
    d = running()
    d.report(status("WHATSAPP", "REJECTED", 0, reasons=["template: required"]))
    d.report(status("RCS", "ERROR", 1, reasons=["agentId: required", "AGENT_NOT_REACHABLE"]))
    d.report(status("SMS", "DELIVERED", 2, reasons=["not a failure: ignored"]))
    assert [a.reasons for a in d.outcome.attempts] == [
        ["template: required"],
        ["agentId: required", "AGENT_NOT_REACHABLE"],
        None,
    ]


def test_the_first_failure_that_gives_reasons_is_kept() -> None:
    d = Driver()
    d.send(request(channels=[{"channel": "WHATSAPP"}, {"channel": "SMS"}]))
    d.report(status("SMS", "ERROR", None, reasons=["ignored: no such attempt yet"]))
    d.report(status("WHATSAPP", "REJECTED", 0))  # no reasons: the next failure's count
    d.report(status("WHATSAPP", "ERROR", 0, reasons=["first words"]))
    d.report(status("WHATSAPP", "EXPIRED", 0, reasons=["later words"]))
    d.report(status("SMS", "DELIVERED", 1))
    assert [a.reasons for a in d.outcome.attempts] == [["first words"], None]


def test_reasons_are_bounded() -> None:
    d = running()
    long = "x" * (MAX_REASON_CHARS + 50)
    d.report(status("WHATSAPP", "ERROR", 0, reasons=["", "  ", long, *[f"r{i}" for i in range(10)]]))
    d.drain()
    reasons = d.outcome.attempts[0].reasons
    assert reasons is not None and len(reasons) == MAX_REASONS
    assert reasons[0] == "x" * (MAX_REASON_CHARS - 1) + "\u2026" and reasons[1:] == ["r0", "r1", "r2"]


def test_a_held_failure_keeps_its_reasons_and_time_until_the_request_arrives() -> None:
    d = Driver()
    d.report(status("WHATSAPP", "ACCEPTED", 0, **at(T0 - 500)))
    d.report(status("WHATSAPP", "REJECTED", 0, reasons=["template: not approved"], **at(T0 - 400)))
    assert d.state is not None and d.state.phase is Phase.HOLDING
    d.send(request(channels=THREE))
    d.drain()
    first = d.outcome.attempts[0]
    assert first.reasons == ["template: not approved"]
    assert first.status_times is not None and list(first.status_times) == [Status.ACCEPTED]


def test_a_timed_out_attempt_still_gathers_facts_until_the_outcome() -> None:
    d = running()
    d.advance(60 * SECOND)  # WHATSAPP timed out, RCS is open
    d.report(status("WHATSAPP", "ERROR", 0, reasons=["late failure"], **at(T0 + 61 * SECOND)))
    d.report(status("RCS", "DELIVERED", 1, **at(T0 + 62 * SECOND)))
    whatsapp, rcs = d.outcome.attempts
    assert whatsapp.reasons == ["late failure"] and whatsapp.status_times is None
    assert rcs.status_times is not None and list(rcs.status_times) == [Status.DELIVERED]


def test_the_ended_state_drops_the_facts_and_is_no_bigger_for_them() -> None:
    with_facts = running()
    with_facts.report(status("WHATSAPP", "ACCEPTED", 0, **at(T0 + 100)))
    with_facts.report(status("WHATSAPP", "REJECTED", 0, reasons=["why " * 40]))
    with_facts.report(status("RCS", "DELIVERED", 1, **at(T0 + 900)))
    bare = running()
    bare.report(status("WHATSAPP", "ACCEPTED", 0))
    bare.report(status("WHATSAPP", "REJECTED", 0))
    bare.report(status("RCS", "DELIVERED", 1))
    assert with_facts.state is not None and with_facts.state.phase is Phase.ENDED
    assert all(a.status_times == NO_TIMES and a.reasons == () for a in with_facts.state.attempts)
    assert bare.state is not None and len(encode_state(with_facts.state)) == len(encode_state(bare.state))


def test_late_statuses_after_the_end_gather_no_facts() -> None:
    d = running()
    d.report(status("SMS", "ERROR", None))
    d.report(status("WHATSAPP", "DELIVERED", 0))
    before = d.state
    d.report(status("WHATSAPP", "ERROR", 0, reasons=["after the end"]))
    assert d.state == before


def test_provider_message_id_is_in_the_outcome_when_known() -> None:
    d = running()
    d.report(status("WHATSAPP", "ACCEPTED", 0, providerMessageId="wamid.1"))
    d.report(status("WHATSAPP", "DELIVERED", 0))
    assert d.outcome.attempts[0].provider_message_id == "wamid.1"
