"""Starting a long-running service (processor, dispatcher, webhook, simulator...) as an asyncio task.

Every service takes a ``ready`` event it sets once it serves. Whoever starts one in-process (the
demo, test helpers) must tell four ends apart: ready; failed at start (raise *its* error, e.g. "cannot
reach Kafka"); returned without ever being ready; or neither within a time limit.
"""

from __future__ import annotations

import asyncio

from stream_app.errors import ServiceStartFailed


async def wait_started(
    task: asyncio.Task[None], ready: asyncio.Event, what: str, limit: float = 60.0
) -> None:
    """Return once ``ready`` is set; raise the task's own error if it dies first.

    :class:`ServiceStartFailed` when it returns without being ready or is not ready within
    ``limit`` seconds (the task is left running in that case: stopping it is the caller's job).
    """
    waiter = asyncio.create_task(ready.wait())
    try:
        done, _ = await asyncio.wait({waiter, task}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
    if ready.is_set():
        return
    if task in done:
        task.result()  # raises the service's own start-up error
        raise ServiceStartFailed(f"the {what} stopped before it was ready")
    raise ServiceStartFailed(f"the {what} was not ready after {limit:g} s")
