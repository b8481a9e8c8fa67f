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


class _Partitions:
    """A stand-in consumer for ``_seek_to_end``: what ListOffsets(latest) and a fetch answer say."""

    def __init__(self, listed: int, highwater: int, stable: int | None, fetched_to: int) -> None:
        self.listed, self.hw, self.stable, self.fetched_to = listed, highwater, stable, fetched_to
        self.pos = -1
        self.fetched = False

    async def seek_to_end(self, *tps: Any) -> None:
        self.pos = self.listed

    def highwater(self, tp: Any) -> int | None:
        return self.hw if self.fetched else None

    def last_stable_offset(self, tp: Any) -> int | None:
        return self.stable if self.fetched else None

    async def getmany(self, timeout_ms: int) -> dict[Any, list[Any]]:
        self.fetched, self.pos = True, max(self.pos, self.fetched_to)
        return {}

    async def position(self, tp: Any) -> int:
        return self.pos

    def seek(self, tp: Any, offset: int) -> None:
        self.pos = offset


@pytest.mark.parametrize(
    ("answers", "start"),
    [
        # Tansu: ListOffsets says the last batch's base + 1 (1); the fetch says the end (11).
        pytest.param(_Partitions(listed=1, highwater=11, stable=11, fetched_to=11), 11, id="tansu"),
        # Kafka read_committed: ListOffsets says the last stable offset (5) while a transaction is
        # open up to the high watermark (8); its records are shown once it commits.
        pytest.param(
            _Partitions(listed=5, highwater=8, stable=5, fetched_to=5), 5, id="kafka open transaction"
        ),
        # A broker that gives no last stable offset (-1, None): the high watermark.
        pytest.param(_Partitions(listed=1, highwater=4, stable=-1, fetched_to=4), 4, id="no lso"),
        pytest.param(_Partitions(listed=1, highwater=4, stable=None, fetched_to=1), 4, id="old fetch"),
        # Never back: the fetch answer is older than what ListOffsets said.
        pytest.param(_Partitions(listed=9, highwater=7, stable=7, fetched_to=9), 9, id="stale answer"),
    ],
)
def test_following_from_now_starts_at_the_end_a_fetch_reports_regression(
    answers: _Partitions, start: int
) -> None:
    """``outcomes --follow`` on Tansu printed the rest of each partition's last batch of old records:
    ListOffsets(latest) is not the end there. The end is the one a fetch answer reports (the last
    stable offset under read_committed, as Kafka's ListOffsets says), never before ListOffsets'."""
    tp = follow.TopicPartition("outcomes", 0)
    asyncio.run(follow._seek_to_end(answers, [tp], "outcomes"))  # type: ignore[arg-type]
    assert answers.pos == start
