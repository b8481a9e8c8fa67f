"""Logs are key=value lines with destinations masked; dead letters and commands show in the metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stream_app.runtime.logs import KeyValueFormatter, kv, mask
from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
)


def test_mask_keeps_prefix_and_last_two_digits() -> None:
    assert mask("+393401234567") == "+39340*****67"
    assert mask("+4915112345678") == "+49151******78"
    assert mask("+12") == "***"  # too short to show anything


def test_kv_quotes_what_would_break_a_line() -> None:
    assert kv("dead_letter", reason='a "b" c=d', n=1) == 'event=dead_letter reason="a \\"b\\" c=d" n=1'
    assert "\n" not in kv("x", reason="two\nlines")


async def test_a_run_logs_masked_destinations_only(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "state")
    await setup_topics(s)
    t = s.topics
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.dead_letters])
    with caplog.at_level(logging.DEBUG, logger="stream_app.runtime"):
        async with running(s), reader:
            await publish(
                s,
                t.send_requests,
                [
                    (b"o1", send_request("o1", [("SMS", None)])),
                    (b"o2", b'{"messageId": "o2", "destination": 5}'),
                ],
            )
            await reader.wait(
                lambda: (
                    len(reader.records[t.retry_commands]) >= 1 and len(reader.records[t.dead_letters]) >= 1
                ),
                "the command and the dead letter",
            )
    lines = [KeyValueFormatter().format(r) for r in caplog.records if r.name == "stream_app.runtime"]
    text = "\n".join(lines)
    assert "destination=+39340*****67" in text
    assert "+393401234567" not in text
    assert any(" event=dead_letter " in line and "reason=" in line for line in lines)
    assert all(line.startswith("ts=") and " level=" in line for line in lines)
