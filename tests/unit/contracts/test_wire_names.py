"""Only the camelCase names of CONTRACT.md are fields on the wire; any other name is an unknown field.

CONTRACT.md: "JSON field names are camelCase. Unknown fields are ignored (forward compatibility)."
The models also take their Python (snake_case) names, for code that builds them; the decoders read
those as fields too, so a record carrying, say, a gateway's own ``status_code`` text was refused.
"""

from __future__ import annotations

import orjson
import pytest

from stream_app.contracts import (
    Channel,
    InvalidRecord,
    Status,
    decode_command,
    decode_control,
    decode_outcome,
    decode_request,
    decode_status,
    encode,
)

DEST = "+393401234567"


def test_snake_case_names_are_unknown_fields_of_a_status_regression() -> None:
    raw = orjson.dumps(
        {
            "messageId": "m1",
            "channel": "SMS",
            "status": "DELIVERED",
            "status_code": "n/a",
            "occurred_at": 1712650000,
            "provider_message_id": 42,
            "message_id": "other",
        }
    )
    st = decode_status(raw)
    assert (st.message_id, st.channel, st.status) == ("m1", Channel.SMS, Status.DELIVERED)
    assert (st.status_code, st.occurred_at, st.provider_message_id) == (None, None, None)


def test_snake_case_names_are_unknown_fields_of_a_request_regression() -> None:
    body = {
        "messageId": "m1",
        "destination": DEST,
        "channels": [{"channel": "SMS", "fallback_after": "soon", "success_status": "SENT"}],
        "ttl": 60,
        "expires_at": "2026-04-09T10:15:00Z",
        "campaign_id": "not-this-one",
    }
    req = decode_request(orjson.dumps(body))
    assert req.ttl == 60 and req.expires_at is None and req.campaign_id is None
    step = req.channels[0]
    assert step.fallback_after is None and step.success_status == "DELIVERED"
    cancel = decode_request(b'{"type": "cancel", "messageId": "m1", "message_id": 7}')
    assert cancel.message_id == "m1"


def test_snake_case_names_alone_do_not_make_a_record_regression() -> None:
    """``message_id`` is not ``messageId``: a record with only the former has no messageId."""
    status = b'{"message_id": "m1", "channel": "SMS", "status": "SENT"}'
    request = b'{"message_id": "m1", "destination": "+393401234567", "channels": [{"channel": "SMS"}]}'
    with pytest.raises(InvalidRecord, match=r"^messageId: required$"):
        decode_status(status)
    with pytest.raises(InvalidRecord, match=r"^messageId: required$"):
        decode_request(request)


def test_outputs_and_control_read_back_by_their_wire_names_only_regression() -> None:
    control = decode_control(b'{"channel": "SMS", "state": "CLOSED", "in_flight": "FALLBACK"}')
    assert control.in_flight == "WAIT"
    outcome = decode_outcome(
        b'{"type": "outcome", "messageId": "m1", "result": "FAILED", "attemptCount": 0, "attempt_count": 9,'
        b' "requestedAt": "2026-04-09T08:15:00Z", "completedAt": "2026-04-09T08:15:00Z", "durationMs": 0}'
    )
    assert outcome.attempt_count == 0
    command = decode_command(
        b'{"type": "command", "commandId": "m1:0", "messageId": "m1", "attempt": 0, "channel": "SMS",'
        b' "destination": "+393401234567", "reason": "INITIAL", "issuedAt": "2026-04-09T08:15:00Z",'
        b' "not_after": "2026-04-09T08:16:00Z"}'
    )
    assert command.not_after is None
    assert b"not_after" not in encode(command)
