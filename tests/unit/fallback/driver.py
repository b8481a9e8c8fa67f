"""A test clock and driver around ``decide()``: one message, its stored state, every effect seen.

The driver plays the runtime's part exactly as the briefing describes it: it keeps the state that
``decide`` returns (deleting it on ``None``), and wakes the core with ``TimerEvent()`` at the state's
``deadline_ms``. Time only moves when a test says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from stream_app.contracts import (
    CancelRequest,
    ChannelControl,
    DeliveryStatus,
    LateStatus,
    Outcome,
    RetryCommand,
    SendRequest,
    encode,
    to_ms,
)
from stream_app.fallback import (
    NO_CONTROLS,
    CancelEvent,
    ControlEvent,
    ControlView,
    DeadLetter,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Limits,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    decide,
    decode_state,
    encode_state,
)

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
#: 2026-04-09T08:15:00Z, the Banca Adriatica example's requestedAt (10:15:00+02:00).
T0 = to_ms(datetime(2026, 4, 9, 8, 15, tzinfo=UTC))
#: The CONTRACT.md defaults.
LIMITS = Limits(
    max_flow_ms=72 * HOUR, orphan_status_ms=600 * SECOND, late_status_ms=24 * HOUR, dedup_ms=24 * HOUR
)


def effect_bytes(effect: Effect) -> bytes:
    """A byte form of one effect, for byte-for-byte replay comparisons."""
    if isinstance(effect, SendCommand):
        return b"command " + encode(effect.command)
    if isinstance(effect, EmitOutcome):
        return b"outcome " + encode(effect.outcome)
    if isinstance(effect, EmitLateStatus):
        return b"late " + encode(effect.late)
    assert isinstance(effect, DeadLetter)
    return b"dead-letter " + effect.reason.encode()


def request(
    message_id: str = "msg-1", channels: list[dict[str, Any]] | None = None, **fields: Any
) -> SendRequest:
    """A SendRequest from camelCase JSON fields, validated like the wire would be."""
    body: dict[str, Any] = {
        "messageId": message_id,
        "destination": "+393401234567",
        "channels": channels if channels is not None else [{"channel": "WHATSAPP"}],
    }
    body.update(fields)
    return SendRequest.model_validate(body)


def status(
    channel: str,
    value: str,
    attempt: int | None = None,
    message_id: str = "msg-1",
    **fields: Any,
) -> DeliveryStatus:
    body: dict[str, Any] = {"messageId": message_id, "channel": channel, "status": value, **fields}
    if attempt is not None:
        body["attempt"] = attempt
    return DeliveryStatus.model_validate(body)


def closing(channel: str, **fields: Any) -> ChannelControl:
    """A ChannelControl record from camelCase JSON fields (state CLOSED unless given)."""
    return ChannelControl.model_validate({"channel": channel, "state": "CLOSED", **fields})


def cancel(message_id: str = "msg-1", reason: str | None = None) -> CancelRequest:
    return CancelRequest(type="cancel", message_id=message_id, reason=reason)


class Driver:
    """One message's life under a test-driven clock."""

    def __init__(self, limits: Limits = LIMITS, now: int = T0, *, roundtrip: bool = True) -> None:
        self.limits = limits
        self.now = now
        self.state: FlowState | None = None
        self.effects: list[Effect] = []
        self.roundtrip = roundtrip  # store the state as bytes between inputs, like the store does
        self.controls: ControlView = NO_CONTROLS  # the channel-control view, as the runtime keeps it

    # ---------------------------------------------------------------------------------- inputs

    def feed(self, event: Event) -> tuple[Effect, ...]:
        if isinstance(event, ControlEvent):  # the runtime's order: into the view, then to the message
            self.controls = self.controls.apply(event.key, event.control)
        decision = decide(self.state, event, self.now, self.limits, self.controls)
        new = decision.state
        if new is not None and self.roundtrip:
            data = encode_state(new)
            new = decode_state(data)
            assert new == decision.state
        self.state = new
        self.effects.extend(decision.effects)
        return decision.effects

    def send(self, req: SendRequest) -> tuple[Effect, ...]:
        return self.feed(RequestEvent(req))

    def report(self, st: DeliveryStatus) -> tuple[Effect, ...]:
        return self.feed(StatusEvent(st))

    def stop(self, c: CancelRequest) -> tuple[Effect, ...]:
        return self.feed(CancelEvent(c))

    def control(self, record: ChannelControl | None, key: str | None = None) -> tuple[Effect, ...]:
        """A channel-control record (``None``: a tombstone of ``key``): into the view, then to the message."""
        if key is None:
            assert record is not None
            key = record.key
        return self.feed(ControlEvent(key, record))

    def tick(self) -> tuple[Effect, ...]:
        return self.feed(TimerEvent())

    # ------------------------------------------------------------------------------------ time

    def advance(self, ms: int) -> tuple[Effect, ...]:
        """Move the clock forward by ``ms``, firing the timer at each deadline on the way."""
        return self.run_until(self.now + ms)

    def run_until(self, when: int) -> tuple[Effect, ...]:
        out: list[Effect] = []
        while (
            self.state is not None and self.state.deadline_ms is not None and self.state.deadline_ms <= when
        ):
            self.now = max(self.now, self.state.deadline_ms)
            out.extend(self.tick())
        self.now = max(self.now, when)
        return tuple(out)

    def drain_until_commands(self, count: int) -> None:
        """Fire timers until ``count`` commands were issued (fails if the state ends first)."""
        for _ in range(100):
            if len(self.commands) >= count:
                return
            assert self.state is not None and self.state.deadline_ms is not None, "ended before the command"
            self.now = max(self.now, self.state.deadline_ms)
            self.tick()
        raise AssertionError("too many timers")

    def drain(self) -> tuple[Effect, ...]:
        """Fire timers until the state is gone (every message ends and is eventually forgotten)."""
        out: list[Effect] = []
        for _ in range(100):
            if self.state is None:
                return tuple(out)
            assert self.state.deadline_ms is not None, "a stored state without a timer would live forever"
            self.now = max(self.now, self.state.deadline_ms)
            out.extend(self.tick())
        raise AssertionError("state never went away")

    # -------------------------------------------------------------------------------- findings

    @property
    def commands(self) -> list[RetryCommand]:
        return [e.command for e in self.effects if isinstance(e, SendCommand)]

    @property
    def outcomes(self) -> list[Outcome]:
        return [e.outcome for e in self.effects if isinstance(e, EmitOutcome)]

    @property
    def outcome(self) -> Outcome:
        (only,) = self.outcomes
        return only

    @property
    def lates(self) -> list[LateStatus]:
        return [e.late for e in self.effects if isinstance(e, EmitLateStatus)]

    @property
    def dead_letters(self) -> list[str]:
        return [e.reason for e in self.effects if isinstance(e, DeadLetter)]


def commands_of(effects: tuple[Effect, ...]) -> list[RetryCommand]:
    return [e.command for e in effects if isinstance(e, SendCommand)]


def outcomes_of(effects: tuple[Effect, ...]) -> list[Outcome]:
    return [e.outcome for e in effects if isinstance(e, EmitOutcome)]
