"""The processor's Kafka clients, each built with the settings its role needs, in one place.

- the group consumer of both inputs (big fetches, range assignor for co-partitioning, manual commits, static
  membership when ``STREAM_APP_INSTANCE_ID`` is set);
- the output producer (at_least_once): acks=all, linger 5 ms, 512 KiB batches;
- the restore consumer: no group, reads changelog partitions back;
- under exactly_once, the start-up probe and one transactional producer per input partition.
"""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError

from stream_app.config import Settings, max_record_bytes
from stream_app.runtime.errors import TransactionsUnsupported

#: How long the group waits for members to rejoin in a rebalance (aiokafka's default is the 10 s
#: session timeout, too tight for a revoke that finishes a batch during a broker hiccup).
REBALANCE_TIMEOUT_MS = 30_000
#: The group's session timeout of a static member (``STREAM_APP_INSTANCE_ID``): how long a restarted
#: instance may take to come back and find its partitions waiting. aiokafka's default (10 s) is
#: shorter than most pod restarts, so the rebalance static membership exists to avoid happened
#: anyway; 45 s is the Java client's default since Kafka 3.0 (KIP-735). The price: a crashed static
#: member's partitions wait that long. Without an instance id aiokafka's 10 s stays.
STATIC_SESSION_TIMEOUT_MS = 45_000
#: aiokafka's session timeout, kept for dynamic members.
DYNAMIC_SESSION_TIMEOUT_MS = 10_000
#: A restore replays the changelog without polling the group consumer; 15 minutes leaves room for
#: ten million flows at the measured restore rate before the group would evict the instance.
MAX_POLL_INTERVAL_MS = 900_000
#: Bytes one fetch may bring back per partition (aiokafka's default is 1 MiB): a turn takes up to
#: ``MAX_RECORDS`` records from whatever partitions have them, and bigger fetches are fewer round trips.
MAX_PARTITION_FETCH_BYTES = 4 * 1024 * 1024
#: Bytes one fetch may bring back in all (aiokafka's default 50 MiB, said here so the bench's
#: passthrough reads exactly as the processor does).
FETCH_MAX_BYTES = 64 * 1024 * 1024
#: The output producer's batching: up to 5 ms for a batch of up to 512 KiB per partition. A turn hands
#: over thousands of records per partition at once, and fewer, larger batches are fewer requests
#: (half the brokers' 1 MiB default message.max.bytes).
LINGER_MS = 5
MAX_BATCH_BYTES = 512 * 1024


def _isolation(exactly_once: bool) -> str:
    return "read_committed" if exactly_once else "read_uncommitted"


def group_consumer(settings: Settings, exactly_once: bool) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=settings.app_id,
        enable_auto_commit=False,  # DESIGN.md rule 3: we commit after the outputs are durable
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
        isolation_level=_isolation(exactly_once),
        max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
        max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
        fetch_max_bytes=FETCH_MAX_BYTES,
        rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
        # Static membership: a restarted instance with the same id takes its partitions back
        # without a rebalance, as long as it is back within the session timeout.
        group_instance_id=settings.instance_id or None,
        session_timeout_ms=STATIC_SESSION_TIMEOUT_MS if settings.instance_id else DYNAMIC_SESSION_TIMEOUT_MS,
    )


def output_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        acks="all",
        linger_ms=LINGER_MS,
        enable_idempotence=False,
        max_batch_size=MAX_BATCH_BYTES,
        max_request_size=max_record_bytes(settings.max_request_bytes),
    )


def restore_consumer(settings: Settings, exactly_once: bool) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **settings.kafka_client_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level=_isolation(exactly_once),
    )


def transactional_producer(settings: Settings, p: int) -> AIOKafkaProducer:
    """Input partition p's producer: aiokafka lacks KIP-447, so fencing a zombie owner of partition p
    needs a transactional.id that belongs to p (the Faust model)."""
    return AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        transactional_id=f"{settings.app_id}-{settings.topics.send_requests}-{p}",
        acks="all",
        linger_ms=2,
        max_request_size=max_record_bytes(settings.max_request_bytes),
    )


async def probe_transactions(settings: Settings) -> None:
    """Refuse exactly_once at start on a broker without transactions (never downgrade silently)."""
    probe = AIOKafkaProducer(
        **settings.kafka_client_kwargs(),
        # Unique per start: instances starting together must not fence each other's probe.
        transactional_id=f"{settings.app_id}-startup-probe-{uuid.uuid4().hex}",
    )
    try:
        await asyncio.wait_for(probe.start(), 30)
    except (KafkaError, TimeoutError) as exc:
        raise TransactionsUnsupported(
            settings.bootstrap_servers, f"{type(exc).__name__}: {exc}".strip()
        ) from None
    finally:
        await probe.stop()
