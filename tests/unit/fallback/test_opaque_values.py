"""``content`` and ``metadata`` are opaque: any JSON the request carries travels on unchanged.

CONTRACT.md: "`content` is opaque to the processor and travels to the command unchanged", and
``metadata`` is "copied to the outcome". JSON puts no bound on an integer (a bank's 25-digit
reference, a 128-bit id written as a number), while orjson writes only those that fit 64 bits.
"""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.contracts import decode_request, encode
from stream_app.contracts.trusted import encode_command, encode_outcome
from tests.unit.fallback.driver import MINUTE, Driver, request

#: Just past what orjson writes: 2**64 and below -2**63, and a 30-digit reference.
WIDE: dict[str, Any] = {
    "u": 2**64,
    "i": -(2**63) - 1,
    "ref": 123456789012345678901234567890,
    "nested": [2**100],
}


def test_content_and_metadata_with_integers_beyond_64_bits_travel_unchanged_regression() -> None:
    """Such a request was dead-lettered ("processor: JSONEncodeError: Integer exceeds 64-bit range"):
    a valid request lost. Every command carries its step's content, the outcome the metadata, with
    the integers exact (the later steps' content comes back from the stored state)."""
    channels = [
        {"channel": "WHATSAPP", "fallbackAfter": 60, "content": {"w": WIDE}},
        {"channel": "SMS", "content": {"s": 2**80, "text": "ciao"}},
    ]
    d = Driver()
    d.send(request(channels=channels, metadata={"m": WIDE}))
    assert d.dead_letters == []
    d.advance(MINUTE)
    d.drain()
    assert d.dead_letters == []
    assert [c.content for c in d.commands] == [{"w": WIDE}, {"s": 2**80, "text": "ciao"}]
    assert d.outcome.metadata == {"m": WIDE}
    wire = encode_command(d.commands[0])
    assert b'"u":18446744073709551616' in wire
    assert b'"ref":123456789012345678901234567890' in wire
    assert b'"nested":[1267650600228229401496703205376]' in encode_outcome(d.outcome)


def test_a_repeat_of_a_request_with_integers_beyond_64_bits_is_no_conflict_regression() -> None:
    """The fingerprint of such a request raised too; a repeat must issue nothing and dead-letter nothing."""
    d = Driver()
    req = request(channels=[{"channel": "SMS", "content": {"ref": 2**70}}])
    d.send(req)
    assert len(d.commands) == 1
    assert d.send(req) == ()
    assert d.dead_letters == []


def test_wire_bytes_with_integers_beyond_64_bits_decode_and_encode_exactly_regression() -> None:
    """From the producer's bytes to the command's bytes, the number's digits are the same."""
    raw = (
        b'{"messageId":"m1","destination":"+393401234567",'
        b'"channels":[{"channel":"SMS","content":{"ref":123456789012345678901234567890}}]}'
    )
    req = decode_request(raw)
    assert b'"ref":123456789012345678901234567890' in encode(req)
    assert orjson.loads(encode(req))["destination"] == "+393401234567"
