"""Every consumer that reads what the processor publishes in transactions reads ``read_committed``.

Under ``exactly_once`` the processor writes ``retry-commands`` (with outcomes, dead letters and the
changelog) in Kafka transactions. A consumer with Kafka's default ``isolation.level`` (aiokafka's
too), ``read_uncommitted``, also reads the records of transactions that are still open and of
aborted ones: commands the processor never published (docs/semantics.md: "consumers reading with
isolation.level=read_committed see no repeats").
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from stream_app.config import Settings
from stream_app.gateway import dispatcher as dispatcher_module
from stream_app.gateway.settings import GatewaySettings


class _Built(Exception):
    """Raised by the fake consumer once the dispatcher's group consumer has been built."""


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_dispatcher_reads_commands_read_committed_regression(
    guarantee: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher's group consumer of retry-commands used aiokafka's default read_uncommitted:
    under exactly_once it sent the gateway commands of aborted (and not yet committed) transactions."""
    settings = Settings(state_dir=Path("unused"), processing_guarantee=guarantee)
    t = settings.topics
    built: list[dict[str, Any]] = []

    class FakeConsumer:
        def __init__(self, *topics: str, **kwargs: Any) -> None:
            built.append(kwargs)
            if kwargs.get("group_id"):
                raise _Built

    async def nothing(*_args: Any, **_kwargs: Any) -> None:
        return None

    async def counts(_consumer: Any) -> dict[str, int]:
        return dict.fromkeys(
            [t.delivery_status, t.dead_letters, t.channel_control, t.retry_commands, t.sentlog], 4
        )

    @contextlib.asynccontextmanager
    async def producer(_settings: Settings) -> AsyncIterator[None]:
        yield None

    monkeypatch.setattr(dispatcher_module, "AIOKafkaConsumer", FakeConsumer)
    monkeypatch.setattr(dispatcher_module, "start_client", nothing)
    monkeypatch.setattr(dispatcher_module, "stop_client", nothing)
    monkeypatch.setattr(dispatcher_module, "topic_partitions", counts)
    monkeypatch.setattr(dispatcher_module, "started_producer", producer)
    gateway = GatewaySettings(url="http://127.0.0.1:1", dispatcher_metrics_port=0)
    with pytest.raises(_Built):
        await dispatcher_module.run_dispatcher(settings, gateway)
    group = [kwargs for kwargs in built if kwargs.get("group_id")]
    assert len(group) == 1
    assert group[0]["group_id"] == f"{settings.app_id}-dispatcher"
    assert group[0].get("isolation_level") == "read_committed"
