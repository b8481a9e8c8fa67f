"""Errors of the demo."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class DemoFailed(StreamAppError):
    """The demo could not play its scenarios to the end; the message says which part failed."""
