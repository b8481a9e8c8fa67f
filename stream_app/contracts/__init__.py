"""The wire records of CONTRACT.md: pydantic models, bytes codec, and JSON Schema export.

Knows nothing else in the project. ``decode_*`` raise :class:`InvalidRecord` whose ``reason`` is one
line fit for a dead-letter header.
"""

from stream_app.contracts import trusted
from stream_app.contracts.codec import (
    decode_command,
    decode_outcome,
    decode_request,
    decode_status,
    encode,
    reason_of,
    to_json,
)
from stream_app.contracts.errors import ContractError, InvalidRecord
from stream_app.contracts.models import (
    FAILURE_STATUSES,
    GATEWAY_FALLBACK_KEYS,
    MAX_STEPS,
    PROGRESS_RANK,
    SCHEMA_VERSION,
    STATUS_ORDER,
    AttemptEnd,
    AttemptSummary,
    CancelRequest,
    Channel,
    ChannelStep,
    CommandReason,
    DeliveryStatus,
    InitialAttempt,
    LateStatus,
    Outcome,
    PreviousAttempt,
    Result,
    RetryCommand,
    SendRequest,
    Status,
    SuccessStatus,
    gateway_fallback_keys,
)
from stream_app.contracts.timefmt import format_ms, from_ms, to_ms

__all__ = [
    "FAILURE_STATUSES",
    "GATEWAY_FALLBACK_KEYS",
    "MAX_STEPS",
    "PROGRESS_RANK",
    "SCHEMA_VERSION",
    "STATUS_ORDER",
    "AttemptEnd",
    "AttemptSummary",
    "CancelRequest",
    "Channel",
    "ChannelStep",
    "CommandReason",
    "ContractError",
    "DeliveryStatus",
    "InitialAttempt",
    "InvalidRecord",
    "LateStatus",
    "Outcome",
    "PreviousAttempt",
    "Result",
    "RetryCommand",
    "SendRequest",
    "Status",
    "SuccessStatus",
    "decode_command",
    "decode_outcome",
    "decode_request",
    "decode_status",
    "encode",
    "format_ms",
    "from_ms",
    "gateway_fallback_keys",
    "reason_of",
    "to_json",
    "to_ms",
    "trusted",
]
