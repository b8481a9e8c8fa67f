"""``explain --from-file``: the export format, broken lines, the offline replay and its checks, no broker.

The records here are written by hand, as a user would from ``kcat`` or a log, so every rule of the
format is exercised: text or object values, base64, epoch ms or RFC 3339 timestamps, any topic prefix.
"""

from __future__ import annotations

import base64
import contextlib
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts import format_ms
from stream_app.explain import UnknownMessage, explain_file
from stream_app.explain.export import export_line, parse_lines
from stream_app.explain.records import Record
from tests.unit.fallback.driver import HOUR, SECOND, T0

MID = "order-42"
REQUEST = {
    "messageId": MID,
    "destination": "+393401234567",
    "channels": [
        {"channel": "WHATSAPP", "fallbackAfter": 7200, "content": {"template": {"id": 42}}},
        {"channel": "SMS", "content": {"sender": "Shop", "text": "Hello"}},
    ],
    "requestedAt": format_ms(T0),
}


def line(topic: str, offset: int, ts: int | str, value: Any, **extra: Any) -> bytes:
    body: dict[str, Any] = {"topic": topic, "partition": 3, "offset": offset, "timestamp": ts, "key": MID}
    body["value"] = value  # text, or the JSON object itself
    body.update(extra)
    return orjson.dumps(body)


def status(offset: int, at: int, value: str, attempt: int = 0, channel: str = "WHATSAPP") -> bytes:
    body = {"messageId": MID, "attempt": attempt, "channel": channel, "status": value}
    return line("prod.delivery-status", offset, at, orjson.dumps(body).decode())


def explain_cli(path: Path, *extra: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", MID, "--from-file", str(path), *extra])
    return code, out.getvalue(), err.getvalue()


def test_an_export_without_published_records_replays_with_timers_at_their_deadlines(tmp_path: Path) -> None:
    # A request (the value as the JSON object, as kcat's %s prints it), WhatsApp SENT, and two hours
    # later the SMS delivered. Nothing published in the file: every replayed output is a difference.
    path = tmp_path / "order-42.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line("prod.send-requests", 7, T0, REQUEST),
                status(11, T0 + SECOND, "SENT"),
                status(12, format_ms(T0 + 2 * HOUR + 5 * SECOND), "DELIVERED", attempt=1, channel="SMS"),
            ]
        )
    )
    code, out, _ = explain_cli(path, "--json")
    doc = orjson.loads(out)
    assert code == 3 and doc["agrees"] is False
    timer = next(e for e in doc["timeline"] if e["kind"] == "timer")
    assert timer["at"] == format_ms(T0 + 2 * HOUR)  # exactly its deadline: issued at T0 + 7200 s
    assert (
        timer["rules"][0]["text"]
        == "WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s -> SMS, reason TIMEOUT"
    )
    assert [d["detail"] for d in doc["differences"]] == [
        "the replay produces it, but it was never published"
    ] * 3  # command :0, command :1, the outcome
    assert doc["timeline"][0]["record"] == {"topic": "prod.send-requests", "partition": 3, "offset": 7}


def test_broken_export_lines_are_reported_per_line_and_the_rest_is_used(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line("send-requests", 1, T0, orjson.dumps(REQUEST).decode()),
                b"{not json",
                b"[1, 2]",
                orjson.dumps({"partition": 0, "timestamp": T0, "key": MID, "value": "{}"}),  # no topic
                line("delivery-status", 2, "2026-04-09T08:15:01", "{}"),  # no offset in the time
                orjson.dumps({"topic": "delivery-status", "timestamp": T0, "key": MID, "valueBase64": "!!"}),
                b"",
                status(3, T0 + SECOND, "DELIVERED"),
                line("some-other-topic", 9, T0, "whatever"),  # not a topic of the story: skipped
            ]
        )
    )
    code, out, _ = explain_cli(path)
    warnings = [ln for ln in out.splitlines() if ln.startswith("warning:")]
    assert warnings == [
        "warning: line 2: not JSON (unexpected character, expected a string key: line 1 column 2 (char 1))",
        "warning: line 3: a JSON object is expected, got list",
        "warning: line 4: topic: Field required",
        "warning: line 5: timestamp: an RFC 3339 time needs an offset (Z or +02:00), or give epoch ms",
        "warning: line 6: valueBase64: not base64",
    ]
    # the good lines still tell the story (the published side is missing, hence exit 3)
    assert "SUCCESS        outcome SUCCEEDED on WHATSAPP DELIVERED" in out
    assert code == 3


