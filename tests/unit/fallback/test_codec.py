"""The compact binary form of the flow state: round trips, size, and refusal of bad bytes."""

from __future__ import annotations

import pytest

from stream_app.contracts import AttemptEnd, Channel, Status
from stream_app.fallback import (
    Attempt,
    FlowState,
    Held,
    Phase,
    Signal,
    StateDecodeError,
    Step,
    decode_state,
    encode_state,
)
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
    with pytest.raises(StateDecodeError, match="unknown version 9"):
        decode_state(b"\x09" + data[1:])


def test_unknown_codes_are_refused() -> None:
    st = FlowState(phase=Phase.RUNNING, message_id="m", steps=(Step(Channel.SMS, None, 3),))
    data = bytearray(encode_state(st))
    data[1] = 7  # phase
    with pytest.raises(StateDecodeError):
        decode_state(bytes(data))
