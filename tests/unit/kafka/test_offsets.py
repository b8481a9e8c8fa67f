"""Offsets by time: a time before 1970 reads from the start instead of failing. No broker: aiokafka's
own consumer is used unstarted, with its fetcher (what would ask the broker) replaced by a stub."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndTimestamp, TopicPartition

from stream_app.admin.follow import _seek_to_time
from stream_app.cli.report import parse_when
from stream_app.explain.scan import _offsets_at
from stream_app.kafka.offsets import offsets_at_time

TP = TopicPartition("outcomes", 0)


class Fetcher:
    """Answers offset lookups as a broker with one record, offset 7 at epoch ms 5, would."""

    def __init__(self) -> None:
        self.asked: list[dict[TopicPartition, int]] = []

    async def get_offsets_by_times(
        self, timestamps: dict[TopicPartition, int], timeout_ms: int
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        self.asked.append(dict(timestamps))
        return {tp: OffsetAndTimestamp(7, 5) if ts <= 5 else None for tp, ts in timestamps.items()}


@pytest.fixture
async def consumer() -> Any:
    c = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    c._fetcher = Fetcher()  # type: ignore[assignment]
    yield c
    c._fetcher = None
    await c.stop()


async def test_since_before_1970_was_a_value_error_not_a_kafka_error_regression(consumer: Any) -> None:
    """``report``/``explain --since 1969-...``: aiokafka raised ValueError ("target time cannot be
    negative"), which read_topic and explain's scan only catch as KafkaError: a traceback. Both
    readers by time now ask through offsets_at_time, for 0: from the start."""
    since = parse_when("1969-12-31T00:00:00Z", "--since")
    assert since < 0  # a time the CLI accepts

    seeks: list[tuple[TopicPartition, int]] = []
    consumer.seek = lambda tp, offset: seeks.append((tp, offset))
    await _seek_to_time(consumer, [TP], since)  # report's and outcomes' read_topic
    assert (consumer._fetcher.asked, seeks) == ([{TP: 0}], [(TP, 7)])
    assert await _offsets_at(consumer, [TP], since) == {TP: 7}  # explain's scan
    assert consumer._fetcher.asked[-1] == {TP: 0}


async def test_offsets_at_time_asks_a_time_after_1970_as_given(consumer: Any) -> None:
    assert await offsets_at_time(consumer, [TP], 5) == {TP: OffsetAndTimestamp(7, 5)}
    assert await offsets_at_time(consumer, [TP], 6) == {TP: None}
    assert await offsets_at_time(consumer, [TP], -1) == {TP: OffsetAndTimestamp(7, 5)}
    assert consumer._fetcher.asked == [{TP: 5}, {TP: 6}, {TP: 0}]
