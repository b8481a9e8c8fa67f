"""``stream-app explain`` replays channel-control records and send windows (issues 11 and 12).

A real processor runs through the session broker: channels are closed before it starts and while it
runs, and a send window defers a step under an injected clock. Each message is then explained from
the topics (and once from an export): the timeline names the rule and the record behind each
decision, and the replay agrees with what the processor published (exit status 0).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.config import Settings
from stream_app.contracts import format_ms, to_ms
from tests.integration.explain.helpers import explain_on as explain
from tests.integration.explain.helpers import run_cli
from tests.integration.runtime.helpers import (
    Reader,
    control,
    deferred,
    publish,
    running,
    running_processor,
    send_request,
    settings_for,
    setup_topics,
)
from tests.support.wait import until

CHAIN = [("WHATSAPP", 600), ("SMS", None)]
T2_CLOSED = (
    "channel-control 't2/WHATSAPP': WHATSAPP closed for tenant t2 (provider outage), "
    "until 2099-01-01T00:00:00Z, inFlight WAIT"
)


def rules(entry: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in entry["rules"]]


def entry_with(doc: dict[str, Any], rule: str) -> dict[str, Any]:
    """The one timeline entry that applied ``rule``."""
    found = [e for e in doc["timeline"] if rule in rules(e)]
    assert len(found) == 1, [(e["summary"], rules(e)) for e in doc["timeline"]]
    return found[0]


def published(entry: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """What an entry produced, each matched to a published record: (type, channel, reason)."""
    assert all(o["published"] for o in entry["outputs"]), entry["outputs"]
    return [(o["type"], o["value"].get("channel"), o["value"].get("reason")) for o in entry["outputs"]]


# ------------------------------------------------------------------------- closed channels, played once


async def _play_closures(settings: Settings) -> None:
    """t2's and t3's channels closed before the processor starts; t1's WhatsApp closed FALLBACK later."""
    t = settings.topics
    await setup_topics(settings)
    await publish(
        settings,
        t.channel_control,
        [
            control("WHATSAPP", tenant="t2", reason="provider outage", until="2099-01-01T00:00:00Z"),
            control("WHATSAPP", tenant="t3"),
            control("SMS", tenant="t3"),
        ],
    )
    reader = Reader(settings.bootstrap_servers, [t.retry_commands, t.outcomes])
    async with reader, running(settings):
        await publish(
            settings,
            t.send_requests,
            [
                (b"s1", send_request("s1", CHAIN, tenant="t2")),
                (b"c1", send_request("c1", CHAIN, tenant="t3")),
                (b"f1", send_request("f1", CHAIN, tenant="t1")),
            ],
        )
        await reader.wait(
            lambda: len(reader.records[t.retry_commands]) >= 2 and len(reader.records[t.outcomes]) >= 1,
            "s1's SMS, f1's WhatsApp and c1's outcome",
        )
        await publish(
            settings,
            t.channel_control,
            [control("WHATSAPP", tenant="t1", inFlight="FALLBACK", reason="stuck in SENT")],
        )
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 3, "f1's SMS")
    by = sorted((c["messageId"], c["channel"], c["reason"]) for c in reader.values(t.retry_commands))
    assert by == [("f1", "SMS", "TIMEOUT"), ("f1", "WHATSAPP", "INITIAL"), ("s1", "SMS", "SKIPPED")]


@pytest.fixture(scope="module")
def closures(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The closures' messages played once through a processor (in an event loop of its own)."""
    settings = settings_for(kafka_bootstrap, tmp_path_factory.mktemp("explain-control") / "state")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _play_closures(settings)).result()
    yield settings


def test_a_step_on_a_closed_channel_is_skipped_naming_the_record(closures: Settings) -> None:
    code, doc = explain(closures, "s1")
    assert (code, doc["agrees"], doc["differences"]) == (0, True, [])
    # the closure comes first in the timeline (it was written before the request) and applies to it
    closure = next(e for e in doc["timeline"] if "tenant t2" in e["summary"])
    assert doc["timeline"].index(closure) < doc["timeline"].index(entry_with(doc, "SKIPPED"))
    assert closure["record"]["topic"] == closures.topics.channel_control
    assert closure["summary"] == (
        "channel WHATSAPP CLOSED, tenant t2, inFlight WAIT, until 2099-01-01T00:00:00Z, "
        "reason 'provider outage'"
    )
    assert [(r["rule"], r["text"]) for r in closure["rules"]] == [
        ("CHANNEL_CONTROL", f"{T2_CLOSED}: steps falling due on it are skipped")
    ]
    entry = entry_with(doc, "SKIPPED")
    assert entry["record"]["topic"] == closures.topics.send_requests
    assert rules(entry) == ["ACCEPTED", "SKIPPED"]
    assert entry["rules"][1]["text"] == f"WHATSAPP attempt 0 not issued: {T2_CLOSED} -> SMS, reason SKIPPED"
    assert published(entry) == [("command", "SMS", "SKIPPED")]


