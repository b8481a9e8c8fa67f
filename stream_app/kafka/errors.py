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
