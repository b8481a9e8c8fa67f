"""Errors of the runtime room: why the processor refuses to start or stops.

Each message is one line the CLI prints as ``stream-app: error: <message>`` and names what to do.
"""

from __future__ import annotations

from stream_app.errors import StreamAppError


class ProcessorError(StreamAppError):
    """Base class of everything the runtime room raises on purpose."""


class MissingTopics(ProcessorError):
    """A topic the processor reads or writes does not exist on the broker."""

    def __init__(self, topics: list[str], bootstrap_servers: str) -> None:
        names = ", ".join(sorted(topics))
        super().__init__(
            f"missing topic(s) {names} on {bootstrap_servers}; run `stream-app topics create` "
            "with the same KAFKA_BOOTSTRAP_SERVERS, STREAM_APP_TOPIC_PREFIX and STREAM_APP_APP_ID"
        )
        self.topics = sorted(topics)


class PartitionMismatch(ProcessorError):
    """The co-partitioned topics do not have equal partition counts (DESIGN.md rule 1)."""

    def __init__(self, counts: dict[str, int]) -> None:
        listing = ", ".join(f"{topic}={n}" for topic, n in counts.items())
        super().__init__(
            f"co-partitioned topics need equal partition counts, got {listing}; partition p of each "
            "must hold the same messageIds, so recreate or expand them to one count"
        )
        self.counts = dict(counts)


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
