"""The hot path's hand-written records and bytes agree with pydantic's, field for field and byte for byte.

``SendRequest.fingerprint``, ``trusted.command``/``outcome`` and their encoders write out by hand what
pydantic's serializer and validator would give, because the generic walk costs most of a request's
CPU in the processor. These properties hold them to the pydantic reference over random records, so a
field added to a model (or a change of its JSON form) fails here until the hand version follows.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as s

from stream_app.contracts import (
    AttemptEnd,
    AttemptSummary,
    Channel,
    CommandReason,
    Outcome,
    PreviousAttempt,
    Result,
    RetryCommand,
    SendRequest,
    Status,
    SuccessStatus,
    decode_request,
    encode,
    trusted,
)

CHANNEL_SPELLINGS = ["WHATSAPP", "whatsapp", "Rcs", "SMS", "viber"]
SUCCESS_SPELLINGS = ["ACCEPTED", "sent", "Delivered", "READ"]

json_values = s.recursive(
    s.none()
    | s.booleans()
    | s.integers(-(2**63), 2**63 - 1)
    | s.floats(allow_nan=False, allow_infinity=False)
    | s.text(max_size=8),
    lambda inner: s.lists(inner, max_size=3) | s.dictionaries(s.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)
json_objects = s.dictionaries(s.text(max_size=6), json_values, max_size=4)

#: Offsets and sub-millisecond digits, which the JSON form must normalise to UTC ``Z`` milliseconds.
instants = s.builds(
    lambda ms, us, minutes: (
        datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms, microseconds=us)
    ).astimezone(timezone(timedelta(minutes=minutes))),
    s.integers(0, 10**11),
    s.integers(0, 999),
    s.integers(-12 * 60, 14 * 60),
)
seconds = s.one_of(s.integers(1, 86_400), s.floats(0.001, 86_400.0))

steps = s.fixed_dictionaries(
    {"channel": s.sampled_from(CHANNEL_SPELLINGS)},
    optional={
        "fallbackAfter": seconds,
        "successStatus": s.sampled_from(SUCCESS_SPELLINGS),
        "content": json_objects,
    },
)


@s.composite
def request_bodies(draw: s.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messageId": draw(s.text(min_size=1, max_size=20)),
        "destination": "+" + draw(s.text("0123456789", min_size=8, max_size=15)),
        "channels": draw(s.lists(steps, min_size=1, max_size=8)),
    }
    optional: dict[str, Any] = {
        "type": s.sampled_from(["send", "SEND"]),
        "schemaVersion": s.just(1),
        "tenant": s.text(max_size=10) | s.none(),
        "simulation": s.booleans(),
        "campaignId": s.text(max_size=10) | s.none(),
        "metadata": json_objects,
        "requestedAt": instants.map(datetime.isoformat),
        "initialAttempt": s.fixed_dictionaries(
            {"sentAt": instants.map(datetime.isoformat)},
            optional={"providerMessageId": s.text(max_size=10) | s.none()},
        ),
        "sendWindow": s.fixed_dictionaries(
            {
                "timezone": s.sampled_from(["Europe/Rome", "UTC", "America/New_York"]),
                "from": s.sampled_from(["09:00", "22:30"]),
                "to": s.sampled_from(["20:00", "06:15"]),
            },
            optional={
                "days": s.lists(s.sampled_from(["MON", "tue", "Sat", "SUN"]), min_size=1, unique=True),
                "appliesTo": s.sampled_from(["FALLBACK", "all"]),
            },
        ),
    }
    for name, strategy in optional.items():
        if draw(s.booleans()):
            body[name] = draw(strategy)
    expiry = draw(s.sampled_from(["none", "ttl", "expiresAt"]))
    if expiry == "ttl":
        body["ttl"] = draw(seconds)
    elif expiry == "expiresAt":
        body["expiresAt"] = draw(instants).isoformat()
    return body


def reference_fingerprint(req: SendRequest) -> bytes:
    """The fingerprint as first defined: pydantic's JSON form minus requestedAt, sorted keys, blake2b."""
    # v1.1's sendWindow is left out when absent, so fingerprints stored before it existed still match.
    exclude = {"requested_at"} if req.send_window is not None else {"requested_at", "send_window"}
    body = req.__pydantic_serializer__.to_python(req, mode="json", by_alias=True, exclude=exclude)
    return hashlib.blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


