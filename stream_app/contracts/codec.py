"""Bytes <-> records. Decoding validates once, at the edge; a failure is one line naming field and rule.

Records are read by their wire (camelCase) names only: the models also take their Python names, for
code that builds them, but on the wire ``message_id`` is an unknown field, ignored like any other
(CONTRACT.md), not a second spelling of ``messageId``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from stream_app.contracts import exactjson
from stream_app.contracts.errors import InvalidRecord
from stream_app.contracts.models import (
    CancelRequest,
    ChannelControl,
    DeliveryStatus,
    LateStatus,
    Outcome,
    RetryCommand,
    SendRequest,
)


def _request_kind(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "send"  # let the SendRequest model say "record: must be a JSON object"
    kind = value.get("type", "send")
    return kind.lower() if isinstance(kind, str) else None


def _output_kind(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) else "outcome"


_REQUEST = TypeAdapter[SendRequest | CancelRequest](
    Annotated[
        Annotated[SendRequest, Tag("send")] | Annotated[CancelRequest, Tag("cancel")],
        Discriminator(
            _request_kind,
            custom_error_type="request_type",
            custom_error_message="type: must be 'send' or 'cancel'",
        ),
    ]
)
_OUTCOME = TypeAdapter[Outcome | LateStatus](
    Annotated[
        Annotated[Outcome, Tag("outcome")] | Annotated[LateStatus, Tag("late-status")],
        Discriminator(
            _output_kind,
            custom_error_type="outcome_type",
            custom_error_message="type: must be 'outcome' or 'late-status'",
        ),
    ]
)
_SEND_VALIDATOR = SendRequest.__pydantic_validator__
_STATUS = TypeAdapter(DeliveryStatus)
_COMMAND = TypeAdapter(RetryCommand)
_CONTROL = TypeAdapter(ChannelControl)

_TAGS = frozenset({"send", "cancel", "outcome", "late-status"})


def reason_of(error: ValidationError) -> str:
    """One line from a pydantic error: ``channels.0.fallbackAfter: Input should be greater than 0``.

    Several errors are joined with ``; `` (at most three, then a count) so the line stays short.
    """
    parts: list[str] = []
    errors = error.errors(include_url=False, include_context=False)
    for err in errors[:3]:
        loc = [str(p) for p in err["loc"] if p not in _TAGS]
        msg = err["msg"]
        if err["type"] == "json_invalid":
            parts.append(f"not valid JSON: {msg.removeprefix('Invalid JSON: ')}")
        elif err["type"] in ("model_type", "model_attributes_type") and not loc:
            parts.append("record: must be a JSON object")
        elif err["type"] in ("request_type", "outcome_type"):
            parts.append(msg)
        elif err["type"] == "missing":
            parts.append(f"{'.'.join(loc)}: required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{'.'.join(loc)}: unknown field")
        elif not loc:
            # model-level rules already name their field ("ttl: give ttl or expiresAt, not both")
            parts.append(msg if ": " in msg else f"record: {msg}")
        else:
            parts.append(f"{'.'.join(loc)}: {msg}")
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts)


def _decode(adapter: TypeAdapter[Any], data: bytes) -> Any:
    try:
        return adapter.validate_json(data, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise InvalidRecord(reason_of(exc)) from None


def _tag_is_send(data: bytes) -> bool:
    """Whether the union's discriminator picks ``send`` for ``data``, a JSON object that SendRequest
    accepts with a ``type`` key.

    SendRequest's own ``type`` rule strips spaces (``" send"`` passes it) while the discriminator does
    not, so the top-level ``type`` is read again as the discriminator reads it (any doubt: not
    ``send``). Only called when the key is there: without it the tag is the default, ``send``.
    """
    try:
        value = orjson.loads(data)
    except ValueError:
        return False
    return _request_kind(value) == "send"


def decode_request(data: bytes) -> SendRequest | CancelRequest:
    """A record of ``send-requests``. Raises :class:`InvalidRecord` with a one-line reason."""
    if type(data) is bytes:
        # Fast path: SendRequest straight from the bytes is about half the cost of the union (whose
        # callable discriminator needs the whole record as Python objects first). The union's
        # result for a record whose tag is ``send`` is exactly this one; anything else, every
        # failure included, goes through the union, so results and error reasons are unchanged.
        try:
            request: SendRequest = _SEND_VALIDATOR.validate_json(data, by_alias=True, by_name=False)
        except ValidationError:
            pass
        else:
            # No ``type`` key (escaped spellings included: the parser decoded them) leaves the
            # discriminator at its default, ``send``: nothing to look at. Asking the model costs
            # less than scanning the bytes for one (about 0.45 us a request).
            if "type" not in request.model_fields_set or _tag_is_send(data):
                return request
    result: SendRequest | CancelRequest = _decode(_REQUEST, data)
    return result


def decode_status(data: bytes) -> DeliveryStatus:
    """A record of ``delivery-status``. Raises :class:`InvalidRecord` with a one-line reason."""
    result: DeliveryStatus = _decode(_STATUS, data)
    return result


def decode_command(data: bytes) -> RetryCommand:
    """A record of ``retry-commands`` (the dispatcher's input)."""
    result: RetryCommand = _decode(_COMMAND, data)
    return result


def decode_control(data: bytes, key: bytes | None = None) -> ChannelControl:
    """A record of ``channel-control``. With ``key``, it must be the record's own key.

    Compaction keeps the last record per key, so a record under another key than ``CHANNEL`` /
    ``tenant/CHANNEL`` would outlive the one it meant to replace: it is refused, not guessed at.
    """
    result: ChannelControl = _decode(_CONTROL, data)
    if key is not None and key != result.key.encode():
        shown = key.decode("utf-8", "replace")[:80]
        raise InvalidRecord(f"key: must be {result.key!r} for this record, not {shown!r}")
    return result


def decode_outcome(data: bytes) -> Outcome | LateStatus:
    """A record of ``outcomes``: an Outcome or a LateStatus, by ``type``."""
    result: Outcome | LateStatus = _decode(_OUTCOME, data)
    return result


def to_json(record: BaseModel) -> dict[str, Any]:
    """The JSON-ready dict of a record: camelCase names, UTC ``Z`` times, absent optionals left out."""
    # The serializer itself: what model_dump() calls, without its Python wrapper (once per output).
    result: dict[str, Any] = record.__pydantic_serializer__.to_python(
        record, mode="json", by_alias=True, exclude_none=True
    )
    return result


def encode(record: BaseModel) -> bytes:
    """The wire bytes of a record."""
    return exactjson.dumps(to_json(record))
