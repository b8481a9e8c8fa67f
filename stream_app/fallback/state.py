"""The per-message flow state, its limits, and the inputs and effects of :func:`decide`.

Plain slots dataclasses and tuples: this state is stored for millions of pending messages (see
``codec.py`` for its compact binary form), so it holds ints, short strings and enums, never pydantic
models. The opaque parts of a request (each step's ``content`` and the ``metadata``) stay as one
orjson blob that is parsed only when a command or an outcome is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the chain, as the core needs it (its content lives in ``FlowState.opaque``)."""

    channel: Channel
    fallback_after_ms: int | None
    success_rank: int  # PROGRESS_RANK of the step's successStatus


#: An attempt's ``status_times`` when no progress status has been reported yet.
NO_TIMES: tuple[int | None, ...] = (None, None, None, None)


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class Attempt:
    """One issued attempt; its number is its index in ``FlowState.attempts`` (== its step index).

    ``status_times`` and ``reasons`` are facts kept only for the outcome (CONTRACT.md v1.1
    ``statusTimes``, issue 13's ``reasons``): no rule reads them, and the state drops them once the
    outcome is out. ``status_times[rank - 1]`` is the epoch ms of the first report of the progress
    status of that ``PROGRESS_RANK`` (ACCEPTED, SENT, DELIVERED, READ); ``reasons`` are those of the
    attempt's first failure report that gave any.
    """

    issued_ms: int
    last_status: Status | None = None
    ended_by: AttemptEnd | None = None
    provider_message_id: str | None = None
    status_times: tuple[int | None, ...] = NO_TIMES  # always four entries
    reasons: tuple[str, ...] = ()

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


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
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
    reasons: tuple[str, ...] = ()


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


@dataclass(slots=True)
class FlowState:
    """Everything the core remembers about one messageId.

    ``deadline_ms`` is the one timer of the message: the next moment :func:`decide` must be woken
    with a ``TimerEvent`` (a fallbackAfter, the flow's end, an orphan hold's end, or the end of the
    ended-state retention, whichever is first). ``None`` only while nothing is pending.
    """

    phase: Phase
    message_id: str
    deadline_ms: int | None = None
    fingerprint: bytes = b""
    destination: str = ""
    tenant: str | None = None
    campaign_id: str | None = None
    simulation: bool = False
    requested_ms: int = 0
    end_ms: int = 0  # the flow's end (ttl / expiresAt / max flow): the commands' notAfter
    completed_ms: int = 0  # when the outcome was emitted (ENDED only)
    steps: tuple[Step, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    # orjson of [metadata, content_0, content_1, ...]; b"" once ENDED (nothing opaque is needed then).
    opaque: bytes = b""
    #: v1.1: the request's send window (dropped at the end), and the step it holds back, if any.
    window: Window | None = None
    deferred: Deferred | None = None

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


@dataclass(slots=True, unsafe_hash=True)  # a value, never assigned to: see VALUES
class Decision:
    """The new state (``None``: delete it) and the effects, in the order they must be produced."""

    state: FlowState | None
    effects: tuple[Effect, ...]


#: The values made per record: never assigned to once built, though not ``frozen``. A frozen
#: dataclass sets each field through ``object.__setattr__``, which made building one 4-5 times the
#: cost of a plain one (0.48 against 0.11 us for an Attempt, 0.58 against 0.17 compiled), about a
#: dozen per flow: ``bench/hot_path.py`` went from 33.9 to 30.1 us per record pure, 24.3 to 21.9
#: compiled. ``unsafe_hash`` keeps the hash and equality a frozen one had. What frozen enforced is
#: held by tests instead: no code assigns a field of these (tests/unit/fallback/test_values.py),
#: and decide() leaves the state it was given as it was.
VALUES: tuple[type, ...] = (
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
