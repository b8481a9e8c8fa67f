"""Errors of the report room."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class ReportError(StreamAppError):
    """A report cannot be made (a missing file, a bad option, a missing extra); one line for the CLI."""


class BadRecord(ValueError):
    """One input record is not an Outcome or LateStatus the report can read; ``reason`` is one line.

    Not a :class:`StreamAppError`: a bad record never stops a report, it is counted and shown with
    where it was (file line, or partition and offset), and the rest is still counted.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
