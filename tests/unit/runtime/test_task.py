"""PartitionTask on a real store in a temp dir, without a broker: one step for records and timers."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.config import Settings
from stream_app.contracts import to_ms
from stream_app.contracts.timefmt import MAX_SECONDS
from stream_app.fallback import Limits
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.task import PartitionTask, TaskConfig, limits_of
from stream_app.store import PartitionStore, input_offsets, uncommitted
from tests.unit.runtime.test_rebalance_races import NOW, request

S = Settings(topic_prefix="t.", app_id="app")
T = S.topics


def test_limits_from_settings_are_milliseconds() -> None:
    limits = limits_of(
        Settings(max_flow_seconds=3600, orphan_status_seconds=0.3, late_status_seconds=1, dedup_seconds=2)
    )
    assert limits == Limits(max_flow_ms=3_600_000, orphan_status_ms=300, late_status_ms=1000, dedup_ms=2000)


def _task(tmp_path: Path) -> PartitionTask:
    store = PartitionStore.open(tmp_path, T.changelog, 0)
    config = TaskConfig(T, limits_of(S), S.max_request_bytes, frozenset({T.retry_commands, T.outcomes}))
    return PartitionTask(0, store, config, Metrics())


def _rec(topic: str, offset: int, key: bytes | None, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    headers = [("traceparent", b"00-abc-def-01"), ("other", b"x")]
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, 0, headers)


def test_records_and_timers_share_one_step(tmp_path: Path) -> None:
    task = _task(tmp_path)
    try:
        ck = Checkpoint()
        tp = TopicPartition(T.send_requests, 0)
        task.on_records(tp, [_rec(T.send_requests, 4, b"m1", request("m1"))], NOW, ck)
        [cmd] = ck.outputs[0]
        assert (cmd.topic, cmd.partition, orjson.loads(cmd.value or b"")["commandId"]) == (
            T.retry_commands,
            0,
            "m1:0",
        )
        assert cmd.headers == [("traceparent", b"00-abc-def-01")]  # traceparent travels, nothing else
        assert ck.offsets[0] == {tp: 5}
        [(_, change)] = ck.changes[0].items()
        assert (change.req_offset, change.status_offset) == (4, -1)
        [record] = ck.changelog_records(0, T.changelog)
        assert input_offsets(record.headers) == (4, -1)
        task.store.flush(0)
        # 60 s later the WhatsApp step times out through the same step: SMS, no input offsets.
        ck2 = Checkpoint()
        assert task.fire_due(NOW + 60_000, 100, ck2) == 1
        [sms] = ck2.outputs[0]
        assert orjson.loads(sms.value or b"")["commandId"] == "m1:1" and sms.headers == []
        assert not ck2.offsets
        [timer_change] = ck2.changelog_records(0, T.changelog)
        assert input_offsets(timer_change.headers) == (-1, -1)
    finally:
        task.store.close()


def test_bad_records_are_dead_lettered_with_their_reason_and_the_offset_still_moves(tmp_path: Path) -> None:
    task = _task(tmp_path)
    try:
        ck = Checkpoint()
        tp = TopicPartition(T.send_requests, 0)
        bad = [
            _rec(T.send_requests, 0, b"k", None),
            _rec(T.send_requests, 1, b"k", b"{nope"),
            _rec(T.send_requests, 2, b"wrong", request("m2")),
            _rec(T.send_requests, 3, b"k", b"x" * (S.max_request_bytes + 1)),
        ]
        task.on_records(tp, bad, NOW, ck)
        reasons = [dict(o.headers)["__error.reason"].decode() for o in ck.outputs[0]]
        assert [o.topic for o in ck.outputs[0]] == [T.dead_letters] * 4
        assert reasons[0].startswith("record: value is empty")
        assert reasons[1].startswith("not valid JSON")
        assert reasons[2] == "key: must be the messageId 'm2', got 'wrong'"
        assert "STREAM_APP_MAX_REQUEST_BYTES" in reasons[3]
        assert ck.offsets[0] == {tp: 4} and not ck.changes
    finally:
        task.store.close()


def test_a_dead_letter_too_large_to_produce_drops_the_value_then_the_headers_regression(
    tmp_path: Path,
) -> None:
    """Regression: a dead letter over the producer's max_request_size (1 MiB here) failed every
    retry of the turn's produce, and its partition stalled. It now carries no value (and, when the
    input's own headers alone are too large, not them either), and says so in its reason."""
    task = _task(tmp_path)
    limit = 1024 * 1024  # max_record_bytes of the default 512 KiB STREAM_APP_MAX_REQUEST_BYTES
    try:
        ck = Checkpoint()
        tp = TopicPartition(T.send_requests, 0)
        just_fits = b"x" * (limit - 1024)  # its __error.* headers and overhead still fit
        too_large = b"x" * limit
        heavy = ConsumerRecord(
            T.send_requests, 0, 2, 0, 0, b"h", b"{nope", None, 0, 0, [("big", b"y" * limit)]
        )
        task.on_records(
            tp,
            [_rec(T.send_requests, 0, b"a", just_fits), _rec(T.send_requests, 1, b"b", too_large), heavy],
            NOW,
            ck,
        )
        fits, dropped, stripped = ck.outputs[0]
        assert [o.topic for o in ck.outputs[0]] == [T.dead_letters] * 3
        assert fits.value == just_fits and [k for k, _ in fits.headers][:2] == ["traceparent", "other"]
        assert dropped.value is None and [k for k, _ in dropped.headers][:2] == ["traceparent", "other"]
        reason = dict(dropped.headers)["__error.reason"].decode()
        assert reason.startswith(f"record: {limit} bytes, over the limit of {S.max_request_bytes}")
        assert reason.endswith(
            f"the value ({limit} bytes) is not carried: a dead letter may be at most {limit} bytes, "
            "read the record at its source offset"
        )
        assert stripped.value is None and "big" not in dict(stripped.headers)
        assert (
            "the value (5 bytes) and the record's own headers are not carried"
            in dict(stripped.headers)["__error.reason"].decode()
        )
        assert dict(stripped.headers)["__error.source.offset"] == b"2"
        assert ck.offsets[0] == {tp: 3}
    finally:
        task.store.close()


