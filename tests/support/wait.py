"""Wait on a condition, with a bound: how a test waits, never a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: Default bound: far past what any condition here takes on a busy two-core machine.
WAIT_S = 30.0


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:  # noqa: ASYNC109
    """Return as soon as ``check()`` is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)
