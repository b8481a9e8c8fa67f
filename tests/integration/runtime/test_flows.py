"""End to end through real topics: every CONTRACT.md rule that involves time or ordering.

Each test runs a processor in the test's loop against the session broker, publishes requests and
statuses, and reads commands and outcomes back from the output topics. fallbackAfter values are a
few hundred milliseconds so the timers really run through the store and the timer loop.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import orjson

from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
    status,
)
from tests.support.kafka import wait_committed


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
        rejected = status("m1", "WHATSAPP", "REJECTED", 0, reasons=["template: required"])
        await publish(s, t.delivery_status, [(b"m1", rejected)])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "attempt 1")
        sms = [
            status("m1", "SMS", "ACCEPTED", 1, providerMessageId="sms-1", occurredAt="2026-04-09T08:15:01Z"),
            status("m1", "SMS", "DELIVERED", 1, occurredAt="2026-04-09T08:15:03.250Z"),
        ]
        await publish(s, t.delivery_status, [(b"m1", sms[0]), (b"m1", sms[1])])
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
    # the per-attempt facts went through the store and reached the outcome (issues 11.1 and 13.2)
    whatsapp, sms_attempt = outcome["attempts"]
    assert whatsapp["reasons"] == ["template: required"] and "statusTimes" not in whatsapp
    assert sms_attempt["providerMessageId"] == "sms-1" and "reasons" not in sms_attempt
    assert sms_attempt["statusTimes"] == {
        "ACCEPTED": "2026-04-09T08:15:01Z",
        "DELIVERED": "2026-04-09T08:15:03.250Z",
    }


async def test_timeout_moves_to_the_next_step(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    steps = [("WHATSAPP", 0.3), ("RCS", 0.3), ("SMS", 0.3)]
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m2", send_request("m2", steps))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    cmds = reader.values(t.retry_commands)
    assert [(c["attempt"], c["channel"], c["reason"]) for c in cmds] == [
        (0, "WHATSAPP", "INITIAL"),
        (1, "RCS", "TIMEOUT"),
        (2, "SMS", "TIMEOUT"),
    ]
    [outcome] = reader.values(t.outcomes)
    assert outcome["result"] == "FAILED"
    assert [a["endedBy"] for a in outcome["attempts"]] == ["TIMEOUT", "TIMEOUT", "TIMEOUT"]
    # Never early: each command is issued at least fallbackAfter after the previous one.
    issued = [r.timestamp for r in reader.records[t.retry_commands]]
    assert all(b - a >= 300 for a, b in itertools.pairwise(issued)), issued


async def test_success_stops_the_chain(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m3", send_request("m3", [("WHATSAPP", 0.5), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(s, t.delivery_status, [(b"m3", status("m3", "WhatsApp", "delivered"))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
        await asyncio.sleep(1.0)  # well past fallbackAfter: no further command may appear
        await reader.poll(300)
    assert [c["commandId"] for c in reader.values(t.retry_commands)] == ["m3:0"]
    [outcome] = reader.values(t.outcomes)
    assert (outcome["result"], outcome["channel"], outcome["status"]) == (
        "SUCCEEDED",
        "WHATSAPP",
        "DELIVERED",
    )


async def test_status_before_its_request_is_held_then_applied(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running(s), reader:
        await publish(s, t.delivery_status, [(b"m4", status("m4", "WHATSAPP", "REJECTED", 0))])
        # the processor has read the orphan status (committed it) and holds it
        await wait_committed(kafka_bootstrap, s.app_id, t.delivery_status, 1)
        await reader.poll(300)
        assert not reader.records[t.retry_commands] and not reader.records[t.outcomes]
        await publish(s, t.send_requests, [(b"m4", send_request("m4", [("WHATSAPP", 60), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "attempts 0 and 1")
    cmds = reader.values(t.retry_commands)
    assert [(c["attempt"], c["channel"], c["reason"]) for c in cmds] == [
        (0, "WHATSAPP", "INITIAL"),
        (1, "SMS", "FAILED"),
    ]


async def test_cancel_ends_the_message_cancelled(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    cancel = orjson.dumps({"type": "cancel", "messageId": "m5", "reason": "paid"})
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m5", send_request("m5", [("WHATSAPP", 0.5), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(s, t.send_requests, [(b"m5", cancel)])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
        await asyncio.sleep(1.0)
        await reader.poll(300)
    assert [c["commandId"] for c in reader.values(t.retry_commands)] == ["m5:0"]
    [outcome] = reader.values(t.outcomes)
    assert outcome["result"] == "CANCELLED"


async def test_ttl_expiry_ends_the_message_expired(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running(s), reader:
        # No fallbackAfter: only the ttl can end this message.
        await publish(s, t.send_requests, [(b"m6", send_request("m6", [("WHATSAPP", None)], ttl=0.5))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    [outcome] = reader.values(t.outcomes)
    assert outcome["result"] == "EXPIRED"
    assert outcome["durationMs"] >= 500


async def test_late_success_after_the_end_reports_double_delivery(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m7", send_request("m7", [("WHATSAPP", 0.3), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "the SMS after the timeout")
        await publish(s, t.delivery_status, [(b"m7", status("m7", "SMS", "DELIVERED", 1))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
        await publish(s, t.delivery_status, [(b"m7", status("m7", "WHATSAPP", "READ", 0))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 2, "the late status")
    outcome, late = reader.values(t.outcomes)
    assert (outcome["type"], outcome["result"], outcome["channel"]) == ("outcome", "SUCCEEDED", "SMS")
    assert late["type"] == "late-status"
    assert (late["attempt"], late["channel"], late["status"], late["doubleDelivery"]) == (
        0,
        "WHATSAPP",
        "READ",
        True,
    )


async def test_repeated_request_issues_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    first = send_request("m8", [("WHATSAPP", 0.3), ("SMS", None)], requestedAt="2099-01-01T00:00:00Z")
    again = send_request("m8", [("WHATSAPP", 0.3), ("SMS", None)], requestedAt="2099-01-01T00:00:05Z")
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m8", first), (b"m8", again)])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "attempts 0 and 1")
        await publish(s, t.send_requests, [(b"m8", again)])
        await wait_committed(kafka_bootstrap, s.app_id, t.send_requests, 3)  # the repeat is processed
        await reader.poll(300)
    assert [c["commandId"] for c in reader.values(t.retry_commands)] == ["m8:0", "m8:1"]
    assert reader.records[t.dead_letters] == []


async def test_conflicting_request_is_dead_lettered_and_the_first_flow_goes_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    first = send_request("m9", [("WHATSAPP", 0.5), ("SMS", None)])
    other = send_request("m9", [("SMS", None)])
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m9", first), (b"m9", other, [("traceparent", b"00-abc-01")])])
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= 1, "the dead letter")
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "the first flow's SMS")
    [dead] = reader.records[t.dead_letters]
    headers = dict(dead.headers)
    assert dead.key == b"m9" and dead.value == other
    assert b"differ" in headers["__error.reason"] or b"conflict" in headers["__error.reason"].lower()
    assert headers["__error.source.topic"] == t.send_requests.encode()
    assert headers["__error.source.offset"] == b"1"
    assert headers["__error.class"] == b"stream_app.fallback.DeadLetter"
    assert headers["traceparent"] == b"00-abc-01"
    cmds = reader.values(t.retry_commands)
    assert [(c["commandId"], c["channel"]) for c in cmds] == [("m9:0", "WHATSAPP"), ("m9:1", "SMS")]


async def test_traceparent_is_copied_onto_what_a_record_causes(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with running(s), reader:
        request = send_request("m10", [("WHATSAPP", None)])
        await publish(s, t.send_requests, [(b"m10", request, [("traceparent", trace)])])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(
            s, t.delivery_status, [(b"m10", status("m10", "WHATSAPP", "READ"), [("traceparent", trace)])]
        )
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    assert dict(reader.records[t.retry_commands][0].headers)["traceparent"] == trace
    assert dict(reader.records[t.outcomes][0].headers)["traceparent"] == trace


async def test_content_of_most_of_a_producer_batch_still_travels(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A 300 KB content, most of a 512 KiB produce batch, still travels: the command carries it.

    (A record larger than a whole batch goes alone in a fresh one: tests/unit/runtime/test_produce.py.)"""
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    big = "x" * 300_000
    body = orjson.loads(send_request("m11", [("SMS", None)]))
    body["channels"][0]["content"] = {"text": big}
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"m11", orjson.dumps(body))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "the command")
    [cmd] = reader.values(t.retry_commands)
    assert cmd["content"] == {"text": big}
