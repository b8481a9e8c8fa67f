"""Errors of the Kafka client room."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class KafkaRoomError(StreamAppError):
    """Base class of what the Kafka client room raises on purpose."""


class CommittedOffsetUnknown(KafkaRoomError):
    """The group coordinator did not say what is committed for a partition within the bound.

    Never read as "nothing committed": a restore that took it for offset 0 would skip every changelog
    record and wipe the partition's flows (issue 14, mechanism 2).
    """

    def __init__(self, group: str, partitions: list[str], waited_s: float, detail: str) -> None:
        names = ", ".join(partitions)
        super().__init__(
            f"group {group!r}: the coordinator did not answer the committed offsets of {names} within "
            f"{waited_s:g} s ({detail}); the partitions are not processed until it does"
        )
        self.group = group
        self.partitions = partitions


class TopicsMissing(KafkaRoomError):
    """A topic a command or service reads or writes does not exist.

    Never worked around by producing anyway: a broker that auto-creates topics would make one with
    its own default partition count, which breaks co-partitioning for good (issue 13).
    """

    def __init__(self, names: list[str], bootstrap_servers: str) -> None:
        listed = ", ".join(sorted(names))
        super().__init__(
            f"missing topic(s) {listed} on {bootstrap_servers}; run `stream-app topics create` with the "
            "same KAFKA_BOOTSTRAP_SERVERS, STREAM_APP_TOPIC_PREFIX and STREAM_APP_APP_ID (a mistyped "
            "prefix names topics that do not exist)"
        )
        self.names = sorted(names)


class TopicsNotCoPartitioned(KafkaRoomError):
    """Topics whose partition p must hold the same messageIds have different partition counts."""

    def __init__(self, counts: dict[str, int]) -> None:
        listed = ", ".join(f"{name}={n}" for name, n in counts.items())
        super().__init__(
            f"co-partitioned topics need one partition count, got {listed}; partition p of each must "
            "hold the same messageIds: delete and re-create the odd ones with the others' count (their "
            "records are lost) or use a new STREAM_APP_TOPIC_PREFIX"
        )
        self.counts = dict(counts)
