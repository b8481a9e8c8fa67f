"""The report's terminal table: outside text in it is printed safely."""

from __future__ import annotations

from stream_app.contracts import AttemptEnd, Result, Status, encode
from stream_app.report import Aggregator, parse
from stream_app.report.render import text
from tests.support.outcomes import SMS, attempt, outcome


def test_a_gateway_reason_with_an_escape_sequence_is_shown_escaped_regression() -> None:
    """Regression: the reasons table printed a gateway's reason as it came, so an escape sequence
    in it (ESC [ 2 J clears the screen) reached the operator's terminal."""
    rejected = attempt(0, SMS, 0, Status.REJECTED, AttemptEnd.FAILED, reasons=["number barred\x1b[2J"])
    failed = outcome("m-1", Result.FAILED, [rejected], 1)
    agg = Aggregator(None)
    agg.add(parse(encode(failed)))
    shown = text(agg.result(), "a test")
    assert "number barred\\x1b[2J" in shown
    assert "\x1b" not in shown
    assert shown.startswith("stream-app report of a test\n")  # its own line breaks kept
