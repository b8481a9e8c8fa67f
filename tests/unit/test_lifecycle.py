"""wait_started tells apart: ready, failed at start, returned without being ready, not ready in time."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.errors import ServiceStartFailed
from stream_app.lifecycle import wait_started


class BrokerDown(Exception):
    pass


async def test_returns_once_the_service_is_ready() -> None:
    ready, stop = asyncio.Event(), asyncio.Event()

    async def service() -> None:
        ready.set()
        await stop.wait()

    task = asyncio.create_task(service())
    await wait_started(task, ready, "svc")
    assert not task.done()
    stop.set()
    await task


async def test_raises_the_services_own_start_up_error() -> None:
    async def service() -> None:
        raise BrokerDown("cannot reach Kafka")

    task = asyncio.create_task(service())
    with pytest.raises(BrokerDown, match="cannot reach Kafka"):
        await wait_started(task, asyncio.Event(), "svc")


async def test_a_service_that_returns_without_being_ready_is_a_failure() -> None:
    """Regression: the test helpers' copies then indexed an empty holder (IndexError)."""

    async def service() -> None:
        return None

    task = asyncio.create_task(service())
    with pytest.raises(ServiceStartFailed, match="the svc stopped before it was ready"):
        await wait_started(task, asyncio.Event(), "svc")


async def test_a_service_never_ready_times_out_instead_of_hanging() -> None:
    """Regression: the copies without a limit waited for ever on a service that never got ready."""
    stop = asyncio.Event()
    task = asyncio.create_task(stop.wait())
    with pytest.raises(ServiceStartFailed, match=r"the svc was not ready after 0\.05 s"):
        await wait_started(task, asyncio.Event(), "svc", 0.05)
    assert not task.done()
    stop.set()
    await task
