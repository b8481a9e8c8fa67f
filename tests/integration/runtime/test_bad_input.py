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


async def test_records_over_the_size_limit_are_dead_lettered_and_the_partition_flows_on(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Regression: an input whose state or command the broker would refuse as too large stalled its
    partition (every retry failed the same produce). Now it is refused at the edge, before decoding."""
    s = settings_for(kafka_bootstrap, tmp_path / "state", partitions=1, max_request_bytes=4096)
    await setup_topics(s)
    t = s.topics
    big_content = {"sender": "Shop", "text": "x" * 8000}
    big = send_request("big", [("SMS", 0.3)])
    big = orjson.dumps({**orjson.loads(big), "channels": [{"channel": "SMS", "content": big_content}]})
    assert len(big) > 4096
    big_status = orjson.dumps(
        {"messageId": "g0", "channel": "SMS", "status": "SENT", "reasons": ["r" * 5000]}
    )
    reader = Reader(kafka_bootstrap, [t.outcomes, t.dead_letters])
    async with running(s), reader:
        # One partition: the good requests sit right behind the big one and must still be processed.
        await publish(
            s,
            t.send_requests,
            [
                (b"g0", send_request("g0", [("WHATSAPP", 0.3)])),
                (b"big", big),
                (b"g1", send_request("g1", [("WHATSAPP", 0.3)])),
            ],
        )
        await publish(s, t.delivery_status, [(b"g0", big_status)])
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 2, "both good outcomes")
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= 2, "both dead letters")
    assert sorted(o["messageId"] for o in reader.values(t.outcomes)) == ["g0", "g1"]
    dead = {d.key: dict(d.headers) for d in reader.records[t.dead_letters]}
    assert set(dead) == {b"big", b"g0"}
    for headers in dead.values():
        reason = headers["__error.reason"].decode()
        assert "over the limit of 4096 (STREAM_APP_MAX_REQUEST_BYTES)" in reason, reason
    assert {d.value for d in reader.records[t.dead_letters]} == {big, big_status}


async def test_a_record_too_large_to_dead_letter_whole_does_not_stall_its_partition_regression(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Regression: a dead letter carries the input's value, untouched, and the processor's producer
    refuses a record over its max_request_size (1 MiB here). An input that large (its topic took it)
    made every retry of the turn fail the same produce: the partition stalled for good. Now its dead
    letter carries no value, says so in its reason, and the records behind it flow on."""
    s = settings_for(kafka_bootstrap, tmp_path / "state", partitions=1)
    await setup_topics(s)
    t = s.topics
    huge = b'{"messageId": "huge", "pad": "' + b"x" * (1536 * 1024) + b'"}'
    reader = Reader(kafka_bootstrap, [t.outcomes, t.dead_letters])
    async with running(s), reader:
        # One partition: the good request sits right behind the huge one and must still end.
        await publish(
            s,
            t.send_requests,
            [(b"huge", huge), (b"g1", send_request("g1", [("WHATSAPP", 0.3)]))],
            max_request_size=4 * 1024 * 1024,
        )
        await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the good request's outcome")
        await reader.wait(lambda: len(reader.records[t.dead_letters]) >= 1, "the huge one's dead letter")
    assert [o["messageId"] for o in reader.values(t.outcomes)] == ["g1"]
    (dead,) = reader.records[t.dead_letters]
    assert dead.key == b"huge"
    assert dead.value is None
    headers = dict(dead.headers)
    reason = headers["__error.reason"].decode()
    assert f"record: {len(huge)} bytes, over the limit of {s.max_request_bytes}" in reason, reason
    assert f"the value ({len(huge)} bytes) is not carried" in reason, reason
    assert headers["__error.source.topic"].decode() == t.send_requests
    assert int(headers["__error.source.offset"]) == 0