def test_records_of_other_messages_are_left_out_and_an_unknown_id_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "other.jsonl"
    other = orjson.loads(line("send-requests", 1, T0, REQUEST))
    other["key"] = "someone-else"
    path.write_bytes(orjson.dumps(other) + b"\nnot json\n")
    code, out, err = explain_cli(path)
    assert (code, out) == (1, "")
    assert err == f"stream-app: no record keyed {MID!r} in {path} (2 lines; 1 line(s) unreadable)\n"
    with pytest.raises(UnknownMessage):
        explain_file(Settings(), MID, path)


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, out, err = explain_cli(tmp_path / "nope.jsonl")
    assert (code, out) == (2, "")
    assert err.startswith("stream-app: error: cannot read ") and err.count("\n") == 1


def test_export_lines_read_back_as_written_text_or_base64() -> None:
    rec = Record(
        "send_requests", "p.send-requests", 2, 5, T0, MID.encode(), b"\xff\x00", (("traceparent", b"00-x"),)
    )
    raw = export_line(rec)
    assert orjson.loads(raw)["valueBase64"] == base64.b64encode(b"\xff\x00").decode()
    [back], problems, n = parse_lines([raw], MID, Settings())
    assert (back, problems, n) == (rec, [], 1)


def test_a_header_without_a_value_is_written_as_null_and_read_back_regression() -> None:
    # Kafka allows a header without a value (None): the export failed on it with an AttributeError.
    rec = Record(
        "send_requests",
        "p.send-requests",
        2,
        5,
        T0,
        MID.encode(),
        b"{}",
        (("x", None), ("traceparent", b"00-x")),
    )
    raw = export_line(rec)
    assert orjson.loads(raw)["headers"] == [["x", None], ["traceparent", "00-x"]]
    [back], problems, n = parse_lines([raw], MID, Settings())
    assert (back, problems, n) == (rec, [], 1)


def test_published_records_in_the_file_are_checked_and_a_tampered_one_is_flagged(tmp_path: Path) -> None:
    # The command the processor would have published, then the same with another channel.
    cmd = {
        "type": "command",
        "schemaVersion": 1,
        "commandId": f"{MID}:0",
        "messageId": MID,
        "attempt": 0,
        "channel": "WHATSAPP",
        "destination": "+393401234567",
        "content": {"template": {"id": 42}},
        "reason": "INITIAL",
        "previous": None,
        "issuedAt": format_ms(T0 + 40),
        "notAfter": format_ms(T0 + 72 * HOUR),
        "simulation": False,
    }
    good = tmp_path / "good.jsonl"
    good.write_bytes(
        b"\n".join(
            [
                line("send-requests", 1, T0, REQUEST),
                line("retry-commands", 1, T0 + 50, orjson.dumps(cmd).decode()),
            ]
        )
    )
    code, out, _ = explain_cli(good)
    assert code == 0, out
    assert "a race within" not in out  # said only next to a difference
    assert "= published retry-commands[3]@1 (+40 ms)" in out
    bad = tmp_path / "bad.jsonl"
    cmd["channel"] = "SMS"
    cmd["issuedAt"] = format_ms(T0 + 9 * SECOND)  # outside the default 5 s tolerance too
    bad.write_bytes(
        b"\n".join(
            [
                line("send-requests", 1, T0, REQUEST),
                line("retry-commands", 1, T0 + 50, orjson.dumps(cmd).decode()),
            ]
        )
    )
    code, out, _ = explain_cli(bad)
    assert code == 3
    channel = f'!!!   command {MID}:0: channel: replay "WHATSAPP", published "SMS"'
    assert f"{channel} (retry-commands[3]@1)" in out
    assert (
        f"!!!   command {MID}:0: issuedAt: replay {format_ms(T0)}, published {format_ms(T0 + 9 * SECOND)}"
        in out
    )
    code, out, _ = explain_cli(bad, "--tolerance", "10")  # the time now within tolerance: the channel stays
    assert code == 3 and "issuedAt" not in out and "channel" in out


