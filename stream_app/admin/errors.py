"""Errors of the admin room (topic admin, publishing and following for the CLI and the demo)."""

from __future__ import annotations

from collections.abc import Mapping

from stream_app.errors import StreamAppError


class AdminError(StreamAppError):
    """Base of everything the admin room raises; the CLI prints it as one line."""


class PartitionMismatch(AdminError):
    """Existing co-partitioned topics have different partition counts."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        listed = ", ".join(f"{name}={n}" for name, n in counts.items())
        super().__init__(
            f"co-partitioned topics disagree on the partition count ({listed}); the processor needs the "
            "same count on all of them: delete and re-create the odd ones (their records are lost) or "
            "use a new STREAM_APP_TOPIC_PREFIX"
        )
        self.counts = dict(counts)


class TopicCreateFailed(AdminError):
    """The broker refused to create a topic."""


class TopicsMissing(AdminError):
    """A topic the command writes to or reads from does not exist."""

    def __init__(self, names: list[str], bootstrap_servers: str) -> None:
        super().__init__(
            f"topic {', '.join(names)} does not exist on {bootstrap_servers}; "
            "create the topics first with `stream-app topics create` (same prefix)"
        )
        self.names = names


class InvalidInput(AdminError):
    """A request given on the command line or in a file is not a valid record of the contract."""


class KafkaFailure(AdminError):
    """The broker answered, but a request failed (one line: what and why)."""
