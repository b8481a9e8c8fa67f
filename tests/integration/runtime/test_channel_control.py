"""Channel control and send windows end to end, through the session broker (issue 12, items 1-2).

The control table is read whole at start and followed after; a closed channel's step is skipped
for new messages, ``inFlight: FALLBACK`` cuts open attempts short, a restart and a second instance
see the same table, and bad control records and bad windows are dead-lettered.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from stream_app.config import Settings
from stream_app.contracts import format_ms, to_ms
from tests.integration.runtime.helpers import (
    Reader,
    control,
    deferred,
    publish,
    running,
    running_processor,
    sees_closed,
    send_request,
    settings_for,
    setup_topics,
)
from tests.support.kafka import wait_committed
from tests.support.wait import until


async def _env(kafka_bootstrap: str, tmp_path: Path, **kw: Any) -> tuple[Settings, Reader]:
    s = settings_for(kafka_bootstrap, tmp_path / "state", **kw)
    await setup_topics(s)
    t = s.topics
    return s, Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters])


def commands(reader: Reader, s: Settings) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for c in reader.values(s.topics.retry_commands):
        out.setdefault(c["messageId"], []).append((c["channel"], c["reason"]))
    return out


IDS = [f"m{i}" for i in range(9)]  # spread over the 3 partitions


async def test_a_channel_closed_before_start_is_skipped_for_new_messages(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    await publish(s, t.channel_control, [control("WHATSAPP", reason="provider outage")])
    async with running(s), reader:
        await publish(
            s,
            t.send_requests,
            [(m.encode(), send_request(m, [("WHATSAPP", 60), ("SMS", None)])) for m in IDS],
        )
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= len(IDS), "every first command")
        await wait_committed(s.bootstrap_servers, s.app_id, t.send_requests, len(IDS))  # all processed
        await reader.poll(200)
    cmds = reader.values(t.retry_commands)
    assert sorted((c["messageId"], c["attempt"], c["channel"], c["reason"]) for c in cmds) == sorted(
        (m, 1, "SMS", "SKIPPED") for m in IDS
    )
    assert all(c["previous"] == {"attempt": 0, "channel": "WHATSAPP"} for c in cmds)


async def test_in_flight_fallback_ends_open_attempts_and_wait_does_not(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    async with running_processor(s) as processor, reader:
        wa = [(m.encode(), send_request(m, [("WHATSAPP", 600), ("SMS", None)])) for m in IDS]
        rcs = [(b"r1", send_request("r1", [("RCS", 600), ("SMS", None)]))]
        other = [(b"o1", send_request("o1", [("WHATSAPP", 600), ("SMS", None)], tenant="t2"))]
        await publish(s, t.send_requests, wa + rcs + other)
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= len(IDS) + 2, "every attempt 0")
        # WAIT (the default) for t1: open attempts are left alone
        await publish(s, t.channel_control, [control("WHATSAPP", tenant="t1")])
        await until(lambda: sees_closed(processor, "t1/WHATSAPP"), "the processor to read the WAIT closure")
        await reader.poll(200)
        assert len(reader.records[t.retry_commands]) == len(IDS) + 2
        # FALLBACK for t1: every open WhatsApp attempt of t1 ends at once
        await publish(s, t.channel_control, [control("WHATSAPP", tenant="t1", inFlight="FALLBACK")])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2 * len(IDS) + 2, "the SMS of t1")
        await asyncio.sleep(0.5)
        await reader.poll(200)
    by = commands(reader, s)
    for m in IDS:
        assert by[m] == [("WHATSAPP", "INITIAL"), ("SMS", "TIMEOUT")], m
    assert by["r1"] == [("RCS", "INITIAL")]  # another channel
    assert by["o1"] == [("WHATSAPP", "INITIAL")]  # another tenant


async def test_a_restart_keeps_the_control_state_and_open_reopens(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    chain = [("WHATSAPP", 60), ("SMS", None)]
    async with reader:
        async with running_processor(s) as processor:
            await publish(s, t.channel_control, [control("WHATSAPP")])
            # followed live: no restart needed
            await until(lambda: sees_closed(processor, "WHATSAPP"), "the closure read live")
            await publish(s, t.send_requests, [(b"a1", send_request("a1", chain))])
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "a1")
        fresh = replace(s, state_dir=tmp_path / "state2")  # a new instance, nothing local
        async with running_processor(fresh) as processor:
            await publish(s, t.send_requests, [(b"a2", send_request("a2", chain))])
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "a2")
            await publish(s, t.channel_control, [control("WHATSAPP", "OPEN")])
            await until(lambda: not sees_closed(processor, "WHATSAPP"), "the OPEN read live")
            await publish(s, t.send_requests, [(b"a3", send_request("a3", chain))])
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 3, "a3")
    by = commands(reader, s)
    assert by == {"a1": [("SMS", "SKIPPED")], "a2": [("SMS", "SKIPPED")], "a3": [("WHATSAPP", "INITIAL")]}


async def test_two_instances_see_the_same_control_state(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path, partitions=4)
    t = s.topics
    chain = [("WHATSAPP", 60), ("RCS", 60), ("SMS", None)]
    ids = [f"x{i}" for i in range(16)]
    async with (
        reader,
        running_processor(s) as a,
        running_processor(replace(s, state_dir=tmp_path / "state-b")) as b,
    ):
        await publish(
            s, t.channel_control, [control("WHATSAPP"), control("RCS", until="2099-01-01T00:00:00Z")]
        )
        await until(
            lambda: sees_closed(a, "WHATSAPP", "RCS") and sees_closed(b, "WHATSAPP", "RCS"),
            "both instances to read both closures",
        )
        await publish(s, t.send_requests, [(m.encode(), send_request(m, chain)) for m in ids])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= len(ids), "every first command")
        await wait_committed(s.bootstrap_servers, s.app_id, t.send_requests, len(ids))  # all processed
        await reader.poll(200)
    by = commands(reader, s)
    assert by == {m: [("SMS", "SKIPPED")] for m in ids}
    partitions = {r.partition for r in reader.records[t.retry_commands]}
    assert len(partitions) >= 3  # the messages really were spread over both instances' partitions


async def test_every_step_closed_ends_failed_channels_closed(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    await publish(s, t.channel_control, [control("WHATSAPP"), control("SMS", tenant="t1")])
    async with running(s), reader:
        await publish(s, t.send_requests, [(b"c1", send_request("c1", [("WHATSAPP", 60), ("SMS", None)]))])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    [outcome] = reader.values(t.outcomes)
    assert (outcome["result"], outcome["reason"]) == ("FAILED", "CHANNELS_CLOSED")
    assert [a["endedBy"] for a in outcome["attempts"]] == ["SKIPPED", "SKIPPED"]
    assert reader.records[t.retry_commands] == []


async def test_a_malformed_control_record_is_dead_lettered_and_changes_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    chain = [("WHATSAPP", 60), ("SMS", None)]
    async with running(s), reader:
        await publish(
            s,
            t.channel_control,
            [
                (b"WHATSAPP", b"not json"),
                (b"RCS", orjson.dumps({"channel": "WHATSAPP", "state": "CLOSED"})),  # under another key
                (b"WHATSAPP", orjson.dumps({"channel": "WHATSAPP", "state": "SHUT"})),
            ],
        )
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= 3, "three dead letters")
        await publish(s, t.send_requests, [(b"d1", send_request("d1", chain))])
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "d1")
        await wait_committed(s.bootstrap_servers, s.app_id, t.send_requests, 1)  # d1 processed
        await reader.poll(200)
    assert commands(reader, s) == {"d1": [("WHATSAPP", "INITIAL")]}
    dead = reader.records[t.dead_letters]
    assert len(dead) == 3  # once, by the instance owning the matching partition, not per poll
    reasons = sorted(dict(r.headers)["__error.reason"].decode() for r in dead)
    assert reasons[0].startswith("key: must be 'WHATSAPP' for this record, not 'RCS'")
    assert reasons[1].startswith("not valid JSON")
    assert reasons[2].startswith("state: Input should be 'OPEN' or 'CLOSED'")
    assert {dict(r.headers)["__error.source.topic"] for r in dead} == {t.channel_control.encode()}
    assert {r.value for r in dead} >= {b"not json"}


async def test_a_bad_send_window_is_dead_lettered(kafka_bootstrap: str, tmp_path: Path) -> None:
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    window = {"timezone": "Mars/Olympus", "from": "09:00", "to": "20:00"}
    async with running(s), reader:
        await publish(
            s,
            t.send_requests,
            [
                (b"w1", send_request("w1", sendWindow=window)),
                (b"w2", send_request("w2", sendWindow={**window, "timezone": "Europe/Rome", "to": "25:00"})),
                (
                    b"w3",
                    send_request("w3", sendWindow={**window, "timezone": "Europe/Rome", "days": ["FUN"]}),
                ),
            ],
        )
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= 3, "three dead letters")
    reasons = {r.key: dict(r.headers)["__error.reason"].decode() for r in reader.records[t.dead_letters]}
    assert reasons[b"w1"] == "sendWindow.timezone: unknown IANA timezone 'Mars/Olympus' (e.g. Europe/Rome)"
    assert reasons[b"w2"] == "sendWindow.to: must be a local time HH:MM (00:00 to 23:59)"
    assert reasons[b"w3"].startswith("sendWindow.days.0: Input should be 'MON'")
    assert reader.records[t.retry_commands] == []


async def test_a_deferred_step_is_a_durable_timer_issued_at_the_opening(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """19:59:59 in Rome, 2 s fallback: the SMS falls due at 20:00:01 and waits for 09:00, across a restart."""
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    rome = ZoneInfo("Europe/Rome")
    start = to_ms(datetime(2030, 4, 9, 19, 59, 59, tzinfo=rome))
    opening = to_ms(datetime(2030, 4, 10, 9, 0, tzinfo=rome))
    now = [start]
    window = {"timezone": "Europe/Rome", "from": "09:00", "to": "20:00"}
    request = send_request(
        "q1", [("WHATSAPP", 2), ("SMS", None)], sendWindow=window, requestedAt=format_ms(start)
    )
    async with reader:
        async with running_processor(s, clock=lambda: now[0]) as processor:
            await publish(s, t.send_requests, [(b"q1", request)])
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
            now[0] += 2_000  # the SMS falls due, outside the window
            await until(lambda: deferred(processor, b"q1"), "the SMS deferred")
        async with running_processor(s, clock=lambda: now[0]) as processor:
            now[0] = opening - 1
            await until(lambda: deferred(processor, b"q1"), "the deferred step restored")
            await reader.poll(200)
            assert len(reader.records[t.retry_commands]) == 1, "never early"
            now[0] = opening
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "the SMS at 09:00")
    first, sms = reader.values(t.retry_commands)
    assert (sms["channel"], sms["reason"]) == ("SMS", "TIMEOUT")
    assert sms["issuedAt"] == format_ms(opening)
    assert sms["deferredFrom"] == format_ms(start + 2_000)
    assert "deferredFrom" not in first


async def test_the_table_is_read_before_the_first_timer_fires_after_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A timer overdue at start fires in the first turn: it must already see a closure written meanwhile."""
    s, reader = await _env(kafka_bootstrap, tmp_path)
    t = s.topics
    now = [1_900_000_000_000]
    async with reader:
        async with running(s, clock=lambda: now[0]):
            await publish(
                s, t.send_requests, [(b"p1", send_request("p1", [("WHATSAPP", 60), ("SMS", None)]))]
            )
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        await publish(s, t.channel_control, [control("SMS")])  # written while no processor runs
        now[0] += 3_600_000  # the WhatsApp timer is long overdue at the restart
        async with running(s, clock=lambda: now[0]):
            await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    assert commands(reader, s) == {"p1": [("WHATSAPP", "INITIAL")]}
    [outcome] = reader.values(t.outcomes)
    assert (outcome["result"], outcome["reason"]) == ("FAILED", "CHANNELS_CLOSED")
    assert [a["endedBy"] for a in outcome["attempts"]] == ["TIMEOUT", "SKIPPED"]
