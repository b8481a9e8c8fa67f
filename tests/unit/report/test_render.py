"""The report's terminal table: outside text in it is printed safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stream_app.contracts import AttemptEnd, AttemptSummary, Channel, Outcome, Result, Status, encode
from stream_app.report import Aggregator, parse
from stream_app.report.render import text

T0 = datetime(2026, 4, 9, 8, 15, tzinfo=UTC)


def test_a_gateway_reason_with_an_escape_sequence_is_shown_escaped_regression() -> None:
    """Regression: the reasons table printed a gateway's reason as it came, so an escape sequence
    in it (ESC [ 2 J clears the screen) reached the operator's terminal."""
    outcome = Outcome(
        message_id="m-1",
        result=Result.FAILED,
        attempt_count=1,
        attempts=[
            AttemptSummary(
                attempt=0,
                channel=Channel.SMS,
                issued_at=T0,
                last_status=Status.REJECTED,
                ended_by=AttemptEnd.FAILED,
                reasons=["number barred\x1b[2J"],
            )
        ],
        requested_at=T0,
        completed_at=T0 + timedelta(seconds=1),
        duration_ms=1_000,
    )
    agg = Aggregator(None)
    agg.add(parse(encode(outcome)))
    shown = text(agg.result(), "a test")
    assert "number barred\\x1b[2J" in shown
    assert "\x1b" not in shown
    assert shown.startswith("stream-app report of a test\n")  # its own line breaks kept
