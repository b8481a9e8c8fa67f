"""Output encoding (camelCase, ``schemaVersion: 1``, UTC ``Z``), round trips, and the request fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from stream_app.contracts import (
    AttemptEnd,
    AttemptSummary,
    Channel,
    CommandReason,
    InvalidRecord,
    LateStatus,
    Outcome,
    PreviousAttempt,
    Result,
    RetryCommand,
    SendRequest,
    Status,
    decode_command,
    decode_outcome,
    decode_request,
    encode,
    format_ms,
    from_ms,
    to_json,
    to_ms,
)

ROME = timezone(timedelta(hours=2))


def command() -> RetryCommand:
    return RetryCommand(
        command_id="m-1:1",
        message_id="m-1",
        attempt=1,
        channel=Channel.RCS,
        destination="+393401234567",
        content={"agentId": 1, "templateId": 10},
        reason=CommandReason.FAILED,
        previous=PreviousAttempt(attempt=0, channel=Channel.WHATSAPP, status=Status.REJECTED),
        issued_at=datetime(2026, 4, 9, 10, 15, 1, tzinfo=ROME),
        not_after=datetime(2026, 4, 9, 11, 15, tzinfo=ROME),
        tenant="banca-adriatica",
    )


def outcome() -> Outcome:
    return Outcome(
        message_id="m-1",
        tenant="banca-adriatica",
        campaign_id="txn-2026-04",
        result=Result.SUCCEEDED,
        channel=Channel.SMS,
        status=Status.DELIVERED,
        attempt_count=2,
        attempts=[
            AttemptSummary(
                attempt=0,
                channel=Channel.WHATSAPP,
                issued_at=datetime(2026, 4, 9, 10, 15, 0, 250_000, tzinfo=ROME),
                last_status=Status.REJECTED,
                ended_by=AttemptEnd.FAILED,
            ),
            AttemptSummary(
                attempt=1,
                channel=Channel.SMS,
                issued_at=datetime(2026, 4, 9, 10, 15, 1, tzinfo=ROME),
                last_status=Status.DELIVERED,
                ended_by=AttemptEnd.SUCCEEDED,
            ),
        ],
        requested_at=datetime(2026, 4, 9, 10, 15, tzinfo=ROME),
        completed_at=datetime(2026, 4, 9, 10, 20, 4, 211_000, tzinfo=ROME),
        duration_ms=304_211,
        metadata={"anything": "copied"},
    )


def late() -> LateStatus:
    return LateStatus(
        message_id="m-1",
        attempt=0,
        channel=Channel.WHATSAPP,
        status=Status.DELIVERED,
        occurred_at=datetime(2026, 4, 9, 10, 30, tzinfo=ROME),
        double_delivery=True,
    )


def test_command_is_camel_case_with_schema_version_and_utc_z() -> None:
    assert orjson.loads(encode(command())) == {
        "type": "command",
        "schemaVersion": 1,
        "commandId": "m-1:1",
        "messageId": "m-1",
        "attempt": 1,
        "channel": "RCS",
        "destination": "+393401234567",
        "content": {"agentId": 1, "templateId": 10},
        "reason": "FAILED",
        "previous": {"attempt": 0, "channel": "WHATSAPP", "status": "REJECTED"},
        "issuedAt": "2026-04-09T08:15:01Z",
        "notAfter": "2026-04-09T09:15:00Z",
        "simulation": False,
        "tenant": "banca-adriatica",
    }


def test_outcome_encoding_keeps_milliseconds_and_leaves_absent_optionals_out() -> None:
    out = orjson.loads(encode(outcome()))
    assert out["type"] == "outcome" and out["schemaVersion"] == 1
    assert out["attempts"][0] == {
        "attempt": 0,
        "channel": "WHATSAPP",
        "issuedAt": "2026-04-09T08:15:00.250Z",
        "lastStatus": "REJECTED",
        "endedBy": "FAILED",
    }
    assert out["completedAt"] == "2026-04-09T08:20:04.211Z"
    assert out["durationMs"] == 304_211 and out["attemptCount"] == 2
    assert "reason" not in out  # None optionals are left out, not written as null


def test_late_status_encoding() -> None:
    assert orjson.loads(encode(late())) == {
        "type": "late-status",
        "schemaVersion": 1,
        "messageId": "m-1",
        "attempt": 0,
        "channel": "WHATSAPP",
        "status": "DELIVERED",
        "occurredAt": "2026-04-09T08:30:00Z",
        "doubleDelivery": True,
    }


def test_to_json_is_what_encode_writes() -> None:
    assert orjson.dumps(to_json(outcome())) == encode(outcome())


def test_output_records_round_trip() -> None:
    assert decode_command(encode(command())) == command()
    assert decode_outcome(encode(outcome())) == outcome()
    assert decode_outcome(encode(late())) == late()


def test_outcome_type_discriminates_outcome_and_late_status() -> None:
    assert isinstance(decode_outcome(encode(outcome())), Outcome)
    assert isinstance(decode_outcome(encode(late())), LateStatus)
    with pytest.raises(InvalidRecord) as info:
        decode_outcome(b'{"type": "verdict", "messageId": "m"}')
    assert info.value.reason == "type: must be 'outcome' or 'late-status'"


def test_outcome_with_a_missing_field() -> None:
    body = orjson.loads(encode(outcome()))
    del body["completedAt"]
    with pytest.raises(InvalidRecord) as info:
        decode_outcome(orjson.dumps(body))
    assert info.value.reason == "completedAt: required"


def test_command_with_unknown_reason() -> None:
    body = orjson.loads(encode(command()))
    body["reason"] = "BORED"
    with pytest.raises(InvalidRecord) as info:
        decode_command(orjson.dumps(body))
    assert info.value.reason == "reason: Input should be 'INITIAL', 'FAILED', 'TIMEOUT' or 'SKIPPED'"


def test_send_request_output_is_canonical() -> None:
    req = decode_request(
        b'{"messageId":"m","destination":"+393401234567","channels":[{"channel":"sms"}],'
        b'"requestedAt":"2026-04-09T10:15:00+02:00"}'
    )
    assert orjson.loads(encode(req)) == {
        "type": "send",
        "schemaVersion": 1,
        "messageId": "m",
        "destination": "+393401234567",
        "channels": [{"channel": "SMS", "successStatus": "DELIVERED", "content": {}}],
        "simulation": False,
        "metadata": {},
        "requestedAt": "2026-04-09T08:15:00Z",
    }
    assert decode_request(encode(req)) == req


# ---------------------------------------------------------------------------------------- fingerprint


def request(**overrides: Any) -> SendRequest:
    body: dict[str, Any] = {
        "messageId": "m-1",
        "destination": "+393401234567",
        "channels": [
            {"channel": "WHATSAPP", "fallbackAfter": 60},
            {"channel": "SMS", "content": {"text": "hi"}},
        ],
        "requestedAt": "2026-04-09T10:15:00+02:00",
    }
    body.update(overrides)
    req = decode_request(orjson.dumps(body))
    assert isinstance(req, SendRequest)
    return req


def test_fingerprint_is_16_bytes() -> None:
    assert len(request().fingerprint()) == 16


def test_fingerprint_ignores_requested_at() -> None:
    assert request().fingerprint() == request(requestedAt="2026-04-10T00:00:00Z").fingerprint()


def test_fingerprint_ignores_spelling_that_decodes_to_the_same_request() -> None:
    """Case of channel names, unknown fields and key order do not make a repeat a conflict."""
    other = request(
        channels=[
            {"channel": "whatsapp", "fallbackAfter": 60.0},
            {"content": {"text": "hi"}, "channel": "Sms"},
        ],
        newField=1,
    )
    assert request().fingerprint() == other.fingerprint()


@pytest.mark.parametrize(
    "overrides",
    [
        {"destination": "+393401234568"},
        {
            "channels": [
                {"channel": "WHATSAPP", "fallbackAfter": 61},
                {"channel": "SMS", "content": {"text": "hi"}},
            ]
        },
        {
            "channels": [
                {"channel": "WHATSAPP", "fallbackAfter": 60},
                {"channel": "SMS", "content": {"text": "ho"}},
            ]
        },
        {"ttl": 3600},
        {"simulation": True},
        {"metadata": {"k": "v"}},
        {"tenant": "other"},
    ],
    ids=["destination", "fallbackAfter", "content", "ttl", "simulation", "metadata", "tenant"],
)
def test_fingerprint_differs_when_anything_else_differs(overrides: dict[str, Any]) -> None:
    assert request().fingerprint() != request(**overrides).fingerprint()


# ------------------------------------------------------------------------------------------ time helpers


def test_time_helpers_are_utc_milliseconds() -> None:
    ms = to_ms(datetime(2026, 4, 9, 10, 15, 0, 123_000, tzinfo=ROME))
    assert ms == 1_775_722_500_123
    assert from_ms(ms) == datetime(2026, 4, 9, 8, 15, 0, 123_000, tzinfo=UTC)
    assert format_ms(ms) == "2026-04-09T08:15:00.123Z"
    assert format_ms(ms - 123) == "2026-04-09T08:15:00Z"
