"""Errors of the admin room (topic admin, publishing and following for the CLI and the demo)."""

from __future__ import annotations

from stream_app.errors import StreamAppError

# Missing topics and disagreeing partition counts are refused by one rule for every command and
# service (stream_app.kafka.topics); re-exported because the admin room's callers name them as theirs.
from stream_app.kafka.errors import TopicsMissing, TopicsNotCoPartitioned

__all__ = [
    "AdminError",
    "InvalidInput",
    "KafkaFailure",
    "PartitionMismatch",
    "TopicCreateFailed",
    "TopicsMissing",
]

PartitionMismatch = TopicsNotCoPartitioned


class AdminError(StreamAppError):
    """Base of everything the admin room raises; the CLI prints it as one line."""


class TopicCreateFailed(AdminError):
    """The broker refused to create a topic."""


class InvalidInput(AdminError):
    """A request given on the command line or in a file is not a valid record of the contract."""


class KafkaFailure(AdminError):
    """The broker answered, but a request failed (one line: what and why)."""
