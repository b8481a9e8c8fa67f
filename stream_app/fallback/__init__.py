"""The pure fallback decision core: flow state, inputs, effects and :func:`decide`.

Knows the contracts and nothing else: no Kafka, no HTTP, no asyncio, no clock reads. The runtime
feeds it one input at a time per messageId with the current time and produces the effects it returns.
"""

from stream_app.fallback.codec import decode_state, encode_state
from stream_app.fallback.control import NO_CONTROLS, Closure, ControlView
from stream_app.fallback.core import MAX_HELD, MAX_REASON_CHARS, MAX_REASONS, decide
from stream_app.fallback.errors import FallbackError, StateDecodeError
from stream_app.fallback.state import (
    NO_TIMES,
    Attempt,
    CancelEvent,
    ControlEvent,
    DeadLetter,
    Decision,
    Deferred,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Held,
    Limits,
    Phase,
    RequestEvent,
    SendCommand,
    Signal,
    StatusEvent,
    Step,
    TimerEvent,
)
from stream_app.fallback.window import Window, window_of

__all__ = [
    "MAX_HELD",
    "MAX_REASONS",
    "MAX_REASON_CHARS",
    "NO_CONTROLS",
    "NO_TIMES",
    "Attempt",
    "CancelEvent",
    "Closure",
    "ControlEvent",
    "ControlView",
    "DeadLetter",
    "Decision",
    "Deferred",
    "Effect",
    "EmitLateStatus",
    "EmitOutcome",
    "Event",
    "FallbackError",
    "FlowState",
    "Held",
    "Limits",
    "Phase",
    "RequestEvent",
    "SendCommand",
    "Signal",
    "StateDecodeError",
    "StatusEvent",
    "Step",
    "TimerEvent",
    "Window",
    "decide",
    "decode_state",
    "encode_state",
    "window_of",
]
