"""JSON bytes that keep every integer a record may carry, whatever its size.

JSON puts no bound on an integer, and the decoder (pydantic) reads any size exactly; orjson writes
only those from -2**63 to 2**64-1 and raises on the rest ("Integer exceeds 64-bit range"), while its
reader turns a larger one into a float. ``content`` and ``metadata`` are opaque and travel unchanged
(CONTRACT.md), so a request carrying a 25-digit reference as a number was dead-lettered.

:func:`dumps` is ``orjson.dumps`` (same bytes, same cost) and only when orjson refuses does it walk
the value and write each wider integer as its digits. :func:`loads` reads such bytes back exactly.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic_core import from_json

#: The integers orjson writes itself: a signed or an unsigned 64-bit value.
_SMALLEST = -(2**63)
_LARGEST = 2**64 - 1


def _digits(value: Any) -> Any:
    """``value`` with every integer orjson cannot write as a Fragment of its digits."""
    if isinstance(value, dict):
        return {k: _digits(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_digits(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _SMALLEST <= value <= _LARGEST:
        return orjson.Fragment(str(int(value)))
    return value


def dumps(value: Any, option: int = 0) -> bytes:
    """``orjson.dumps(value, option=option)``, also for integers beyond 64 bits (written exactly)."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        # Rare (an integer beyond 64 bits): the walk costs only such records. Any other refusal
        # (a type orjson does not know) raises again here, as before.
        return orjson.dumps(_digits(value), option=option)


def loads(data: bytes) -> Any:
    """The value of JSON bytes, integers of any size exact (pydantic's reader, not orjson's)."""
    return from_json(data)