def test_a_dead_letter_with_a_huge_key_leaves_the_key_out_too_regression(tmp_path: Path) -> None:
    """Regression: the value and headers were left out, but a 1 MiB key still made the dead letter
    too large to produce (the input check measures the value only): the partition stalled as before.
    The key is left out last, and the reason says so."""
    task = _task(tmp_path)
    limit = 1024 * 1024
    try:
        ck = Checkpoint()
        tp = TopicPartition(T.send_requests, 0)
        huge_key = b"k" * limit
        task.on_records(tp, [_rec(T.send_requests, 0, huge_key, request("m1"))], NOW, ck)
        [dead] = ck.outputs[0]
        assert (dead.topic, dead.key, dead.value) == (T.dead_letters, None, None)
        reason = dict(dead.headers)["__error.reason"].decode()
        assert reason.startswith("key: must be the messageId 'm1', got 'kkkk")
        assert f"the record's own headers and the key ({limit} bytes) are not carried" in reason, reason
        assert "traceparent" not in dict(dead.headers)
        assert DefaultRecordBatchBuilder.estimate_size_in_bytes(dead.key, dead.value, dead.headers) <= limit
        assert ck.offsets[0] == {tp: 1}
    finally:
        task.store.close()


def test_a_header_without_a_value_is_taken_regression(tmp_path: Path) -> None:
    # Kafka allows a header without a value (aiokafka gives None). Compiled, copied_headers() was
    # typed for bytes only and raised a TypeError out of on_records() for any such record, outside
    # the dead-letter handling: the same record again after every restart.
    task = _task(tmp_path)
    try:
        ck = Checkpoint()
        tp = TopicPartition(T.send_requests, 0)
        trace = ("traceparent", b"00-abc-def-01")
        records = [
            _rec(T.send_requests, 0, b"m1", request("m1")),
            _rec(T.send_requests, 1, b"m2", request("m2")),
            _rec(T.send_requests, 2, b"k", b"{nope"),
        ]
        records[0].headers = [("x", None), ("traceparent", None)]
        records[1].headers = [("x", None), trace]
        records[2].headers = [("x", None)]
        task.on_records(tp, records, NOW, ck)
        first, second, dead = ck.outputs[0]
        assert first.topic == second.topic == T.retry_commands
        assert first.headers == []  # a traceparent without a value carries no trace
        assert second.headers == [trace]
        assert dead.topic == T.dead_letters and dead.headers[0] == ("x", None)  # the input's, untouched
        assert ck.offsets[0] == {tp: 3}
    finally:
        task.store.close()


