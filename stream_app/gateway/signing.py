"""HMAC-SHA256 signatures of webhook bodies, shared by the simulator (signs) and the receiver (checks).

The header carries ``sha256=<hex digest of the raw body>`` keyed with the shared secret, the scheme
GitHub and most gateways use; comparing with :func:`hmac.compare_digest` keeps it constant-time.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature"
PREFIX = "sha256="


def sign(secret: bytes, body: bytes) -> str:
    """The header value for ``body``."""
    return PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of ``body`` under ``secret``."""
    if not header or not header.startswith(PREFIX):
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (TypeError, a 500), and a
    # header may carry any byte. Such a header can never equal the hex digest: a plain mismatch.
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))