def test_every_step_closed_ends_channels_closed(closures: Settings) -> None:
    code, doc = explain(closures, "c1")
    assert (code, doc["agrees"]) == (0, True)
    entry = entry_with(doc, "CHANNELS_CLOSED")
    assert rules(entry) == ["ACCEPTED", "SKIPPED", "SKIPPED", "CHANNELS_CLOSED"]
    assert "channel-control 't3/SMS': SMS closed for tenant t3" in entry["rules"][2]["text"]
    assert published(entry) == [("outcome", None, "CHANNELS_CLOSED")]


def test_a_fallback_closure_ends_the_open_attempt(closures: Settings) -> None:
    code, doc = explain(closures, "f1")
    assert (code, doc["agrees"], doc["differences"]) == (0, True, [])
    entry = entry_with(doc, "CONTROL")
    assert entry["record"]["topic"] == closures.topics.channel_control
    assert rules(entry) == ["CHANNEL_CONTROL", "CONTROL"]
    assert entry["rules"][1]["text"] == (
        "WHATSAPP attempt 0 still without a status, cut short by channel-control 't1/WHATSAPP': WHATSAPP "
        "closed for tenant t1 (stuck in SENT), no until, inFlight FALLBACK -> SMS, reason TIMEOUT"
    )
    assert published(entry) == [("command", "SMS", "TIMEOUT")]
    # the closures of other tenants are replayed too, and change nothing for f1
    others = [e for e in doc["timeline"] if "tenant t2" in e["summary"] or "tenant t3" in e["summary"]]
    assert len(others) == 3
    assert all(rules(e) == ["CHANNEL_CONTROL"] and e["outputs"] == [] for e in others)


def test_from_file_replays_the_control_records_of_an_export(closures: Settings, tmp_path: Path) -> None:
    export = tmp_path / "f1.jsonl"
    code, _ = explain(closures, "f1", "--export", str(export))
    assert code == 0
    lines = [orjson.loads(line) for line in export.read_bytes().splitlines()]
    controls = [line["key"] for line in lines if line["topic"] == closures.topics.channel_control]
    assert sorted(controls) == ["t1/WHATSAPP", "t2/WHATSAPP", "t3/SMS", "t3/WHATSAPP"]

    code, out, err = run_cli("explain", "f1", "--from-file", str(export))
    assert code == 0, out + err
    assert "result: the replay agrees with everything published (2 command(s)" in out
    assert (
        "CONTROL        WHATSAPP attempt 0 still without a status, cut short by channel-control 't1/WHATSAPP'"
        in out
    )
    code, out, _ = run_cli("explain", "f1", "--from-file", str(export), "--json")
    doc = orjson.loads(out)
    assert (code, doc["agrees"]) == (0, True)
    assert published(entry_with(doc, "CONTROL")) == [("command", "SMS", "TIMEOUT")]


# ------------------------------------------------------------------------------------ a send window

ROME = ZoneInfo("Europe/Rome")


async def test_a_step_deferred_by_the_send_window_and_its_deferred_from(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """19:59:59 in Rome, 2 s fallback: the SMS falls due at 20:00:01 and is issued at 09:00.

    The processor runs on an injected clock, so the request is stamped with that clock's time (as a
    producer running then would stamp it), and explain replays up to just after the opening.
    """
    s = settings_for(kafka_bootstrap, tmp_path / "state")
    await setup_topics(s)
    t = s.topics
    start = to_ms(datetime(2030, 4, 9, 19, 59, 59, tzinfo=ROME))
    due, opening = start + 2_000, to_ms(datetime(2030, 4, 10, 9, 0, tzinfo=ROME))
    now = [start]
    window = {"timezone": "Europe/Rome", "from": "09:00", "to": "20:00"}
    request = send_request(
        "q1", [("WHATSAPP", 2), ("SMS", None)], sendWindow=window, requestedAt=format_ms(start)
    )
    reader = Reader(kafka_bootstrap, [t.retry_commands])
    async with running_processor(s, clock=lambda: now[0]) as processor, reader:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(t.send_requests, request, key=b"q1", timestamp_ms=start)
        finally:
            await producer.stop()
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
        now[0] = due
        await until(lambda: deferred(processor, b"q1"), "the SMS deferred")
        now[0] = opening
        await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "the SMS at 09:00")
    sms = reader.values(t.retry_commands)[1]
    assert (sms["issuedAt"], sms["deferredFrom"]) == (format_ms(opening), format_ms(due))

    code, doc = await asyncio.to_thread(explain, s, "q1", "--until", format_ms(opening + 1_000))
    assert (code, doc["agrees"], doc["differences"]) == (0, True, [])
    held, issued = [e for e in doc["timeline"] if "DEFERRED" in rules(e)]
    assert (held["kind"], held["at"], rules(held)) == ("timer", format_ms(due), ["TIMEOUT", "DEFERRED"])
    assert held["rules"][1]["text"] == (
        f"SMS attempt 1 (reason TIMEOUT) fell due {format_ms(due)}, outside the send window: held until "
        f"its next opening {format_ms(opening)}; its command will say deferredFrom {format_ms(due)}"
    )
    assert held["outputs"] == []
    assert (issued["kind"], issued["at"], rules(issued)) == ("timer", format_ms(opening), ["DEFERRED"])
    assert published(issued) == [("command", "SMS", "TIMEOUT")]
    assert issued["outputs"][0]["value"]["deferredFrom"] == format_ms(due)
