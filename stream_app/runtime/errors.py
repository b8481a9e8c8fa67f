"""Errors of the runtime room: why the processor refuses to start or stops.

Each message is one line the CLI prints as ``stream-app: error: <message>`` and names what to do.
"""

from __future__ import annotations

from stream_app.errors import StreamAppError
from stream_app.kafka.errors import TopicsMissing, TopicsNotCoPartitioned


class ProcessorError(StreamAppError):
    """Base class of everything the runtime room raises on purpose."""


#: A topic the processor reads or writes does not exist (one rule for every service: kafka.topics).
MissingTopics = TopicsMissing
#: The co-partitioned topics do not have equal partition counts (DESIGN.md rule 1).
PartitionMismatch = TopicsNotCoPartitioned


class TransactionsUnsupported(ProcessorError):
    """exactly_once was asked for but the broker cannot run Kafka transactions."""

    def __init__(self, bootstrap_servers: str, detail: str) -> None:
        super().__init__(
            f"STREAM_APP_PROCESSING_GUARANTEE=exactly_once needs Kafka transactions, but the broker at "
            f"{bootstrap_servers} refused a transactional producer ({detail}); use a broker with "
            "transactions or set STREAM_APP_PROCESSING_GUARANTEE=at_least_once (no silent downgrade)"
        )
        self.detail = detail


class StateDirLocked(ProcessorError):
    """The local state store of a partition could not be opened (another process holds it?)."""


class NotCoPartitioned(ProcessorError):
    """The group handed this instance partition p of one input but not of the other."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(
            f"the consumer group assigned partitions {partitions} of only one input topic; every member "
            "of the group must run this processor (range assignor over send-requests and delivery-status)"
        )
        self.partitions = partitions
