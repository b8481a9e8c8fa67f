"""Start-up checks of the topics the processor depends on (DESIGN.md rule 1, co-partitioning).

Partition p of ``send-requests``, ``delivery-status`` and the changelog must hold the same messageIds
and be owned by one instance. The processor subscribes to both inputs with aiokafka's
:class:`RangePartitionAssignor`: for each topic it sorts the members by id and hands each the same
contiguous range of partition numbers, so with equal partition counts member m receives partition p of
BOTH inputs (``tests/integration/runtime/test_assignment.py`` checks it on a real broker). aiokafka's
default, round-robin, interleaves topics and would split a message's request from its statuses; hence
the explicit choice here and the refusal to start on unequal counts.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka.structs import TopicPartition

from stream_app.config import Topics
from stream_app.kafka.topics import require_topics


def check_topics(topics: Topics, counts: dict[str, int], bootstrap: str) -> int:
    """The common partition count of the co-partitioned topics, or a one-line refusal.

    ``counts`` is every topic on the broker with its partition count. The rule is every service's
    (:func:`stream_app.kafka.topics.require_topics`): here, the outputs and ``channel-control`` (any
    count) must exist and both inputs and the changelog must share one count.
    """
    require_topics(
        counts,
        bootstrap,
        [topics.retry_commands, topics.outcomes, topics.dead_letters, topics.channel_control],
        together=[topics.send_requests, topics.delivery_status, topics.changelog],
    )
    return counts[topics.send_requests]


def co_partitioned(assigned: Iterable[TopicPartition], topics: Topics) -> tuple[set[int], set[int]]:
    """(partitions owned on both inputs, partitions owned on only one of them).

    The second set must be empty; anything in it means another member of the group assigns partitions
    differently (a foreign assignor or a member subscribed to other topics).
    """
    req = {tp.partition for tp in assigned if tp.topic == topics.send_requests}
    st = {tp.partition for tp in assigned if tp.topic == topics.delivery_status}
    return req & st, req ^ st
