"""Kafka plumbing for people and scripts: create/inspect topics, publish requests, follow outcomes.

Used by ``stream-app topics|send|outcomes`` and by the demo. Every client here connects with a short
timeout and turns "no broker" into :class:`stream_app.errors.BrokerUnreachable` (one line in the CLI).
"""

from stream_app.admin.errors import (
    AdminError,
    InvalidInput,
    KafkaFailure,
    PartitionMismatch,
    TopicCreateFailed,
    TopicsMissing,
)
from stream_app.admin.follow import Followed, follow_outcomes, format_line, json_line
from stream_app.admin.publish import (
    Prepared,
    Published,
    cancel_request,
    parse_chain,
    parse_records,
    parse_requests,
    produce,
    publish_requests,
    request_from_flags,
)
from stream_app.admin.topics import CreateReport, TopicAdmin, TopicState, create_topics, topic_states

__all__ = [
    "AdminError",
    "CreateReport",
    "Followed",
    "InvalidInput",
    "KafkaFailure",
    "PartitionMismatch",
    "Prepared",
    "Published",
    "TopicAdmin",
    "TopicCreateFailed",
    "TopicState",
    "TopicsMissing",
    "cancel_request",
    "create_topics",
    "follow_outcomes",
    "format_line",
    "json_line",
    "parse_chain",
    "parse_records",
    "parse_requests",
    "produce",
    "publish_requests",
    "request_from_flags",
    "topic_states",
]