_MID = st.sampled_from(["m1", "m2"])
_HEADER_VALUE = st.one_of(st.none(), st.binary(max_size=8), st.just(b"00-abc-def-01"))
_HEADERS = st.lists(st.tuples(st.sampled_from(["traceparent", "x", ""]), _HEADER_VALUE), max_size=3)


def _status_value(mid: str, status: str) -> bytes:
    return orjson.dumps({"messageId": mid, "attempt": 0, "channel": "WHATSAPP", "status": status})


_VALUE = st.one_of(
    st.none(),
    st.sampled_from([b"", b"null", b"[]", b"{}", b"\xff\xfe", b'{"messageId": 5}', b'"x"', b"1e999"]),
    st.binary(max_size=40),
    _MID.map(request),
    st.tuples(_MID, st.sampled_from(["DELIVERED", "ERROR", "delivered", "NOPE"])).map(
        lambda t: _status_value(*t)
    ),
)
_KEY = st.one_of(st.none(), st.sampled_from([b"", b"\xff", b"m1", b"m2"]))
_RECORD = st.tuples(st.booleans(), _KEY, _VALUE, _HEADERS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RECORD, min_size=1, max_size=12))
def test_no_record_of_either_input_stops_the_step(shapes: list[tuple[bool, Any, Any, Any]]) -> None:
    """Any key, value and headers an outside producer can write, on either input: each record is
    decided or dead-lettered with a reason, and the offset moves past all of them. (The compiled
    build once raised a TypeError out of on_records for a header without a value.)"""
    with tempfile.TemporaryDirectory() as tmp:
        task = _task(Path(tmp))
        try:
            ck = Checkpoint()
            by_topic: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
            for is_request, key, value, headers in shapes:
                topic = T.send_requests if is_request else T.delivery_status
                offset = len(by_topic.get(topic, []))
                rec = ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, 0, headers)
                by_topic.setdefault(topic, []).append(rec)
            for topic, records in by_topic.items():
                task.on_records(TopicPartition(topic, 0), records, NOW, ck)
            for out in ck.outputs[0]:
                if out.topic == T.dead_letters:
                    assert dict(out.headers)["__error.reason"]
            assert ck.offsets[0] == {TopicPartition(t, 0): len(r) for t, r in by_topic.items()}
        finally:
            task.store.close()


def test_a_flow_at_the_edges_of_time_still_ends_with_its_outcome(tmp_path: Path) -> None:
    """The last instant an input may name, plus the longest ttl, is still a time the outcome and the
    command's notAfter can carry; so is the first (Go's zero time)."""
    task = _task(tmp_path)
    try:
        last = "8999-12-31T23:59:59.999Z"
        body = orjson.loads(request("m1"))
        body.update(requestedAt=last, ttl=MAX_SECONDS, initialAttempt={"sentAt": last})
        first = orjson.loads(request("m2"))
        first.update(requestedAt="0001-01-01T00:00:00Z")
        ck = Checkpoint()
        records = [
            _rec(T.send_requests, 0, b"m1", orjson.dumps(body)),
            _rec(T.send_requests, 1, b"m2", orjson.dumps(first)),
        ]
        task.on_records(TopicPartition(T.send_requests, 0), records, NOW, ck)
        # m2 expired long ago: its outcome at once. m1 waits on its WhatsApp step, sent in year 8999.
        [m2] = [orjson.loads(o.value or b"") for o in ck.outputs[0]]
        assert (m2["messageId"], m2["result"], m2["requestedAt"]) == ("m2", "EXPIRED", "0001-01-01T00:00:00Z")
        task.store.flush(0)
        far = to_ms(datetime(9010, 6, 1, tzinfo=UTC))  # m1's step and then its ten-year ttl are over
        ck2 = Checkpoint()
        assert task.fire_due(far, 100, ck2) == 2  # m1's end, and the end of m2's dedup retention
        [m1] = [orjson.loads(o.value or b"") for o in ck2.outputs[0] if o.topic == T.outcomes]
        assert (m1["messageId"], m1["result"]) == ("m1", "EXPIRED")
        assert m1["attempts"][0]["issuedAt"] == last
    finally:
        task.store.close()


