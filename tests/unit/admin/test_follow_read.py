"""How ``read_topic`` (``stream-app outcomes``, ``report``, ``dead-letters``) reads a topic."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream_app.admin import follow
from stream_app.config import Settings


class _Built(Exception):
    """Raised by the stand-in consumer once it has seen how it was built."""


def test_only_committed_records_are_read_regression(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under exactly_once the processor publishes outcomes in transactions: an aborted one (a fenced
    zombie, a crash mid-transaction) stays in the log, and a read_uncommitted reader showed and counted
    it next to the committed one, a second outcome of the message the contract says never appears."""
    built: dict[str, Any] = {}

    def consumer(**kwargs: Any) -> None:
        built.update(kwargs)
        raise _Built

    monkeypatch.setattr(follow, "AIOKafkaConsumer", consumer)

    async def first() -> None:
        records = follow.read_topic(Settings(), "outcomes")
        try:
            await anext(records)
        finally:
            await records.aclose()

    with pytest.raises(_Built):
        asyncio.run(first())
    assert built["isolation_level"] == "read_committed"
    assert built["group_id"] is None  # and still no consumer group: nobody's offsets move
