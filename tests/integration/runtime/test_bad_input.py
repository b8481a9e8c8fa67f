"""Poison records interleaved with good ones: good ones all end, bad ones all land in dead-letters.

One record per kind of bad input, each checked for its Connect-style headers and its untouched
key and value bytes. The loop must never die on input.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
)

BAD_REQUESTS: list[tuple[bytes | None, bytes | None, str]] = [
    (b"b1", b"{not json", "not valid JSON"),
    (b"b2", send_request("b2", destination="+12"), "destination: must be E.164"),
    (b"b3", None, "value is empty"),
    (b"other", send_request("b4"), "key: must be the messageId"),
    (None, send_request("b5"), "key: must be the messageId"),
    (b"b6", b"\xff\xfe\x00garbage", "not valid JSON"),
    (b"b7", b"[1, 2, 3]", "must be a JSON object"),
    (b"b8", orjson.dumps({"messageId": "b8", "destination": "+393401234567", "channels": []}), "channels"),
    (b"b9", orjson.dumps({"type": "resend", "messageId": "b9"}), "type: must be 'send' or 'cancel'"),
]
BAD_STATUSES: list[tuple[bytes | None, bytes | None, str]] = [
    (b"s1", orjson.dumps({"messageId": "s1", "channel": "WHATSAPP", "status": "LOST"}), "status"),
    (b"s2", orjson.dumps({"messageId": "s2", "channel": "PIGEON", "status": "SENT"}), "channel"),
    (b"s3", orjson.dumps({"messageId": "s3", "channel": "SMS", "status": "SENT", "attempt": -1}), "attempt"),
    (b"s4", b"", "not valid JSON"),
]


async def test_poison_records_interleaved_with_good_ones(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "state")
    await setup_topics(s)
    t = s.topics
    good = [f"g{i}" for i in range(len(BAD_REQUESTS) + 3)]
    requests: list[tuple[bytes | None, bytes | None]] = []
    for i, mid in enumerate(good):
        requests.append((mid.encode(), send_request(mid, [("WHATSAPP", 0.3)])))
        if i < len(BAD_REQUESTS):
            requests.append(BAD_REQUESTS[i][:2])
    statuses = [rec[:2] for rec in BAD_STATUSES]
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters])
    async with running(s), reader:
        await publish(s, t.send_requests, requests)
        await publish(s, t.delivery_status, statuses)
        expected_dead = len(BAD_REQUESTS) + len(BAD_STATUSES)
        await reader.wait(
            lambda: len(reader.records[t.outcomes]) >= len(good), "every good message's outcome"
        )
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= expected_dead, "every dead letter")
    outcomes = reader.values(t.outcomes)
    assert sorted(o["messageId"] for o in outcomes) == sorted(good)
    assert {o["result"] for o in outcomes} == {"FAILED"}  # the one WhatsApp step timed out

    dead = reader.records[t.dead_letters]
    assert len(dead) == expected_dead
    by_source = {(dict(d.headers)["__error.source.topic"].decode(), d.key, d.value): d for d in dead}
    for topic, bad in ((t.send_requests, BAD_REQUESTS), (t.delivery_status, BAD_STATUSES)):
        for key, value, reason in bad:
            record = by_source.get((topic, key, value))
            assert record is not None, f"no dead letter for {key!r} {value!r}"
            headers = dict(record.headers)
            assert reason in headers["__error.reason"].decode(), headers["__error.reason"]
            assert b"\n" not in headers["__error.reason"]
            assert headers["__error.class"].startswith(b"stream_app.")
            assert int(headers["__error.source.partition"]) in range(s.partitions)
            assert int(headers["__error.source.offset"]) >= 0
