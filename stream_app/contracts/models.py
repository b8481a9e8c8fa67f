"""Pydantic v2 models of every record of CONTRACT.md.

Input rules live here, once: case-insensitive channel and status names (canonical upper case out),
E.164 destinations, 1..8 steps, ``ttl`` xor ``expiresAt``, unknown fields ignored, offset-aware
timestamps. Output models serialise camelCase JSON with ``schemaVersion: 1`` and UTC ``Z`` times.
"""

from __future__ import annotations

import hashlib
import re
import zoneinfo
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from stream_app.contracts import exactjson
from stream_app.contracts.timefmt import MAX_INSTANT, MAX_SECONDS, MIN_INSTANT, format_ms, to_ms

SCHEMA_VERSION = 1
MAX_STEPS = 8
#: Keys of a step's content that make the gateway run a fallback chain of its own (seed page 001,
#: UC-005): with ours on top of it a person could get the same SMS twice. Refused on requests and
#: by the dispatcher; list RCS and SMS as steps of ``channels`` instead.
GATEWAY_FALLBACK_KEYS = ("fallbackRcs", "fallbackSms")


def gateway_fallback_keys(content: dict[str, Any]) -> list[str]:
    """The keys of ``content`` that would start the gateway's own fallback chain."""
    return [k for k in GATEWAY_FALLBACK_KEYS if k in content]


# A messageId is a Kafka key and a gateway customer message id; 200 characters leaves room for the
# ":<attempt>" suffix of a commandId under the 255-character limits gateways commonly put on ids.
MAX_MESSAGE_ID_LENGTH = 200
#: Matched with ``fullmatch``: ``$`` also matches before a trailing newline, which let
#: ``"+393401234567\n"`` through to the gateway (issue 9).
E164 = re.compile(r"\+[0-9]{8,15}")
#: A number, or a string that is only a number: what pydantic would read as Unix time.
_EPOCH_LIKE = re.compile(r"\s*[+-]?[0-9]+(\.[0-9]*)?\s*")


class Channel(StrEnum):
    WHATSAPP = "WHATSAPP"
    RCS = "RCS"
    SMS = "SMS"
    VIBER = "VIBER"


class Status(StrEnum):
    """Delivery statuses. Progress order ACCEPTED < SENT < DELIVERED < READ; the rest are failures."""

    ACCEPTED = "ACCEPTED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    REJECTED = "REJECTED"
    ERROR = "ERROR"
    EXPIRED = "EXPIRED"


class SuccessStatus(StrEnum):
    """The statuses a step may name as its ``successStatus``."""

    ACCEPTED = "ACCEPTED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"


FAILURE_STATUSES: frozenset[str] = frozenset({"REJECTED", "ERROR", "EXPIRED"})
#: How far a status moves an attempt on: the project's one table of status ranks. Progress statuses
#: keep CONTRACT.md's order; a failure sits above SENT (an ERROR after SENT ends the attempt; a SENT
#: arriving after the ERROR, out of order, changes nothing) and below DELIVERED (a DELIVERED report is
#: stronger evidence than an earlier failure report: the person has the message). A status never
#: lowers an attempt's order.
STATUS_ORDER: dict[str, int] = {
    "ACCEPTED": 1,
    "SENT": 2,
    "REJECTED": 3,
    "ERROR": 3,
    "EXPIRED": 3,
    "DELIVERED": 4,
    "READ": 5,
}
#: Rank of each progress status among the progress statuses alone (1-4, derived from STATUS_ORDER);
#: failure statuses have none. Flow states store these numbers: their values are part of the format.
PROGRESS_RANK: dict[str, int] = {
    name: rank
    for rank, name in enumerate(
        sorted((n for n in STATUS_ORDER if n not in FAILURE_STATUSES), key=STATUS_ORDER.__getitem__), start=1
    )
}


class CommandReason(StrEnum):
    INITIAL = "INITIAL"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    #: v1.1: the previous step was skipped because its channel was CLOSED (channel control).
    SKIPPED = "SKIPPED"


