"""The compact binary form of the flow state: round trips, size, and refusal of bad bytes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from stream_app.contracts import AttemptEnd, Channel, CommandReason, Status
from stream_app.fallback import (
    NO_TIMES,
    Attempt,
    Deferred,
    FlowState,
    Held,
    Phase,
    Signal,
    StateDecodeError,
    Step,
    Window,
    decode_state,
    encode_state,
)
from stream_app.fallback.codec import VERSION
from tests.unit.fallback.driver import HOUR, MINUTE, T0, Driver, request, status

PENDING_3_STEP_LIMIT = 300  # issue 2's aim for a pending 3-step flow without content


def three_step_pending(content: bool) -> FlowState:
    body = {"text": "Gentile Giulia, e stata registrata una transazione di EUR 1.250,00."} if content else {}
    d = Driver()
    d.send(
        request(
            "txn-notifica-20260409-001",
            tenant="banca-adriatica",
            campaignId="txn-2026-04",
            channels=[
                {"channel": "WHATSAPP", "fallbackAfter": 600, "content": body},
                {"channel": "RCS", "fallbackAfter": 300, "content": body},
                {"channel": "SMS", "content": body},
            ],
            ttl=3600,
        )
    )
    d.report(
        status(
            "WHATSAPP", "SENT", 0, "txn-notifica-20260409-001", providerMessageId="wamid.HBgLMzkzNDAxMjM0NTY3"
        )
    )
    assert d.state is not None and d.state.phase is Phase.RUNNING
    return d.state


def test_pending_three_step_flow_is_under_300_bytes_without_content() -> None:
    data = encode_state(three_step_pending(content=False))
    assert len(data) < PENDING_3_STEP_LIMIT, len(data)


def test_running_state_round_trips() -> None:
    st = three_step_pending(content=True)
    assert decode_state(encode_state(st)) == st


def test_holding_state_with_every_optional_round_trips() -> None:
    st = FlowState(
        phase=Phase.HOLDING,
        message_id="m" * 150 + "é",  # longer than one varint byte, and not ASCII
        deadline_ms=T0 + 5,
        held=[
            Held(Signal(None, Channel.VIBER, Status.READ, None, None), T0 + 5),
            Held(Signal(7, Channel.SMS, Status.EXPIRED, "p" * 300, -12), T0 + 9),
        ],
    )
    assert decode_state(encode_state(st)) == st


def test_ended_state_round_trips_and_is_small() -> None:
    st = FlowState(
        phase=Phase.ENDED,
        message_id="msg-1",
        deadline_ms=T0 + 24 * HOUR,
        fingerprint=bytes(range(16)),
        completed_ms=T0,
        requested_ms=T0 - MINUTE,
        end_ms=T0 + HOUR,
        simulation=True,
        steps=(Step(Channel.WHATSAPP, 10**11, 4), Step(Channel.SMS, None, 1)),
        attempts=[
            Attempt(T0 - MINUTE, Status.SENT, AttemptEnd.TIMEOUT, None),
            Attempt(T0, Status.ACCEPTED, AttemptEnd.SUCCEEDED, "x"),
        ],
    )
    data = encode_state(st)
    assert decode_state(data) == st
    assert len(data) < 100


def test_state_without_deadline_tenant_or_campaign_keeps_them_absent() -> None:
    st = FlowState(phase=Phase.RUNNING, message_id="m", tenant=None, campaign_id=None, deadline_ms=None)
    back = decode_state(encode_state(st))
    assert (back.deadline_ms, back.tenant, back.campaign_id) == (None, None, None)
    st2 = FlowState(phase=Phase.RUNNING, message_id="m", tenant="", campaign_id="", deadline_ms=0)
    back2 = decode_state(encode_state(st2))
    assert (back2.deadline_ms, back2.tenant, back2.campaign_id) == (0, "", "")


def test_every_truncation_is_a_clear_error() -> None:
    data = encode_state(three_step_pending(content=True))
    for cut in range(len(data)):
        with pytest.raises(StateDecodeError, match=r"^flow state: "):
            decode_state(data[:cut])


def test_trailing_bytes_are_refused() -> None:
    data = encode_state(three_step_pending(content=False))
    with pytest.raises(StateDecodeError, match="trailing"):
        decode_state(data + b"\x00")


def test_unknown_version_is_refused_with_its_number() -> None:
    data = encode_state(three_step_pending(content=False))
    with pytest.raises(StateDecodeError, match=r"unknown version 9; this build reads versions 1, 2, 3$"):
        decode_state(b"\x09" + data[1:])


# ------------------------------------------------------------------ version 2: per-attempt facts


def test_attempt_facts_round_trip_with_times_either_side_of_the_issue() -> None:
    st = FlowState(
        phase=Phase.RUNNING,
        message_id="m",
        steps=(Step(Channel.WHATSAPP, 600_000, 3), Step(Channel.RCS, 1, 3), Step(Channel.SMS, None, 3)),
        attempts=[
            # a held report from before the request; a time far away; every time set; reasons only
            Attempt(T0, Status.REJECTED, AttemptEnd.FAILED, "p", (T0 - 400, None, None, None), ("é" * 200,)),
            Attempt(T0, Status.READ, AttemptEnd.SUCCEEDED, None, (T0, T0 + 1, T0 + 10**12, -(10**13))),
            Attempt(T0, Status.ERROR, None, None, NO_TIMES, ("a", "b", "c", "d")),
        ],
        held=[],
    )
    assert decode_state(encode_state(st)) == st


def test_held_reasons_round_trip() -> None:
    st = FlowState(
        phase=Phase.HOLDING,
        message_id="m",
        deadline_ms=T0,
        held=[Held(Signal(0, Channel.WHATSAPP, Status.REJECTED, None, T0, ("template: required",)), T0)],
    )
    assert decode_state(encode_state(st)) == st


def test_an_attempt_with_no_facts_costs_one_byte_and_two_times_a_few_more() -> None:
    bare = FlowState(phase=Phase.RUNNING, message_id="m", attempts=[Attempt(T0, Status.SENT)])
    timed = FlowState(
        phase=Phase.RUNNING,
        message_id="m",
        attempts=[Attempt(T0, Status.SENT, status_times=(T0 + 800, T0 + 2_500, None, None))],
    )
    empty = FlowState(phase=Phase.RUNNING, message_id="m")
    assert len(encode_state(bare)) - len(encode_state(empty)) == 8 + 1 + 1 + 1 + 1  # issued..no id, facts
    assert len(encode_state(timed)) - len(encode_state(bare)) == 2 + 2  # zigzag 1600 and 5000: 2 bytes each


def test_unknown_attempt_facts_are_refused() -> None:
    data = bytearray(encode_state(FlowState(phase=Phase.RUNNING, message_id="m", attempts=[Attempt(T0)])))
    assert data[-3] == 0  # the facts byte, before the empty held list and opaque
    data[-3] = 0x20
    with pytest.raises(StateDecodeError, match="unknown attempt facts 0x20"):
        decode_state(bytes(data))


# Bytes written by the version 1 codec (commit 3b343eb), kept verbatim: stores and changelogs written
# before the upgrade must still be read after it.
V1_PENDING = bytes.fromhex(
    "01010e603758719d010000a00f4f719d01000020fe85719d0100000000000000000000105de05fb10183287ffe530a83d7f644"
    "6c1974786e2d6e6f7469666963612d32303236303430392d3030310d2b3339333430313233343536370f62616e63612d616472"
    "6961746963610b74786e2d323032362d3034030003c1cf240103e1a71202030001a00f4f719d01000002001b77616d69642e48"
    "42674c4d7a6b7a4e4441784d6a4d304e545933000d5b7b7d2c7b7d2c7b7d2c7b7d5d"
)
V1_HOLDING = bytes.fromhex(
    "010002a50f4f719d01000000000000000000000000000000000000000000000000000000056d73672d68000000020003040"
    "0a50f4f719d01000000000000000000000002020501a90f4f719d010000940f4f719d01000004702d3100"
)
V1_ENDED = bytes.fromhex(
    "010203a06b75769d01000040254e719d01000020fe85719d010000a00f4f719d01000010000102030405060708090a0b0c0d0e"
    "0f056d73672d310002000481d0dbc3f4020201000240254e719d010000020300a00f4f719d010000010102780000"
)


def test_version_1_states_still_decode_with_no_facts() -> None:
    pending = decode_state(V1_PENDING)
    now = three_step_pending(content=False)  # the same flow, as this build holds it: with the SENT time
    assert pending == replace(now, attempts=[replace(now.attempts[0], status_times=NO_TIMES)])
    assert pending.attempts[0].status_times == NO_TIMES and pending.attempts[0].reasons == ()
    holding = decode_state(V1_HOLDING)
    assert holding == FlowState(
        phase=Phase.HOLDING,
        message_id="msg-h",
        deadline_ms=T0 + 5,
        held=[
            Held(Signal(None, Channel.VIBER, Status.READ, None, None), T0 + 5),
            Held(Signal(1, Channel.SMS, Status.REJECTED, "p-1", T0 - 12), T0 + 9),
        ],
    )
    ended = decode_state(V1_ENDED)
    assert ended.phase is Phase.ENDED and [a.provider_message_id for a in ended.attempts] == [None, "x"]


def test_a_version_1_state_is_rewritten_as_the_current_version() -> None:
    """What the processor does with an old state it reads: decide, then store the new bytes."""
    st = decode_state(V1_HOLDING)
    data = encode_state(st)
    assert data[0] == VERSION == 3 and decode_state(data) == st
    for old in (V1_PENDING, V1_ENDED):
        again = encode_state(decode_state(old))
        assert decode_state(again) == decode_state(old)
        assert len(again) == len(old) + len(decode_state(old).attempts)  # one facts byte per attempt


def test_every_truncation_of_a_version_1_state_is_a_clear_error() -> None:
    for cut in range(len(V1_PENDING)):
        with pytest.raises(StateDecodeError, match=r"^flow state: "):
            decode_state(V1_PENDING[:cut])


def test_unknown_codes_are_refused() -> None:
    st = FlowState(phase=Phase.RUNNING, message_id="m", steps=(Step(Channel.SMS, None, 3),))
    data = bytearray(encode_state(st))
    data[1] = 7  # phase
    with pytest.raises(StateDecodeError):
        decode_state(bytes(data))


# ------------------------------------------------------------ version 3: send window, deferral, SKIPPED

# Bytes written by the version 2 codec (the build before issue 12), kept verbatim: the pending flow of
# three_step_pending(content=False).
V2_PENDING = bytes.fromhex(
    "02010e603758719d010000a00f4f719d01000020fe85719d0100000000000000000000105de05fb10183287ffe530a83d7f644"
    "6c1974786e2d6e6f7469666963612d32303236303430392d3030310d2b3339333430313233343536370f62616e63612d616472"
    "6961746963610b74786e2d323032362d3034030003c1cf240103e1a71202030001a00f4f719d01000002001b77616d69642e48"
    "42674c4d7a6b7a4e4441784d6a4d304e5459330200000d5b7b7d2c7b7d2c7b7d2c7b7d5d"
)


def test_version_2_states_still_decode_with_no_window() -> None:
    old = decode_state(V2_PENDING)
    assert old == three_step_pending(content=False)
    assert old.window is None and old.deferred is None
    again = encode_state(old)
    assert again[0] == 3 and again[1:] == V2_PENDING[1:]  # nothing new to say: same layout
    for cut in range(len(V2_PENDING)):
        with pytest.raises(StateDecodeError, match=r"^flow state: "):
            decode_state(V2_PENDING[:cut])


def test_window_deferral_and_skipped_attempts_round_trip() -> None:
    st = FlowState(
        phase=Phase.RUNNING,
        message_id="m",
        deadline_ms=T0 + HOUR,
        tenant="acme",
        steps=(Step(Channel.WHATSAPP, 600_000, 3), Step(Channel.RCS, None, 3), Step(Channel.SMS, None, 3)),
        attempts=[Attempt(T0, Status.SENT, AttemptEnd.TIMEOUT), Attempt(T0 + 1, None, AttemptEnd.SKIPPED)],
        window=Window("America/Argentina/Buenos_Aires", 0b1011111, 22 * 60 + 30, 6 * 60 + 15, True),
        deferred=Deferred(T0 + 1, T0 + HOUR, CommandReason.SKIPPED),
    )
    data = encode_state(st)
    assert decode_state(data) == st
    for reason in CommandReason:
        other = replace(st, window=None, deferred=Deferred(-5, 10**13, reason))
        assert decode_state(encode_state(other)) == other
    for cut in range(len(data)):
        with pytest.raises(StateDecodeError, match=r"^flow state: "):
            decode_state(data[:cut])


def test_unknown_flags_of_version_3_are_refused() -> None:
    data = bytearray(encode_state(FlowState(phase=Phase.RUNNING, message_id="m")))
    data[2] |= 0x40
    with pytest.raises(StateDecodeError, match="unknown flags 0x40"):
        decode_state(bytes(data))


def test_the_phase_byte_is_the_phase_value_and_an_unknown_one_is_refused() -> None:
    # The decoder reads the phase from a table (not Phase(byte)): the table is indexed by value.
    for phase in Phase:
        state = FlowState(phase=phase, message_id="m")
        assert decode_state(encode_state(state)).phase is phase
    data = bytearray(encode_state(FlowState(phase=Phase.RUNNING, message_id="m")))
    data[1] = len(Phase)  # the header: version, then phase
    with pytest.raises(StateDecodeError, match=r"^flow state: corrupt or truncated \(unknown phase 3\)$"):
        decode_state(bytes(data))
