"""The per-message flow state, its limits, and the inputs and effects of :func:`decide`.

Plain slots dataclasses and tuples: this state is stored for millions of pending messages (see
``codec.py`` for its compact binary form), so it holds ints, short strings and enums, never pydantic
models. The opaque parts of a request (each step's ``content`` and the ``metadata``) stay as one
orjson blob that is parsed only when a command or an outcome is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from stream_app.contracts import (
    AttemptEnd,
    CancelRequest,
    Channel,
    ChannelControl,
    CommandReason,
    DeliveryStatus,
    LateStatus,
    Outcome,
    RetryCommand,
    SendRequest,
    Status,
)
from stream_app.fallback.window import Window


def seconds_to_ms(seconds: float) -> int:
    """Whole milliseconds of a duration in seconds, rounded UP so a timer never fires early.

    The ``round(..., 6)`` first drops float noise (``0.3 * 1000`` is ``300.00000000000006``), which
    would otherwise turn an exact 300 ms into 301 ms.
    """
    return math.ceil(round(seconds * 1000, 6))


@dataclass(frozen=True, slots=True)
class Limits:
    """The processor-wide bounds of CONTRACT.md, in milliseconds."""

    max_flow_ms: int
    orphan_status_ms: int
    late_status_ms: int
    dedup_ms: int


class Phase(IntEnum):
    """Where a message is. The value is what the binary encoding stores."""

    HOLDING = 0  # statuses arrived, no request yet: they are held (orphans)
    RUNNING = 1  # an accepted request whose flow has not ended
    ENDED = 2  # the outcome is out; kept for repeats and late statuses, then deleted


# The values built most often per record (Step, Attempt, Signal, FlowState; Decision's __init__)
# write out the methods @dataclass would generate: a compiled build (stream_app/compiled.py) runs
# methods written in the class as C, while the ones @dataclass makes at import are interpreted
# Python functions. Building a 5-field value took 0.2 us that way against 0.04 us written out, and
# comparing two cost building two tuples of every field. The rarer ones (Held, Deferred, the events
# and effects) keep the generated methods. tests/unit/fallback/test_values.py holds each written
# method to its class's fields: a field added and not written into it fails there.


@dataclass(slots=True, init=False, eq=False)  # a value, never assigned to: see VALUES
class Step:
    """One step of the chain, as the core needs it (its content lives in ``FlowState.opaque``)."""

    channel: Channel
    fallback_after_ms: int | None
    success_rank: int  # PROGRESS_RANK of the step's successStatus

    def __init__(self, channel: Channel, fallback_after_ms: int | None, success_rank: int) -> None:
        self.channel = channel
        self.fallback_after_ms = fallback_after_ms
        self.success_rank = success_rank

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        return (
            self.channel == other.channel
            and self.fallback_after_ms == other.fallback_after_ms
            and self.success_rank == other.success_rank
        )

    def __hash__(self) -> int:
        return hash((self.channel, self.fallback_after_ms, self.success_rank))


#: An attempt's ``status_times`` when no progress status has been reported yet.
NO_TIMES: tuple[int | None, ...] = (None, None, None, None)


@dataclass(slots=True, init=False, eq=False)  # a value, never assigned to: see VALUES
class Attempt:
    """One issued attempt; its number is its index in ``FlowState.attempts`` (== its step index).

    ``status_times`` and ``reasons`` are facts kept only for the outcome (CONTRACT.md v1.1
    ``statusTimes``, issue 13's ``reasons``): no rule reads them, and the state drops them once the
    outcome is out. ``status_times[rank - 1]`` is the epoch ms of the first report of the progress
    status of that ``PROGRESS_RANK`` (ACCEPTED, SENT, DELIVERED, READ); ``reasons`` are those of the
    attempt's first failure report that gave any.
    """

    issued_ms: int
    last_status: Status | None
    ended_by: AttemptEnd | None
    provider_message_id: str | None
    status_times: tuple[int | None, ...]  # always four entries
    reasons: tuple[str, ...]

    def __init__(
        self,
        issued_ms: int,
        last_status: Status | None = None,
        ended_by: AttemptEnd | None = None,
        provider_message_id: str | None = None,
        status_times: tuple[int | None, ...] = NO_TIMES,
        reasons: tuple[str, ...] = (),
    ) -> None:
        self.issued_ms = issued_ms
        self.last_status = last_status
        self.ended_by = ended_by
        self.provider_message_id = provider_message_id
        self.status_times = status_times
        self.reasons = reasons

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Attempt):
            return NotImplemented
        return (
            self.issued_ms == other.issued_ms
            and self.last_status == other.last_status
            and self.ended_by == other.ended_by
            and self.provider_message_id == other.provider_message_id
            and self.status_times == other.status_times
            and self.reasons == other.reasons
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.issued_ms,
                self.last_status,
                self.ended_by,
                self.provider_message_id,
                self.status_times,
                self.reasons,
            )
        )

    # The two changes the core makes to an attempt, built directly: dataclasses.replace() reads the
    # fields and their defaults on every call, about 0.8 us each, a few times per status record.

    def ended_as(self, end: AttemptEnd) -> Attempt:
        """This attempt, ended by ``end``."""
        return Attempt(
            self.issued_ms,
            self.last_status,
            end,
            self.provider_message_id,
            self.status_times,
            self.reasons,
        )

    def with_facts(
        self,
        last_status: Status | None,
        provider_message_id: str | None,
        status_times: tuple[int | None, ...],
        reasons: tuple[str, ...],
    ) -> Attempt:
        """This attempt with its status and the facts kept for the outcome replaced."""
        return Attempt(self.issued_ms, last_status, self.ended_by, provider_message_id, status_times, reasons)


@dataclass(slots=True, init=False, eq=False)  # a value, never assigned to: see VALUES
class Signal:
    """The part of a DeliveryStatus the core uses; also what a held (orphan) status keeps.

    ``reasons`` only for a failure status, already bounded (see ``core._reasons``): a held status is
    stored, and the gateway's text is not ours to let grow a state without limit.
    """

    attempt: int | None
    channel: Channel
    status: Status
    provider_message_id: str | None
    occurred_ms: int | None
    reasons: tuple[str, ...]

    def __init__(
        self,
        attempt: int | None,
        channel: Channel,
        status: Status,
        provider_message_id: str | None,
        occurred_ms: int | None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        self.attempt = attempt
        self.channel = channel
        self.status = status
        self.provider_message_id = provider_message_id
        self.occurred_ms = occurred_ms
        self.reasons = reasons

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signal):
            return NotImplemented
        return (
            self.attempt == other.attempt
            and self.channel == other.channel
            and self.status == other.status
            and self.provider_message_id == other.provider_message_id
            and self.occurred_ms == other.occurred_ms
            and self.reasons == other.reasons
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.attempt,
                self.channel,
                self.status,
                self.provider_message_id,
                self.occurred_ms,
                self.reasons,
            )
        )


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class Held:
    """A status that arrived before its request, held until ``until_ms``."""

    signal: Signal
    until_ms: int


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class Deferred:
    """A step held back by the send window (v1.1): it fell due at ``due_ms`` with ``reason`` and is
    issued at ``wake_ms``, the window's next opening then (a timer like any other)."""

    due_ms: int
    wake_ms: int
    reason: CommandReason


@dataclass(slots=True, init=False, eq=False)
class FlowState:
    """Everything the core remembers about one messageId.

    ``deadline_ms`` is the one timer of the message: the next moment :func:`decide` must be woken
    with a ``TimerEvent`` (a fallbackAfter, the flow's end, an orphan hold's end, or the end of the
    ended-state retention, whichever is first). ``None`` only while nothing is pending.
    """

    phase: Phase
    message_id: str
    deadline_ms: int | None
    fingerprint: bytes
    destination: str
    tenant: str | None
    campaign_id: str | None
    simulation: bool
    requested_ms: int
    end_ms: int  # the flow's end (ttl / expiresAt / max flow): the commands' notAfter
    completed_ms: int  # when the outcome was emitted (ENDED only)
    steps: tuple[Step, ...]
    attempts: list[Attempt]
    held: list[Held]
    # orjson of [metadata, content_0, content_1, ...]; b"" once ENDED (nothing opaque is needed then).
    # A leading space marks one holding an integer beyond 64 bits (core: read with exactjson.loads).
    opaque: bytes
    #: v1.1: the request's send window (dropped at the end), and the step it holds back, if any.
    window: Window | None
    deferred: Deferred | None

    def __init__(
        self,
        phase: Phase,
        message_id: str,
        deadline_ms: int | None = None,
        fingerprint: bytes = b"",
        destination: str = "",
        tenant: str | None = None,
        campaign_id: str | None = None,
        simulation: bool = False,
        requested_ms: int = 0,
        end_ms: int = 0,
        completed_ms: int = 0,
        steps: tuple[Step, ...] = (),
        attempts: list[Attempt] | None = None,
        held: list[Held] | None = None,
        opaque: bytes = b"",
        window: Window | None = None,
        deferred: Deferred | None = None,
    ) -> None:
        self.phase = phase
        self.message_id = message_id
        self.deadline_ms = deadline_ms
        self.fingerprint = fingerprint
        self.destination = destination
        self.tenant = tenant
        self.campaign_id = campaign_id
        self.simulation = simulation
        self.requested_ms = requested_ms
        self.end_ms = end_ms
        self.completed_ms = completed_ms
        self.steps = steps
        self.attempts = [] if attempts is None else attempts
        self.held = [] if held is None else held
        self.opaque = opaque
        self.window = window
        self.deferred = deferred

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlowState):
            return NotImplemented
        return (
            self.phase == other.phase
            and self.message_id == other.message_id
            and self.deadline_ms == other.deadline_ms
            and self.fingerprint == other.fingerprint
            and self.destination == other.destination
            and self.tenant == other.tenant
            and self.campaign_id == other.campaign_id
            and self.simulation == other.simulation
            and self.requested_ms == other.requested_ms
            and self.end_ms == other.end_ms
            and self.completed_ms == other.completed_ms
            and self.steps == other.steps
            and self.attempts == other.attempts
            and self.held == other.held
            and self.opaque == other.opaque
            and self.window == other.window
            and self.deferred == other.deferred
        )

    def __hash__(self) -> int:
        # Changed in place by the core while it decides (on its own copy), so not hashable, as
        # @dataclass(eq=True) left it. Written as a method: ``__hash__ = None`` became a field in a
        # compiled build. (So ``isinstance(state, Hashable)`` is True; nothing asks.)
        raise TypeError("unhashable type: 'FlowState'")

    def copy(self) -> FlowState:
        """A copy safe to change: the lists are new, their (frozen) items are shared."""
        return FlowState(
            phase=self.phase,
            message_id=self.message_id,
            deadline_ms=self.deadline_ms,
            fingerprint=self.fingerprint,
            destination=self.destination,
            tenant=self.tenant,
            campaign_id=self.campaign_id,
            simulation=self.simulation,
            requested_ms=self.requested_ms,
            end_ms=self.end_ms,
            completed_ms=self.completed_ms,
            steps=self.steps,
            attempts=list(self.attempts),
            held=list(self.held),
            opaque=self.opaque,
            window=self.window,
            deferred=self.deferred,
        )


