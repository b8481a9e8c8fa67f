"""Errors of the explain room; the CLI prints each as one line."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class ExplainError(StreamAppError):
    """Base of everything the explain room raises on purpose."""


class UnknownMessage(ExplainError):
    """No record of the messageId where it was looked for (its partition of the topics, or the file)."""


class ExportFileError(ExplainError):
    """The export file cannot be read or written at all; a broken LINE is reported, never raised."""
