"""The processor's log lines: ``key=value`` events of the ``stream_app.runtime`` logger.

The format itself (``key=value`` or JSON, masking of destinations) is the same for every service and
lives in :mod:`stream_app.logs`; this module only names the runtime's logger.
"""

from __future__ import annotations

import logging
from typing import Any

from stream_app.logs import KeyValueFormatter, configure, event, kv, mask

__all__ = ["LOGGER", "KeyValueFormatter", "configure", "kv", "log", "mask"]

LOGGER = logging.getLogger("stream_app.runtime")


def log(level: int, name: str, /, **fields: Any) -> None:
    """Log the runtime event ``name`` with its fields."""
    event(LOGGER, level, name, **fields)
