"""End to end through real topics: every CONTRACT.md rule that involves time or ordering.

Each test runs a processor in the test's loop against the session broker, publishes requests and
statuses, and reads commands and outcomes back from the output topics. fallbackAfter values are a
few hundred milliseconds so the timers really run through the store and the timer loop.
"""

from __future__ import annotations

from pathlib import Path

from tests.integration.runtime.helpers import (
    Reader,
    by_message,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
    status,
)


async def _env(kafka_bootstrap: str, tmp_path: Path, **kw: object):  # type: ignore[no-untyped-def]
    s = settings_for(kafka_bootstrap, tmp_path / "state", **kw)  # type: ignore[arg-type]
    await setup_topics(s)
    t = s.topics
    return s, Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters])


async def test_rejected_whatsapp_falls_back_to_sms_at_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m1", send_request("m1", [("WHATSAPP", 60), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(s, t.delivery_status, [(b"m1", status("m1", "WHATSAPP", "REJECTED", 0))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "attempt 1")
        await publish(s, t.delivery_status, [(b"m1", status("m1", "SMS", "DELIVERED", 1))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    cmds = reader.values(t.retry_commands)
    assert [(c["commandId"], c["channel"], c["reason"]) for c in cmds] == [
        ("m1:0", "WHATSAPP", "INITIAL"),
        ("m1:1", "SMS", "FAILED"),
    ]
    assert cmds[1]["previous"] == {"attempt": 0, "channel": "WHATSAPP", "status": "REJECTED"}
    [outcome] = reader.values(t.outcomes)
    assert (outcome["result"], outcome["channel"], outcome["status"]) == ("SUCCEEDED", "SMS", "DELIVERED")
    assert [r.key for r in reader.records[t.retry_commands]] == [b"m1", b"m1"]
