"""Webhook body signatures: what the simulator signs, the receiver accepts; anything else is a mismatch."""

from __future__ import annotations

import pytest

from stream_app.gateway.signing import sign, verify

SECRET = b"s3cret"
BODY = b'{"customerMessageId":"m:0","channel":"SMS","deliveryStatus":"DELIVERED"}'


def test_a_signature_verifies_only_its_own_body() -> None:
    assert verify(SECRET, BODY, sign(SECRET, BODY))
    assert not verify(SECRET, BODY + b" ", sign(SECRET, BODY))
    assert not verify(b"other", BODY, sign(SECRET, BODY))
    assert not verify(SECRET, BODY, None)


@pytest.mark.parametrize("header", ["sha256=\xe9\xe9", "sha256=" + "é" * 64, "sha256=\u2603"])
def test_a_non_ascii_signature_is_a_mismatch_regression(header: str) -> None:
    """hmac.compare_digest raised TypeError on a non-ASCII str, so such a header was a 500 instead
    of a refused signature."""
    assert verify(SECRET, BODY, header) is False
