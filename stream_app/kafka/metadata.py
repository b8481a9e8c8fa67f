"""Topic metadata read the one way that is right on every broker.

aiokafka's clients bootstrap with a Metadata request for an empty topic list. Metadata v0 reads that
as "every topic", but v1 and later (Apache Kafka, librdkafka's mock) as "no topic", so the
partition counts a freshly started client caches (``partitions_for_topic``) are missing on a real
Kafka, while Tansu answers with every topic and hides the difference. ``consumer.topics()`` fetches
all topics but keeps the answer to itself. This module reads names and partition counts from that
one complete answer.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer


async def topic_partitions(consumer: AIOKafkaConsumer) -> dict[str, int]:
    """Every topic the client may see and its partition count, from one fresh Metadata request.

    Raises what aiokafka raises when the broker does not answer (a ``KafkaError``).
    """
    # The consumer's client: aiokafka has no public accessor on the consumer (the producer's is
    # ``producer.client``); fetch_all_metadata() is what consumer.topics() itself calls.
    cluster = await consumer._client.fetch_all_metadata()
    return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}
