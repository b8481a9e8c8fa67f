"""The readable and JSON lines of ``stream-app dead-letters``."""

from __future__ import annotations

import base64

import orjson

from stream_app.admin.dead_letters import PREVIEW, DeadLetter, format_line, json_line
from stream_app.admin.follow import Raw

T0_MS = 1_775_722_504_000  # 2026-04-09T08:15:04Z

HEADERS = (
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ("__error.reason", b"destination: must be E.164, '+' then 8 to 15 digits"),
    ("__error.source.topic", b"p.send-requests"),
    ("__error.source.partition", b"3"),
    ("__error.source.offset", b"17"),
    ("__error.class", b"InvalidRecord"),
)


def letter(value: bytes | None = b'{"messageId": "m-1",\n "destination": "12345"}') -> DeadLetter:
    return DeadLetter.of(
        Raw(partition=1, offset=9, timestamp_ms=T0_MS, key=b"m-1", value=value, headers=HEADERS)
    )


def test_a_line_says_when_where_what_why_and_shows_the_record_on_one_line() -> None:
    assert format_line(letter()) == (
        "08:15:04Z  p.send-requests[3]@17  InvalidRecord  destination: must be E.164, '+' then 8 to 15 digits"
        '  key=m-1 value={"messageId": "m-1", "destination": "12345"}'
    )


def test_a_long_value_is_cut_on_the_line_and_whole_in_json() -> None:
    value = b"x" * (PREVIEW * 2)
    line = format_line(letter(value))
    assert line.endswith("value=" + "x" * (PREVIEW - 3) + "...")
    assert orjson.loads(json_line(letter(value)))["value"] == value.decode()


def test_a_webhook_body_names_no_partition_and_missing_headers_do_not_fail_the_view() -> None:
    hook = DeadLetter.of(
        Raw(
            0,
            0,
            T0_MS,
            None,
            b"{}",
            (("__error.source.topic", b"webhook:/dlr"), ("__error.source.partition", b"-1")),
        )
    )
    assert format_line(hook) == "08:15:04Z  webhook:/dlr  ?  no __error.reason header  key=null value={}"
    bare = DeadLetter.of(Raw(0, 0, T0_MS, None, None, (("__error.source.offset", b"not a number"),)))
    assert bare.source_offset is None
    assert format_line(bare).startswith("08:15:04Z  unknown source  ?  ")


def test_json_has_every_header_and_the_record_whole() -> None:
    body = orjson.loads(json_line(letter()))
    assert body == {
        "partition": 1,
        "offset": 9,
        "timestamp": "2026-04-09T08:15:04.000Z",
        "reason": "destination: must be E.164, '+' then 8 to 15 digits",
        "sourceTopic": "p.send-requests",
        "sourcePartition": 3,
        "sourceOffset": 17,
        "errorClass": "InvalidRecord",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "key": "m-1",
        "value": '{"messageId": "m-1",\n "destination": "12345"}',
    }
    assert "\n" not in json_line(letter())


def test_bytes_that_are_not_utf8_travel_as_base64() -> None:
    body = orjson.loads(json_line(letter(b"\xff\xfe\x00")))
    assert "value" not in body
    assert base64.b64decode(body["valueBase64"]) == b"\xff\xfe\x00"
    assert "\ufffd" in format_line(letter(b"\xff\xfe\x00"))  # readable line: replaced, not a failure


def test_a_header_without_a_value_is_read_as_absent_regression() -> None:
    """A dead letter keeps the input's own headers, and Kafka allows one without a value (aiokafka
    gives None): ``value.decode()`` raised AttributeError and stopped ``stream-app dead-letters``."""
    headers = (("traceparent", None), ("x-empty", None), *HEADERS[1:])
    dead = DeadLetter.of(
        Raw(partition=1, offset=9, timestamp_ms=T0_MS, key=b"m-1", value=b"{}", headers=headers)
    )
    assert dead.traceparent is None and dead.source_offset == 17
    assert "InvalidRecord" in format_line(dead) and orjson.loads(json_line(dead))["reason"].startswith(
        "destination"
    )