def test_a_change_a_status_caused_names_the_status_offset(tmp_path: Path) -> None:
    """The changelog header names the delivery-status offset too: a restore skips the change while
    that status is uncommitted, so the status, read again, meets the state it was decided against."""
    task = _task(tmp_path)
    try:
        sr, ds = TopicPartition(T.send_requests, 0), TopicPartition(T.delivery_status, 0)
        task.on_records(sr, [_rec(T.send_requests, 4, b"m1", request("m1"))], NOW, Checkpoint())
        task.store.flush(0)
        ck = Checkpoint()
        task.on_records(ds, [_rec(T.delivery_status, 9, b"m1", _status_value("m1", "ERROR"))], NOW + 1, ck)
        [change] = ck.changelog_records(0, T.changelog)
        assert input_offsets(change.headers) == (-1, 9)
        assert uncommitted(change.headers, 5, 9), "the status at offset 9 is not committed below 10"
        assert not uncommitted(change.headers, 5, 10)
    finally:
        task.store.close()


def test_a_flow_deleted_after_its_windows_leaves_a_tombstone_on_the_changelog(tmp_path: Path) -> None:
    """Without the tombstone the changelog keeps the ended flow for good: a restore from it brings
    the flow back (and the compacted topic never forgets a messageId)."""
    task = _task(tmp_path)
    try:
        ck = Checkpoint()
        task.on_records(
            TopicPartition(T.send_requests, 0), [_rec(T.send_requests, 0, b"m1", request("m1"))], NOW, ck
        )
        delivered = _rec(T.delivery_status, 0, b"m1", _status_value("m1", "DELIVERED"))
        task.on_records(TopicPartition(T.delivery_status, 0), [delivered], NOW + 1, ck)
        assert [o.topic for o in ck.outputs[0]] == [T.retry_commands, T.outcomes]
        task.store.flush(0)
        kept = max(S.dedup_seconds, S.late_status_seconds) * 1000
        ck2 = Checkpoint()
        assert task.fire_due(NOW + 1 + int(kept), 100, ck2) == 1
        assert task.store.get(b"m1") is None
        changelog = ck.changelog_records(0, T.changelog) + ck2.changelog_records(0, T.changelog)
        assert (changelog[-1].key, changelog[-1].value) == (b"m1", None)
        with PartitionStore.open(tmp_path / "fresh", T.changelog, 0) as fresh:
            for offset, rec in enumerate(changelog):
                fresh.apply_changelog(rec.key, rec.value, offset)
            fresh.flush()
            assert fresh.get(b"m1") is None and fresh.next_deadline() is None
    finally:
        task.store.close()


def test_a_timer_whose_state_cannot_be_read_is_disarmed_not_fired_every_turn(tmp_path: Path) -> None:
    task = _task(tmp_path)
    try:
        task.store.put(b"m1", b"\xffnot a flow state", NOW)
        task.store.flush(0)
        ck = Checkpoint()
        assert task.fire_due(NOW, 100, ck) == 0
        assert task.store.due(NOW, 100) == [], "the broken timer is still armed"
        [change] = ck.changelog_records(0, T.changelog)  # disarmed durably, not only in this store
        task.store.flush(1)
        assert task.fire_due(NOW + 60_000, 100, Checkpoint()) == 0
        assert task.store.next_deadline() is None and change.key == b"m1"
    finally:
        task.store.close()


def test_the_changelog_carries_a_keys_latest_state_of_the_turn(tmp_path: Path) -> None:
    """A request and its status in one turn: the one changelog record of the key is the state after
    both, or a restore brings back the running flow whose outcome is already out."""
    task = _task(tmp_path)
    try:
        ck = Checkpoint()
        sr, ds = TopicPartition(T.send_requests, 0), TopicPartition(T.delivery_status, 0)
        task.on_records(sr, [_rec(T.send_requests, 3, b"m1", request("m1"))], NOW, ck)
        delivered = _rec(T.delivery_status, 8, b"m1", _status_value("m1", "DELIVERED"))
        task.on_records(ds, [delivered], NOW + 1, ck)
        [record] = ck.changelog_records(0, T.changelog)
        assert input_offsets(record.headers) == (3, 8)
        with PartitionStore.open(tmp_path / "fresh", T.changelog, 0) as fresh:
            fresh.apply_changelog(record.key, record.value, 0)
            fresh.flush()
            assert fresh.get(b"m1") == task.store.get(b"m1")
            assert fresh.next_deadline() == task.store.next_deadline()
    finally:
        task.store.close()