class Result(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class AttemptEnd(StrEnum):
    """How one attempt ended, as reported in an Outcome's ``attempts``."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # a failure status
    TIMEOUT = "TIMEOUT"  # fallbackAfter passed without reaching successStatus
    EXPIRED = "EXPIRED"  # the message's ttl / expiresAt / max flow time passed while it was open
    CANCELLED = "CANCELLED"  # the message was cancelled while it was open
    SUPERSEDED = "SUPERSEDED"  # an earlier attempt succeeded while this one was open
    SKIPPED = "SKIPPED"  # v1.1: its channel was CLOSED when it fell due; no command was issued


class EndReason(StrEnum):
    """The ``reason`` of an Outcome the processor itself gives (a cancel's reason is the cancel's own).

    v1.1: ``OUTSIDE_SEND_WINDOW`` on an EXPIRED outcome whose next step's window opens at or after
    the expiry; ``CHANNELS_CLOSED`` on a FAILED outcome whose remaining steps are all on closed channels.
    """

    OUTSIDE_SEND_WINDOW = "OUTSIDE_SEND_WINDOW"
    CHANNELS_CLOSED = "CHANNELS_CLOSED"


class Weekday(StrEnum):
    """The days a send window may open on, in ``datetime.weekday()`` order (Monday first)."""

    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"
    SUN = "SUN"


#: Weekday -> ``datetime.weekday()`` number.
WEEKDAY_NUMBER: dict[Weekday, int] = {day: n for n, day in enumerate(Weekday)}


class WindowScope(StrEnum):
    """Which steps a send window holds back: ``FALLBACK`` (steps after the first) or ``ALL``."""

    FALLBACK = "FALLBACK"
    ALL = "ALL"


class ChannelState(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class InFlight(StrEnum):
    """What closing a channel does to attempts already issued on it."""

    WAIT = "WAIT"  # leave them alone: they run to their own end
    FALLBACK = "FALLBACK"  # end them at once (TIMEOUT), as if their fallbackAfter had passed


def _upper(value: Any) -> Any:
    """Case-insensitive enum input: ``WhatsApp`` is ``WHATSAPP``."""
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: Any) -> Any:
    """Case-insensitive ``type`` on input, as the request discriminator reads it: ``Cancel`` is ``cancel``."""
    return value.strip().lower() if isinstance(value, str) else value


#: id(datetime) -> (that datetime, its text). ``from_ms`` hands out one datetime per millisecond, so
#: the ``issuedAt`` / ``notAfter`` of a batch's commands are a few objects written many times, and
#: ``format_ms(to_ms(...))`` costs about 1.5 us each. The entry holds the datetime itself, so its id
#: cannot be reused while cached, and a hit is checked by identity. Bounded like timefmt's caches.
_UTC_TEXT: dict[int, tuple[datetime, str]] = {}
_UTC_TEXT_MAX = 4096


def utc_text(value: datetime) -> str:
    """RFC 3339 UTC ``Z`` text of an offset-aware datetime, milliseconds kept (cached by identity)."""
    hit = _UTC_TEXT.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    text = format_ms(to_ms(value))
    if len(_UTC_TEXT) >= _UTC_TEXT_MAX:
        _UTC_TEXT.clear()
    _UTC_TEXT[id(value)] = (value, text)
    return text


def _e164(value: str) -> str:
    if not E164.fullmatch(value):
        raise PydanticCustomError("e164", "must be E.164, '+' then 8 to 15 digits")
    return value


def _rfc3339_only(value: Any) -> Any:
    """Refuse Unix time before pydantic guesses at it (CONTRACT.md: timestamps are RFC 3339).

    Pydantic's lax mode reads ``1712650000`` (and ``"1712650000"``) as seconds or milliseconds since
    the epoch, so a producer sending epoch numbers would have them silently reinterpreted. Other
    strings go on to pydantic, whose own messages ("should have timezone info") are the clearer ones.
    """
    if isinstance(value, int | float) or (isinstance(value, str) and _EPOCH_LIKE.fullmatch(value)):
        raise PydanticCustomError(
            "rfc3339", "must be an RFC 3339 timestamp with an offset, e.g. 2026-04-09T10:15:00+02:00"
        )
    return value


#: ``HH:MM``, 24-hour local wall-clock time: exactly two digits each, 00:00 to 23:59.
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
#: IANA names are short ASCII words; anything else is refused before zoneinfo looks for a file.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*")


def _clock(value: str) -> str:
    if not _CLOCK.fullmatch(value):
        raise PydanticCustomError("clock", "must be a local time HH:MM (00:00 to 23:59)")
    return value


def _zone(value: str) -> str:
    """An IANA timezone the standard library knows (``zoneinfo``: system tz data or ``tzdata``)."""
    if len(value) <= 64 and _ZONE_NAME.fullmatch(value):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        else:
            return value
    raise PydanticCustomError(
        "timezone", "unknown IANA timezone '{value}' (e.g. Europe/Rome)", {"value": value[:64]}
    )


ChannelIn = Annotated[Channel, BeforeValidator(_upper)]
StatusIn = Annotated[Status, BeforeValidator(_upper)]
SuccessStatusIn = Annotated[SuccessStatus, BeforeValidator(_upper)]
#: An offset-aware timestamp in, RFC 3339 UTC ``Z`` out.
Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_only),
    PlainSerializer(utc_text, return_type=str, when_used="json"),
]
#: A Timestamp an input record carries: also inside ``MIN_INSTANT``..``MAX_INSTANT`` (timefmt), compared
#: as instants whatever the offset. The bounds come before the validator so that pydantic checks them
#: in its datetime schema (native: no cost on the hot path; after it, they were two Python calls).
#: Outputs keep plain Timestamp: a flow's end may lie up to ``MAX_SECONDS`` past the last instant an
#: input may name.
InstantIn = Annotated[
    AwareDatetime,
    Field(
        ge=MIN_INSTANT,
        lt=MAX_INSTANT,
        # JSON Schema has no bounds for a date-time (pydantic leaves ge/lt out): said in words.
        description="RFC 3339 with an offset; as an instant (UTC), from 0001-01-01T00:00:00Z to before "
        "9000-01-01T00:00:00Z",
    ),
    BeforeValidator(_rfc3339_only),
    PlainSerializer(utc_text, return_type=str, when_used="json"),
]
#: A phone number in E.164: the one destination rule, for requests and the gateway simulator alike.
Destination = Annotated[
    str,
    AfterValidator(_e164),
    # The same rule in the schemas (ECMA 262, whose ``$``, unlike Python's, refuses a trailing newline).
    Field(json_schema_extra={"pattern": "^\\+[0-9]{8,15}$", "examples": ["+393401234567"]}),
]
MessageId = Annotated[str, Field(min_length=1, max_length=MAX_MESSAGE_ID_LENGTH)]
#: Seconds: a number > 0, fractions allowed, at most ten years (``MAX_SECONDS``: see timefmt).
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS, allow_inf_nan=False)]


class Record(BaseModel):
    """Base of all records: camelCase on the wire, unknown fields ignored (forward compatibility)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        use_enum_values=False,
    )


