"""The changelog record of a state change: its header, and the rule a restore skips records by.

The value is :func:`stream_app.store.codec.changelog_value` (the state and its timer). The header
``stream-app.input`` = ``b"<send-requests offset>,<delivery-status offset>"`` names the inputs the
change came from (``-1``: no input of that topic; both ``-1``: a timer change). A restore skips a
record whose input offset was never committed (:func:`uncommitted`), because that input will be
processed again from the committed offset and must meet the state it was decided against
(DESIGN.md, checkpoint order). Record, header and rule live here together, with the store.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Headers as the consumer hands them over: Kafka allows one without a value, which aiokafka gives as
#: None. Typed so, the compiled build (stream_app/compiled.py) reads such a record as unreadable,
#: as the pure one does, instead of raising a TypeError in the restore.
ReadHeaders = Iterable[tuple[str, bytes | None]]

#: Changelog header naming the input offsets a state change came from.
INPUT_HEADER = "stream-app.input"


def input_header(req_offset: int, status_offset: int) -> tuple[str, bytes]:
    """The header of a change decided from these input offsets."""
    return (INPUT_HEADER, f"{req_offset},{status_offset}".encode())


def input_offsets(headers: ReadHeaders) -> tuple[int, int] | None:
    """The ``(send-requests, delivery-status)`` offsets of the header; None when absent or unreadable."""
    for name, value in headers:
        if name == INPUT_HEADER:
            if value is None:
                return None
            try:
                req, st = value.split(b",", 1)
                return int(req), int(st)
            except ValueError:
                return None
    return None


def uncommitted(headers: ReadHeaders, req_committed: int, status_committed: int) -> bool:
    """True when the record's input was not committed: a restore skips it (the input comes again)."""
    src = input_offsets(headers)
    return src is not None and (src[0] >= req_committed or src[1] >= status_committed)