@given(request_bodies())
def test_fingerprint_equals_the_pydantic_reference(body: dict[str, Any]) -> None:
    req = decode_request(orjson.dumps(body))
    assert isinstance(req, SendRequest)
    assert req.fingerprint() == reference_fingerprint(req)


def test_fingerprint_of_a_known_request_is_stable() -> None:
    """Stored states keep fingerprints: this digest was computed by the pydantic-serializer version."""
    req = decode_request(
        orjson.dumps(
            {
                "messageId": "m-1",
                "destination": "+393401234567",
                "channels": [{"channel": "WHATSAPP", "fallbackAfter": 60}, {"channel": "SMS"}],
                "expiresAt": "2026-04-09T10:15:00.5+02:00",
            }
        )
    )
    assert isinstance(req, SendRequest)
    assert req.fingerprint().hex() == reference_fingerprint(req).hex()
    assert req.fingerprint().hex() == "4fc8bde95928f838a6c0c212cfd60add"


previous_attempts = s.none() | s.builds(
    PreviousAttempt,
    attempt=s.integers(0, 7),
    channel=s.sampled_from(Channel),
    status=s.none() | s.sampled_from(Status),
)


@given(
    message_id=s.text(min_size=1, max_size=20),
    attempt=s.integers(0, 7),
    channel=s.sampled_from(Channel),
    destination=s.text(max_size=16),
    content=json_objects,
    reason=s.sampled_from(CommandReason),
    previous=previous_attempts,
    issued_at=instants,
    not_after=s.none() | instants,
    simulation=s.booleans(),
    tenant=s.none() | s.text(max_size=10),
    campaign_id=s.none() | s.text(max_size=10),
    deferred_from=s.none() | instants,
)
def test_trusted_command_equals_the_validated_one_and_encodes_to_the_same_bytes(**values: Any) -> None:
    fast = trusted.command(**values)
    validated = RetryCommand(command_id=f"{values['message_id']}:{values['attempt']}", **values)
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert trusted.encode_command(fast) == encode(validated)
    assert trusted.encode_command(validated) == encode(validated)


attempt_values = s.fixed_dictionaries(
    {
        "attempt": s.integers(0, 7),
        "channel": s.sampled_from(Channel),
        "issued_at": instants,
        "last_status": s.none() | s.sampled_from(Status),
        "ended_by": s.none() | s.sampled_from(AttemptEnd),
        "provider_message_id": s.none() | s.text(max_size=10),
        "status_times": s.none() | s.dictionaries(s.sampled_from(SuccessStatus), instants, max_size=4),
        "reasons": s.none() | s.lists(s.text(max_size=8), max_size=3),
    }
)


@given(
    message_id=s.text(min_size=1, max_size=20),
    tenant=s.none() | s.text(max_size=10),
    campaign_id=s.none() | s.text(max_size=10),
    result=s.sampled_from(Result),
    channel=s.none() | s.sampled_from(Channel),
    status=s.none() | s.sampled_from(Status),
    attempt_count=s.integers(0, 8),
    attempts=s.lists(attempt_values, max_size=4),
    reason=s.none() | s.text(max_size=20),
    requested_at=instants,
    completed_at=instants,
    duration_ms=s.integers(0, 10**11),
    metadata=json_objects,
)
def test_trusted_outcome_equals_the_validated_one_and_encodes_to_the_same_bytes(**values: Any) -> None:
    attempts = values.pop("attempts")
    fast = trusted.outcome(**values, attempts=[trusted.attempt_summary(**a) for a in attempts])
    validated = Outcome(**values, attempts=[AttemptSummary(**a) for a in attempts])
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert trusted.encode_outcome(fast) == encode(validated)
    assert trusted.encode_outcome(validated) == encode(validated)
