"""The session harness itself: the shared broker, the topic helpers and the transactions probe."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from stream_app.config import Settings
from stream_app.contracts.catalogue import CATALOGUE
from tests.support.broker import docker_unavailable_reason
from tests.support.kafka import consume_until, create_topics, produce, unique_prefix


def test_unique_prefixes_differ() -> None:
    prefixes = {unique_prefix() for _ in range(1000)}
    assert len(prefixes) == 1000
    assert all(p[0].isalpha() and p.endswith(".") for p in prefixes)


async def test_session_broker_round_trip(kafka_bootstrap: str) -> None:
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=unique_prefix(), partitions=3)
    names = await create_topics(kafka_bootstrap, settings)
    assert names == [spec.name(settings.topic_prefix, settings.app_id) for spec in CATALOGUE]
    assert settings.topics.changelog in names
    # Creating again is harmless (a test may share topics between steps).
    assert await create_topics(kafka_bootstrap, settings) == names
    topic = settings.topics.send_requests
    for i in range(5):
        await produce(kafka_bootstrap, topic, f"m{i}", f"v{i}")
    records = await consume_until(kafka_bootstrap, topic, count=5)
    assert sorted(r.value for r in records) == [f"v{i}".encode() for i in range(5)]
    [m3] = await consume_until(kafka_bootstrap, topic, predicate=lambda r: r.key == b"m3")
    assert m3.value == b"v3"


async def test_consume_until_times_out_with_what_it_saw(kafka_bootstrap: str) -> None:
    [topic] = await create_topics(kafka_bootstrap, [unique_prefix() + "few"])
    await produce(kafka_bootstrap, topic, b"k", b"only one")
    with pytest.raises(AssertionError, match=r"1 of 2 matching records after 1 s \(1 records read\)"):
        await consume_until(kafka_bootstrap, topic, count=2, timeout=1)


async def test_consume_until_missing_topic(kafka_bootstrap: str) -> None:
    with pytest.raises(AssertionError, match="does not exist"):
        await consume_until(kafka_bootstrap, unique_prefix() + "absent", timeout=1)


def test_transactions_probe_answers(broker_supports_transactions: bool) -> None:
    # Which answer depends on the broker; the probe must answer, not hang or raise.
    assert isinstance(broker_supports_transactions, bool)


@pytest.mark.transactions
async def test_transactional_commit(kafka_bootstrap: str) -> None:
    """Runs only where the probe found transactions: a committed record is visible read_committed."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    [topic] = await create_topics(kafka_bootstrap, [unique_prefix() + "txn"])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_prefix() + "p")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed", key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, isolation_level="read_committed")
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        batch = await consumer.getmany(tp, timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert [r.value for r in batch.get(tp, [])] == [b"committed"]


def test_docker_check_without_engine_leaks_no_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Regression: docker-py's unclosed socket used to fail a later test with a ResourceWarning."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    reason = docker_unavailable_reason()
    assert reason is not None and reason.startswith("no Docker engine")
    gc.collect()  # would raise here (warnings are errors) if the check left its socket open