# ------------------------------------------------------------------------------------------- inputs


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class RequestEvent:
    """A SendRequest record."""

    request: SendRequest


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class CancelEvent:
    """A CancelRequest record."""

    cancel: CancelRequest


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class StatusEvent:
    """A DeliveryStatus record."""

    status: DeliveryStatus


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class TimerEvent:
    """The message's one timer came due (or might have: the core re-checks against ``now_ms``)."""


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class ControlEvent:
    """A ChannelControl record (v1.1), offered to each message it may concern.

    ``key`` is the record's key; ``control`` is ``None`` for a tombstone. The view passed to
    :func:`decide` with it already includes it. Only a CLOSED record with ``inFlight`` FALLBACK
    changes a message: its open attempt on that channel ends at once.
    """

    key: str
    control: ChannelControl | None


Event = RequestEvent | CancelEvent | StatusEvent | TimerEvent | ControlEvent

# ------------------------------------------------------------------------------------------ effects


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class SendCommand:
    command: RetryCommand


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class EmitOutcome:
    outcome: Outcome


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class EmitLateStatus:
    late: LateStatus


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class DeadLetter:
    """Dead-letter the INPUT record with this one-line reason (the flow, if any, is untouched)."""

    reason: str


#: What decide() asks the runtime to produce. Timers are not effects: a state's ``deadline_ms`` is its
#: timer, which the store indexes with the state itself (DESIGN.md rule 4).
Effect = SendCommand | EmitOutcome | EmitLateStatus | DeadLetter