def test_a_partition_replays_in_offset_order_and_the_clock_never_goes_back(tmp_path: Path) -> None:
    # The DELIVERED's producer clock is a second behind: it comes after the SENT (offset order) and
    # is stepped at the SENT's time, as the processor's clock would have it.
    path = tmp_path / "skew.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                status(3, T0 + SECOND, "DELIVERED"),
                line("send-requests", 1, T0, REQUEST),
                status(2, T0 + 2 * SECOND, "SENT"),
            ]
        )
    )
    _, out, _ = explain_cli(path, "--json")
    doc = orjson.loads(out)
    entries = [(e["record"]["offset"], e["at"], [r["rule"] for r in e["rules"]]) for e in doc["timeline"]]
    assert entries == [
        (1, format_ms(T0), ["ACCEPTED", "INITIAL"]),
        (2, format_ms(T0 + 2 * SECOND), ["PROGRESS"]),
        (3, format_ms(T0 + 2 * SECOND), ["SUCCESS", "SUCCESS"]),
    ]


def test_a_time_range_keeps_only_the_records_in_it_and_ends_the_timers_there(tmp_path: Path) -> None:
    path = tmp_path / "range.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line("send-requests", 1, T0, REQUEST),
                status(2, T0 + SECOND, "SENT"),
                status(3, T0 + 3 * HOUR, "DELIVERED", attempt=1, channel="SMS"),
            ]
        )
    )
    until = format_ms(T0 + HOUR)
    _, out, _ = explain_cli(path, "--json", "--until", until)
    doc = orjson.loads(out)
    assert [e["record"]["offset"] for e in doc["timeline"]] == [1, 2]  # no timer: it is due at 2 h
    assert (doc["horizon"], doc["pendingTimer"]) == (until, format_ms(T0 + 2 * HOUR))
    _, out, _ = explain_cli(path, "--json", "--since", format_ms(T0 + HOUR))
    doc = orjson.loads(out)
    assert [e["summary"] for e in doc["timeline"]] == ["status SMS DELIVERED, attempt 1"]
    assert doc["timeline"][0]["rules"][0]["rule"] == "HELD"  # its request is outside the range


def test_a_difference_next_to_a_status_that_raced_a_timer_is_said_to_be_likely_that_race(
    tmp_path: Path,
) -> None:
    # WhatsApp's ERROR is stamped 100 ms before its 2 s fallbackAfter; the processor read it late and
    # timed the attempt out first (reason TIMEOUT, previous SENT): not a bug, and explain says so.
    req = {**REQUEST, "channels": [{**REQUEST["channels"][0], "fallbackAfter": 2}, REQUEST["channels"][1]]}
    base = {"type": "command", "schemaVersion": 1, "messageId": MID, "destination": "+393401234567"}
    base |= {"simulation": False}
    not_after = format_ms(T0 + 72 * HOUR)
    cmd0 = {**base, "commandId": f"{MID}:0", "attempt": 0, "channel": "WHATSAPP", "reason": "INITIAL"}
    cmd0 |= {"content": {"template": {"id": 42}}, "issuedAt": format_ms(T0), "notAfter": not_after}
    cmd1 = {**base, "commandId": f"{MID}:1", "attempt": 1, "channel": "SMS", "reason": "TIMEOUT"}
    cmd1 |= {"content": {"sender": "Shop", "text": "Hello"}, "issuedAt": format_ms(T0 + 2 * SECOND)}
    cmd1 |= {"notAfter": not_after, "previous": {"attempt": 0, "channel": "WHATSAPP", "status": "SENT"}}
    path = tmp_path / "race.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line("send-requests", 1, T0, req),
                status(2, T0 + SECOND, "SENT"),
                status(3, T0 + 1900, "ERROR"),
                line("retry-commands", 1, T0 + 10, orjson.dumps(cmd0).decode()),
                line("retry-commands", 2, T0 + 2010, orjson.dumps(cmd1).decode()),
            ]
        )
    )
    code, out, _ = explain_cli(path)
    assert code == 3
    assert f'!!!   command {MID}:1: reason: replay "FAILED", published "TIMEOUT"' in out
    assert "!!! 2 DIFFERENCE(S)" in out  # the reason, and the status the previous attempt had
    note = "the processor may have read it after the timer fired (a race within its lag)"
    assert f"warning: prod.delivery-status[3]@3 came 100 ms before the message's timer: {note}" in out


