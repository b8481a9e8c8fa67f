"""The header every changelog record carries: the input offsets its state change came from.

``stream-app.input`` = ``b"<send-requests offset>,<delivery-status offset>"`` (``-1``: no input of
that topic; both ``-1``: a timer change). A restore skips a record whose input offset was never
committed, because that input will be processed again from the committed offset and must meet the
state it was decided against (DESIGN.md, checkpoint order).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Changelog header naming the input offsets a state change came from.
INPUT_HEADER = "stream-app.input"


def input_header(req_offset: int, status_offset: int) -> tuple[str, bytes]:
    """The header of a change decided from these input offsets."""
    return (INPUT_HEADER, f"{req_offset},{status_offset}".encode())


def input_offsets(headers: Iterable[tuple[str, bytes]]) -> tuple[int, int] | None:
    """The ``(send-requests, delivery-status)`` offsets of the header; None when absent or unreadable."""
    for name, value in headers:
        if name == INPUT_HEADER:
            try:
                req, st = value.split(b",", 1)
                return int(req), int(st)
            except ValueError:
                return None
    return None