class InputRecord(Record):
    """An input record: ``schemaVersion`` optional, read as 1 when absent."""

    schema_version: Annotated[int, Field(json_schema_extra={"const": SCHEMA_VERSION})] = 1

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != SCHEMA_VERSION:
            raise PydanticCustomError(
                "schema_version", "unsupported version {v}; this processor reads version 1", {"v": v}
            )
        return v


class OutputRecord(Record):
    schema_version: Literal[1] = 1


Clock = Annotated[
    str,
    AfterValidator(_clock),
    Field(json_schema_extra={"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$", "examples": ["09:00"]}),
]
ZoneName = Annotated[
    str,
    AfterValidator(_zone),
    Field(json_schema_extra={"description": "an IANA timezone name", "examples": ["Europe/Rome"]}),
]
WeekdayIn = Annotated[Weekday, BeforeValidator(_upper)]
WindowScopeIn = Annotated[WindowScope, BeforeValidator(_upper)]
ChannelStateIn = Annotated[ChannelState, BeforeValidator(_upper)]
InFlightIn = Annotated[InFlight, BeforeValidator(_upper)]

# --------------------------------------------------------------------------------------------- inputs


class SendWindow(Record):
    """Quiet hours (v1.1): the local hours in which a step may be issued.

    ``from`` and ``to`` are wall-clock times in ``timezone`` (daylight-saving changes included);
    ``from`` > ``to`` is a window across midnight (22:00-06:00 opens at 22:00 and closes at 06:00 the
    next morning). ``days`` names the days on which a window *opens* (default: every day).
    ``appliesTo`` is ``FALLBACK`` (default: every step but the first) or ``ALL``. The deferral rule
    itself is :mod:`stream_app.fallback.window`.
    """

    timezone: ZoneName
    days: list[WeekdayIn] = Field(
        default_factory=lambda: list(Weekday),
        min_length=1,
        max_length=7,
        json_schema_extra={"uniqueItems": True},  # _a_real_window refuses a repeated day
    )
    from_: Clock = Field(alias="from")
    to: Clock
    applies_to: WindowScopeIn = WindowScope.FALLBACK

    @model_validator(mode="after")
    def _a_real_window(self) -> SendWindow:
        if self.from_ == self.to:
            raise PydanticCustomError(
                "empty_window", "from and to must differ (a window of no time never opens)"
            )
        if len(set(self.days)) != len(self.days):
            raise PydanticCustomError("repeated_day", "days: a day is named twice")
        return self

    def wire(self) -> dict[str, Any]:
        """The JSON form (camelCase, days in the given order): what the fingerprint digests."""
        return {
            "timezone": self.timezone,
            "days": [str(d) for d in self.days],
            "from": self.from_,
            "to": self.to,
            "appliesTo": str(self.applies_to),
        }