def control_line(offset: int, ts: int, key: str, value: Any) -> bytes:
    return line("prod.channel-control", offset, ts, value, key=key, partition=0)


def test_control_records_are_replayed_in_time_order_up_to_the_end_of_the_replay(tmp_path: Path) -> None:
    """A bad one changes nothing, a FALLBACK closure cuts the open attempt short, a tombstone reopens,
    and one stamped after the message's last record is not replayed."""
    closed = {"type": "channel-control", "channel": "WHATSAPP", "state": "CLOSED", "inFlight": "FALLBACK"}
    path = tmp_path / "order-42.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                control_line(0, T0 - SECOND, "WHATSAPP", {**closed, "state": "SHUT"}),
                line("prod.send-requests", 7, T0, REQUEST),
                control_line(1, T0 + 600 * SECOND, "WHATSAPP", closed),
                control_line(2, T0 + 1200 * SECOND, "WHATSAPP", None),
                status(12, T0 + 1800 * SECOND, "DELIVERED", attempt=1, channel="SMS"),
                control_line(3, T0 + 5 * HOUR, "SMS", {**closed, "channel": "SMS"}),
            ]
        )
    )
    code, out, _ = explain_cli(path, "--json")
    doc = orjson.loads(out)
    assert code == 3  # nothing published in the file
    controls = [e for e in doc["timeline"] if e["record"] and e["record"]["topic"] == "prod.channel-control"]
    assert [e["record"]["offset"] for e in controls] == [0, 1, 2]  # offset 3 is after the replay's end
    bad, fallback, tombstone = controls
    assert [(r["rule"], r["text"]) for r in bad["rules"]] == [
        (
            "DEAD_LETTER",
            "refused, it changes nothing (dead-lettered): state: Input should be 'OPEN' or 'CLOSED'",
        )
    ]
    assert [r["rule"] for r in fallback["rules"]] == ["CHANNEL_CONTROL", "CONTROL"]
    assert [(o["type"], o["value"]["channel"], o["value"]["reason"]) for o in fallback["outputs"]] == [
        ("command", "SMS", "TIMEOUT")
    ]
    assert tombstone["summary"] == "tombstone of 'WHATSAPP'"
    assert [r["text"] for r in tombstone["rules"]] == [
        "tombstone of 'WHATSAPP': whatever it closed is open again"
    ]
    request = next(e for e in doc["timeline"] if e["record"] and e["record"]["offset"] == 7)
    assert [r["rule"] for r in request["rules"]] == ["ACCEPTED", "INITIAL"]  # the bad record closed nothing


def test_a_difference_next_to_a_control_record_names_the_possible_race(tmp_path: Path) -> None:
    closed = {"type": "channel-control", "channel": "WHATSAPP", "state": "CLOSED"}
    path = tmp_path / "order-42.jsonl"
    path.write_bytes(
        b"\n".join(
            [control_line(0, T0 - 300, "WHATSAPP", closed), line("prod.send-requests", 7, T0, REQUEST)]
        )
    )
    code, out, _ = explain_cli(path, "--json")
    doc = orjson.loads(out)
    assert code == 3  # nothing published in the file
    assert (
        "prod.send-requests[3]@7 and prod.channel-control[0]@0 are 300 ms apart: the processor reads "
        "channel-control apart from the inputs"
    ) in " ".join(doc["problems"])


def test_a_message_id_with_an_escape_sequence_is_shown_escaped_regression(tmp_path: Path) -> None:
    """Regression: the timeline printed the messageId (any string, from upstream) as it came, so an
    escape sequence in it reached the operator's terminal."""
    mid = "order\x1b[2J"
    request = orjson.dumps({**REQUEST, "messageId": mid}).decode()
    path = tmp_path / "odd.jsonl"
    path.write_bytes(line("prod.send-requests", 0, T0, request, key=mid) + b"\n")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", mid, "--from-file", str(path)])
    assert code == 3, err.getvalue()  # nothing published in the file: the replay's outputs differ
    assert "order\\x1b[2J" in out.getvalue()
    assert "\x1b" not in out.getvalue()
