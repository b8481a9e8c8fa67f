"""The readable lines of ``stream-app outcomes``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream_app.admin.follow import Followed, _decode, channel_path, format_duration, format_line, json_line
from stream_app.contracts import (
    AttemptEnd,
    AttemptSummary,
    Channel,
    LateStatus,
    Outcome,
    Result,
    Status,
    encode,
)
from tests.support.outcomes import outcome

T0 = datetime(2026, 4, 9, 8, 15, tzinfo=UTC)


def item(record: Outcome | LateStatus) -> Followed:
    return _decode(0, 7, record.message_id.encode(), encode(record))


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (850, "850ms"),
        (4_210, "4.2s"),
        (59_949, "59.9s"),
        (304_211, "5m04s"),
        (7_380_000, "2h03m"),
    ],
)
def test_durations(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_succeeded_line_shows_channel_status_path_and_duration() -> None:
    outcome = Outcome(
        message_id="txn-1",
        result=Result.SUCCEEDED,
        channel=Channel.SMS,
        status=Status.DELIVERED,
        attempt_count=3,
        attempts=[
            AttemptSummary(
                attempt=0,
                channel=Channel.WHATSAPP,
                issued_at=T0,
                last_status=Status.REJECTED,
                ended_by=AttemptEnd.FAILED,
            ),
            AttemptSummary(
                attempt=1,
                channel=Channel.RCS,
                issued_at=T0,
                last_status=Status.SENT,
                ended_by=AttemptEnd.TIMEOUT,
            ),
            AttemptSummary(
                attempt=2,
                channel=Channel.SMS,
                issued_at=T0,
                last_status=Status.DELIVERED,
                ended_by=AttemptEnd.SUCCEEDED,
            ),
        ],
        requested_at=T0,
        completed_at=T0 + timedelta(seconds=304),
        duration_ms=304_211,
    )
    assert format_line(item(outcome)) == (
        "08:20:04Z  txn-1  SUCCEEDED on SMS DELIVERED  "
        "path WHATSAPP(REJECTED) > RCS(SENT, timeout) > SMS(DELIVERED)  in 5m04s"
    )


def test_cancelled_line_shows_reason_and_open_attempt() -> None:
    outcome = Outcome(
        message_id="m",
        result=Result.CANCELLED,
        attempt_count=1,
        attempts=[
            AttemptSummary(attempt=0, channel=Channel.SMS, issued_at=T0, ended_by=AttemptEnd.CANCELLED)
        ],
        reason="paid",
        requested_at=T0,
        completed_at=T0 + timedelta(seconds=2),
        duration_ms=2_000,
    )
    assert (
        format_line(item(outcome))
        == "08:15:02Z  m  CANCELLED (paid)  path SMS(no status, cancelled)  in 2.0s"
    )


def test_late_status_line() -> None:
    late = LateStatus(
        message_id="m",
        attempt=0,
        channel=Channel.WHATSAPP,
        status=Status.READ,
        occurred_at=T0,
        double_delivery=True,
    )
    assert (
        format_line(item(late))
        == "08:15:00Z  m  LATE  attempt 0 WHATSAPP READ after the end  DOUBLE DELIVERY"
    )


def test_undecodable_record_is_a_line_not_a_crash() -> None:
    bad = _decode(2, 9, b"k", b'{"type": "outcome"}')
    assert bad.record is None
    assert format_line(bad).startswith("! undecodable record at partition 2 offset 9: messageId: required")
    assert (
        format_line(_decode(0, 1, b"k", None)) == "! undecodable record at partition 0 offset 1: null value"
    )


def test_json_line_is_the_record_on_one_line() -> None:
    assert json_line(_decode(0, 0, None, b'{"a": 1}')) == '{"a": 1}'
    assert json_line(_decode(0, 0, None, b'{\n  "a": "x y"\n}')) == '{"a":"x y"}'
    assert json_line(_decode(0, 0, None, None)) == "null"


def path_of(*attempts: AttemptSummary) -> Outcome:
    return Outcome(
        message_id="txn-2",
        result=Result.FAILED,
        attempt_count=len(attempts),
        attempts=list(attempts),
        requested_at=T0,
        completed_at=T0,
        duration_ms=0,
    )


def attempt(
    n: int, channel: Channel, status: Status, end: AttemptEnd, reasons: list[str] | None
) -> AttemptSummary:
    return AttemptSummary(
        attempt=n, channel=channel, issued_at=T0, last_status=status, ended_by=end, reasons=reasons
    )


def test_a_failed_attempt_shows_the_gateways_reasons() -> None:
    """Regression, issue 13: the path said ``WHATSAPP(REJECTED) > RCS(REJECTED)`` and never why."""
    outcome = path_of(
        attempt(0, Channel.WHATSAPP, Status.REJECTED, AttemptEnd.FAILED, ["template not approved"]),
        attempt(
            1, Channel.RCS, Status.ERROR, AttemptEnd.FAILED, ["agentId: required", "AGENT_NOT_REACHABLE"]
        ),
        attempt(2, Channel.SMS, Status.EXPIRED, AttemptEnd.FAILED, None),
    )
    assert format_line(item(outcome)) == (
        "08:15:00Z  txn-2  FAILED  path WHATSAPP(REJECTED: template not approved) > "
        "RCS(ERROR: agentId: required; AGENT_NOT_REACHABLE) > SMS(EXPIRED)  in 0ms"
    )


def test_reasons_stay_on_one_line_and_beside_how_the_attempt_ended() -> None:
    outcome = path_of(
        attempt(0, Channel.RCS, Status.ERROR, AttemptEnd.TIMEOUT, ["agent\nunreachable\t now"]),
        # a DELIVERED after an ERROR did not fail: its reasons are in --json, not in the path
        attempt(1, Channel.SMS, Status.DELIVERED, AttemptEnd.SUCCEEDED, ["ERROR before the DLR"]),
    )
    assert channel_path(outcome) == "RCS(ERROR: agent unreachable now, timeout) > SMS(DELIVERED)"
    assert channel_path(outcome, reasons=False) == "RCS(ERROR, timeout) > SMS(DELIVERED)"
    assert "\n" not in format_line(item(outcome))


def test_a_time_with_another_offset_is_shown_in_utc_regression() -> None:
    """The line's time says Z, and the contract lets a record carry any offset (+02:00): it was shown
    as the wall-clock time of that offset, two hours off, still marked Z."""
    late = _decode(
        0,
        1,
        b"m",
        b'{"type": "late-status", "messageId": "m", "attempt": 0, "channel": "SMS", "status": "DELIVERED",'
        b' "occurredAt": "2026-04-09T10:15:00+02:00", "doubleDelivery": false}',
    )
    assert format_line(late).startswith("08:15:00Z  m  LATE")
    ended = _decode(
        0,
        2,
        b"m",
        b'{"type": "outcome", "messageId": "m", "result": "EXPIRED", "attemptCount": 0,'
        b' "requestedAt": "2026-04-09T08:15:00Z", "completedAt": "2026-04-09T10:15:00+02:00",'
        b' "durationMs": 0}',
    )
    assert format_line(ended).startswith("08:15:00Z  m  EXPIRED")


def test_outside_text_cannot_break_the_line_or_reach_the_terminal_regression() -> None:
    """Regression: a messageId (any string, from upstream) or a gateway reason holding an escape
    sequence or a newline was printed as it was: it could clear the screen or forge a line."""
    rejected = attempt(0, Channel.SMS, Status.REJECTED, AttemptEnd.FAILED, ["bad\x1b]0;pwned\x07 number"])
    failed = outcome("m-1\x1b[2J\nforged", Result.FAILED, [rejected], 1)
    shown = format_line(item(failed))
    assert "\x1b" not in shown and "\n" not in shown and "\x07" not in shown
    assert "m-1\\x1b[2J\\x0aforged" in shown and "bad\\x1b]0;pwned\\x07 number" in shown