class ChannelStep(Record):
    """One step of the fallback chain."""

    channel: ChannelIn
    fallback_after: Seconds | None = None
    success_status: SuccessStatusIn = SuccessStatus.DELIVERED
    content: dict[str, Any] = Field(
        default_factory=dict,
        # _no_gateway_chain's rule, in the schema too.
        json_schema_extra={"not": {"anyOf": [{"required": [k]} for k in GATEWAY_FALLBACK_KEYS]}},
    )

    @field_validator("content")
    @classmethod
    def _no_gateway_chain(cls, content: dict[str, Any]) -> dict[str, Any]:
        found = gateway_fallback_keys(content)
        if found:
            raise PydanticCustomError(
                "gateway_fallback",
                "{keys} would make the gateway run its own fallback chain behind ours (a person could "
                "get the same message twice); list RCS and SMS as steps of channels instead",
                {"keys": " and ".join(found)},
            )
        return content


class InitialAttempt(Record):
    """Upstream already sent step 0 itself (the re-engagement pattern)."""

    provider_message_id: str | None = None
    sent_at: InstantIn


class SendRequest(InputRecord):
    type: Annotated[Literal["send"], BeforeValidator(_lower)] = "send"
    message_id: MessageId
    tenant: str | None = None
    destination: Destination
    channels: list[ChannelStep] = Field(min_length=1, max_length=MAX_STEPS)
    ttl: Seconds | None = None
    expires_at: InstantIn | None = None
    simulation: bool = False
    campaign_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    requested_at: InstantIn | None = None
    initial_attempt: InitialAttempt | None = None
    #: v1.1, quiet hours: steps are issued only inside this window (see :class:`SendWindow`).
    send_window: SendWindow | None = None

    @model_validator(mode="after")
    def _ttl_xor_expires(self) -> SendRequest:
        if self.ttl is not None and self.expires_at is not None:
            raise PydanticCustomError("ttl_xor_expires_at", "ttl: give ttl or expiresAt, not both")
        return self

    def fingerprint(self) -> bytes:
        """16-byte digest of the request apart from ``requestedAt``.

        Two sends with the same messageId are the same request (a harmless repeat) exactly when their
        fingerprints are equal; otherwise the second is a conflict (CONTRACT.md, Guarantees).

        The digest is of the request's JSON form (every field, camelCase, defaults filled in, UTC
        ``Z`` times) with sorted keys, so equal requests agree however their producers ordered keys
        or spelled defaults. That body is written out field by field here rather than asked of
        pydantic's serializer, which costs about three times as much once per request on the
        processor's hot path (enums are left to orjson, which writes a StrEnum as its value without
        the cost of ``.value``); a property test holds the two to the same bytes, so stored
        fingerprints keep their meaning. A field added to the model must be added here too (the
        test fails until it is). ``sendWindow`` (v1.1) is in the body only when given, so the
        fingerprints of requests without one, stored before it existed, keep their value.
        """
        initial = self.initial_attempt
        body = {
            "schemaVersion": self.schema_version,
            "type": self.type,
            "messageId": self.message_id,
            "tenant": self.tenant,
            "destination": self.destination,
            "channels": [
                {
                    "channel": step.channel,
                    "fallbackAfter": step.fallback_after,
                    "successStatus": step.success_status,
                    "content": step.content,
                }
                for step in self.channels
            ],
            "ttl": self.ttl,
            "expiresAt": None if self.expires_at is None else utc_text(self.expires_at),
            "simulation": self.simulation,
            "campaignId": self.campaign_id,
            "metadata": self.metadata,
            "initialAttempt": None
            if initial is None
            else {"providerMessageId": initial.provider_message_id, "sentAt": utc_text(initial.sent_at)},
        }
        if self.send_window is not None:
            body["sendWindow"] = self.send_window.wire()
        return hashlib.blake2b(exactjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16).digest()


