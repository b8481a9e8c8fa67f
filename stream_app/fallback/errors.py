"""Errors of the fallback room."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class FallbackError(StreamAppError):
    """Base class of everything the fallback room raises."""


class StateDecodeError(FallbackError):
    """Stored flow-state bytes cannot be read: unknown version, truncated or corrupt.

    The message is one line naming what is wrong, so a restore can log it and dead-letter the record.
    """
