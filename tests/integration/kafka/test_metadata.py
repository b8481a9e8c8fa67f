"""``topic_partitions`` reads partition counts that a freshly started client does not have cached."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer

from stream_app.config import Settings
from stream_app.kafka.metadata import topic_partitions
from tests.support.kafka import create_topics, unique_prefix
from tests.support.mock_kafka import MOCK_PARTITIONS, auto_create, mock_cluster

try:
    import confluent_kafka  # noqa: F401  (only its presence matters here)

    _NO_MOCK = ""
except ImportError as exc:
    _NO_MOCK = f"confluent_kafka is not importable ({exc}); pip install -e '.[dev]'"


async def _counts(bootstrap: str) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        return await topic_partitions(consumer)
    finally:
        await consumer.stop()


async def test_topic_partitions_on_the_session_broker(kafka_bootstrap: str) -> None:
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix(), partitions=3)
    names = await create_topics(kafka_bootstrap, settings)
    counts = await _counts(kafka_bootstrap)
    assert {name: counts.get(name) for name in names} == dict.fromkeys(names, 3)


@pytest.mark.skipif(bool(_NO_MOCK), reason=_NO_MOCK)
async def test_partition_counts_seen_on_metadata_v1_semantics_regression() -> None:
    """The bug: counts came from the bootstrap's cache, empty where Metadata v1+ reads [] as no topic.

    librdkafka's mock answers as Apache Kafka does (Tansu answers [] with every topic and hid it);
    the processor's co-partitioning check, the dispatcher, the poller and ``outcomes`` saw 0 partitions.
    """
    with mock_cluster() as bootstrap:
        await auto_create(bootstrap, ["a", "b"])
        counts = await _counts(bootstrap)
    assert counts["a"] == counts["b"] == MOCK_PARTITIONS