class CancelRequest(InputRecord):
    type: Annotated[Literal["cancel"], BeforeValidator(_lower)]
    message_id: MessageId
    reason: str | None = None


class DeliveryStatus(InputRecord):
    """A delivery report (DLR) or submit acknowledgement, on ``delivery-status``."""

    message_id: MessageId
    attempt: Annotated[int, Field(ge=0, lt=MAX_STEPS)] | None = None
    channel: ChannelIn
    status: StatusIn
    status_code: int | None = None
    reasons: list[str] = Field(default_factory=list)
    provider_message_id: str | None = None
    occurred_at: InstantIn | None = None
    #: v1.1: the gateway's own word for the status (``RECEIVED`` arrives as SENT, an ``eventType:
    #: DELIVERY`` with statusCode 3 as DELIVERED), kept so nothing the gateway said is lost.
    gateway_status: str | None = Field(default=None, max_length=64)


def control_key(channel: Channel, tenant: str | None) -> str:
    """The key of a ChannelControl record: ``CHANNEL`` or ``tenant/CHANNEL`` (compaction keeps the last)."""
    return str(channel) if tenant is None else f"{tenant}/{channel}"


class ChannelControl(InputRecord):
    """v1.1, on the compacted ``channel-control`` topic: an operator (or the dispatcher's breaker)
    closes or opens a channel, for one tenant or for all (``tenant`` null).

    While CLOSED (and before ``until``, if given) a step on the channel is not issued: it ends
    SKIPPED and the chain moves on. ``inFlight`` FALLBACK also ends attempts already issued on it.
    The record's key must be :func:`control_key` of its channel and tenant.
    """

    type: Annotated[Literal["channel-control"], BeforeValidator(_lower)] = "channel-control"
    channel: ChannelIn
    tenant: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    state: ChannelStateIn
    reason: Annotated[str, Field(max_length=500)] | None = None
    until: InstantIn | None = None
    in_flight: InFlightIn = InFlight.WAIT
    at: InstantIn | None = None

    @property
    def key(self) -> str:
        return control_key(self.channel, self.tenant)


# -------------------------------------------------------------------------------------------- outputs


class PreviousAttempt(Record):
    attempt: int
    channel: Channel
    status: Status | None = None


class RetryCommand(OutputRecord):
    """One channel attempt to send, on ``retry-commands`` (attempt 0 included)."""

    type: Literal["command"] = "command"
    command_id: str
    message_id: str
    attempt: int
    channel: Channel
    destination: str
    content: dict[str, Any] = Field(default_factory=dict)
    reason: CommandReason
    previous: PreviousAttempt | None = None
    issued_at: Timestamp
    not_after: Timestamp | None = None
    simulation: bool = False
    tenant: str | None = None
    campaign_id: str | None = None
    #: v1.1: the moment the step fell due, when a send window held it back to ``issuedAt``.
    deferred_from: Timestamp | None = None


class AttemptSummary(Record):
    """One attempt of an Outcome.

    Since v1.1, optional (a v1 consumer reads on): `statusTimes`, the `occurredAt` of the first report
    of each progress status of the attempt (delivery latency per channel), and `reasons`, the
    gateway's reasons of its first failure report that gave any.
    """

    attempt: int
    channel: Channel
    issued_at: Timestamp
    last_status: Status | None = None
    ended_by: AttemptEnd | None = None
    provider_message_id: str | None = None
    status_times: dict[SuccessStatus, Timestamp] | None = None
    reasons: list[str] | None = None


class Outcome(OutputRecord):
    """The one final outcome of a message, on ``outcomes``."""

    type: Literal["outcome"] = "outcome"
    message_id: str
    tenant: str | None = None
    campaign_id: str | None = None
    result: Result
    channel: Channel | None = None
    status: Status | None = None
    attempt_count: int
    attempts: list[AttemptSummary] = Field(default_factory=list)
    reason: str | None = None
    requested_at: Timestamp
    completed_at: Timestamp
    duration_ms: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class LateStatus(OutputRecord):
    """A success status for a message that has already ended, on ``outcomes``."""

    type: Literal["late-status"] = "late-status"
    message_id: str
    attempt: int
    channel: Channel
    status: Status
    occurred_at: Timestamp
    double_delivery: bool