@dataclass(slots=True, init=False, unsafe_hash=True)  # a value, never assigned to: see VALUES
class Decision:
    """The new state (``None``: delete it) and the effects, in the order they must be produced."""

    state: FlowState | None
    effects: tuple[Effect, ...]

    def __init__(self, state: FlowState | None, effects: tuple[Effect, ...]) -> None:
        self.state = state
        self.effects = effects


#: The values made per record: never assigned to once built, though not ``frozen``. A frozen
#: dataclass sets each field through ``object.__setattr__``, which made building one 4-5 times the
#: cost of a plain one (0.48 against 0.11 us for an Attempt, 0.58 against 0.17 compiled), about a
#: dozen per flow: ``bench/hot_path.py`` went from 33.9 to 30.1 us per record pure, 24.3 to 21.9
#: compiled. Their hash and equality are those a frozen one had (``unsafe_hash``, or written out
#: above). What frozen enforced is held by tests instead: no code assigns a field of these
#: (tests/unit/fallback/test_values.py), and decide() leaves the state it was given as it was.
VALUES: tuple[type, ...] = (
    Step,
    Attempt,
    Signal,
    Held,
    Deferred,
    RequestEvent,
    CancelEvent,
    StatusEvent,
    TimerEvent,
    ControlEvent,
    SendCommand,
    EmitOutcome,
    EmitLateStatus,
    DeadLetter,
    Decision,
)
