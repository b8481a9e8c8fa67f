"""The injected clock (DESIGN.md rule 6): hours of fallback timeouts run in milliseconds, end to end.

A promotional WhatsApp with a 2-hour fallbackAfter, then SMS: the test moves the processor's clock
instead of waiting, and the commands carry the processor's (fake) time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from stream_app.contracts import format_ms
from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
    status,
)

HOUR_MS = 3_600_000


async def test_two_hour_fallback_runs_on_the_injected_clock(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "state")
    await setup_topics(s)
    t = s.topics
    now = [1_900_000_000_000]  # 2030-03-17: far from the wall clock, so only the fake time can fire
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes])
    request = send_request("promo-1", [("WHATSAPP", 7200), ("SMS", None)], requestedAt=format_ms(now[0]))
    async with running(s, clock=lambda: now[0]), reader:
        await publish(s, t.send_requests, [(b"promo-1", request)])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(s, t.delivery_status, [(b"promo-1", status("promo-1", "WHATSAPP", "SENT", 0))])
        now[0] += 2 * HOUR_MS - 1  # one millisecond early: nothing may fire
        await asyncio.sleep(1.0)
        await reader.poll(300)
        assert len(reader.records[t.retry_commands]) == 1
        now[0] += 1
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "the SMS after 2 h")
        await publish(s, t.delivery_status, [(b"promo-1", status("promo-1", "SMS", "DELIVERED", 1))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    first, second = reader.values(t.retry_commands)
    assert first["issuedAt"] == format_ms(1_900_000_000_000)
    assert (second["channel"], second["reason"]) == ("SMS", "TIMEOUT")
    assert second["issuedAt"] == format_ms(1_900_000_000_000 + 2 * HOUR_MS)
    assert second["previous"] == {"attempt": 0, "channel": "WHATSAPP", "status": "SENT"}
    [outcome] = reader.values(t.outcomes)
    assert (outcome["result"], outcome["channel"]) == ("SUCCEEDED", "SMS")
    assert outcome["durationMs"] == 2 * HOUR_MS
