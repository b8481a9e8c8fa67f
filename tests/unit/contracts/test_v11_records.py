"""v1.1 records and fields: ``sendWindow`` on a SendRequest, the ChannelControl record, ``deferredFrom``.

A bad window or control record must be refused with one line naming the field and the rule: that line
is the ``__error.reason`` of its dead letter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stream_app.contracts import (
    ChannelControl,
    ChannelState,
    CommandReason,
    InFlight,
    InvalidRecord,
    RetryCommand,
    SendRequest,
    Weekday,
    WindowScope,
    control_key,
    decode_command,
    decode_control,
    decode_request,
    encode,
)
from stream_app.contracts.models import Channel

WINDOW = {"timezone": "Europe/Rome", "days": ["MON", "TUE"], "from": "09:00", "to": "20:00"}


def send(window: Any) -> bytes:
    return orjson.dumps(
        {
            "messageId": "m-1",
            "destination": "+393401234567",
            "channels": [{"channel": "SMS"}],
            "sendWindow": window,
        }
    )


def test_a_window_decodes_with_its_defaults() -> None:
    req = decode_request(send({"timezone": "Europe/Rome", "from": "22:00", "to": "06:00"}))
    assert isinstance(req, SendRequest) and req.send_window is not None
    assert req.send_window.days == list(Weekday)
    assert req.send_window.applies_to is WindowScope.FALLBACK
    assert (req.send_window.from_, req.send_window.to) == ("22:00", "06:00")


def test_days_and_scope_are_case_insensitive() -> None:
    req = decode_request(send({**WINDOW, "days": ["mon", "Sat"], "appliesTo": "all"}))
    assert isinstance(req, SendRequest) and req.send_window is not None
    assert req.send_window.days == [Weekday.MON, Weekday.SAT]
    assert req.send_window.applies_to is WindowScope.ALL


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({**WINDOW, "timezone": "Mars/Olympus"}, "sendWindow.timezone: unknown IANA timezone 'Mars/Olympus'"),
        ({**WINDOW, "timezone": "../../etc/passwd"}, "sendWindow.timezone: unknown IANA timezone"),
        ({**WINDOW, "timezone": ""}, "sendWindow.timezone: unknown IANA timezone"),
        ({**WINDOW, "from": "9:00"}, "sendWindow.from: must be a local time HH:MM (00:00 to 23:59)"),
        ({**WINDOW, "to": "24:00"}, "sendWindow.to: must be a local time HH:MM (00:00 to 23:59)"),
        ({**WINDOW, "to": "20:00\n"}, "sendWindow.to: must be a local time HH:MM"),
        ({**WINDOW, "days": ["MON", "FUN"]}, "sendWindow.days.1: Input should be 'MON'"),
        ({**WINDOW, "days": []}, "sendWindow.days: List should have at least 1 item"),
        ({**WINDOW, "days": ["MON", "mon"]}, "sendWindow: days: a day is named twice"),
        ({**WINDOW, "to": "09:00"}, "sendWindow: from and to must differ"),
        ({**WINDOW, "appliesTo": "SOME"}, "sendWindow.appliesTo: Input should be 'FALLBACK' or 'ALL'"),
        ({"timezone": "UTC", "to": "10:00"}, "sendWindow.from: required"),
        ("09-20", "sendWindow: Input should be an object"),
    ],
)
def test_a_bad_window_is_a_bad_request(window: Any, reason: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode_request(send(window))
    assert info.value.reason.startswith(reason), info.value.reason


def test_the_window_is_part_of_the_fingerprint_only_when_given() -> None:
    plain = decode_request(send(None))
    windowed = decode_request(send(WINDOW))
    other = decode_request(send({**WINDOW, "to": "21:00"}))
    assert (
        isinstance(plain, SendRequest)
        and isinstance(windowed, SendRequest)
        and isinstance(other, SendRequest)
    )
    assert len({plain.fingerprint(), windowed.fingerprint(), other.fingerprint()}) == 3
    same = decode_request(send({**WINDOW, "days": ["mon", "tue"], "appliesTo": "fallback"}))
    assert isinstance(same, SendRequest) and same.fingerprint() == windowed.fingerprint()


# --------------------------------------------------------------------------------------- channel control


def test_the_contract_example_decodes() -> None:
    record = decode_control(
        b'{"type": "channel-control", "channel": "WHATSAPP", "tenant": null, "state": "CLOSED",'
        b' "reason": "provider outage", "until": "2026-04-09T12:00:00Z", "inFlight": "WAIT",'
        b' "at": "2026-04-09T10:00:00Z"}',
        b"WHATSAPP",
    )
    assert record == ChannelControl(
        channel=Channel.WHATSAPP,
        state=ChannelState.CLOSED,
        reason="provider outage",
        until=datetime(2026, 4, 9, 12, tzinfo=UTC),
        in_flight=InFlight.WAIT,
        at=datetime(2026, 4, 9, 10, tzinfo=UTC),
    )
    assert decode_control(encode(record), b"WHATSAPP") == record


def test_words_are_case_insensitive_and_defaults_apply() -> None:
    record = decode_control(
        b'{"channel": "rcs", "tenant": "acme", "state": "closed", "inFlight": "fallback"}'
    )
    assert (record.channel, record.tenant, record.state, record.in_flight) == (
        Channel.RCS,
        "acme",
        ChannelState.CLOSED,
        InFlight.FALLBACK,
    )
    assert decode_control(b'{"channel": "SMS", "state": "OPEN"}').in_flight is InFlight.WAIT
    assert control_key(Channel.RCS, "acme") == record.key == "acme/RCS"
    assert control_key(Channel.SMS, None) == "SMS"


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"not json", None, "not valid JSON"),
        (b"[]", None, "record: must be a JSON object"),
        (b'{"channel": "FAX", "state": "CLOSED"}', None, "channel: Input should be 'WHATSAPP'"),
        (b'{"channel": "SMS", "state": "SHUT"}', None, "state: Input should be 'OPEN' or 'CLOSED'"),
        (b'{"channel": "SMS"}', None, "state: required"),
        (b'{"channel": "SMS", "state": "CLOSED", "until": 1712650000}', None, "until: must be an RFC 3339"),
        # Regression: an until past year 9000 was taken, and building it back into a time for the
        # sweep of a newly assigned partition stopped the processor, at every start.
        (
            b'{"channel": "SMS", "state": "CLOSED", "inFlight": "FALLBACK",'
            b' "until": "9999-12-31T23:59:59-23:59"}',
            None,
            "until: Input should be less than 9000-01-01T00:00:00Z",
        ),
        (
            b'{"channel": "SMS", "state": "CLOSED", "at": "9000-01-01T00:00:00Z"}',
            None,
            "at: Input should be less",
        ),
        (b'{"channel": "SMS", "state": "CLOSED", "inFlight": "NOW"}', None, "inFlight: Input should be"),
        (
            b'{"type": "cancel", "channel": "SMS", "state": "CLOSED"}',
            None,
            "type: Input should be 'channel-control'",
        ),
        (b'{"channel": "SMS", "state": "CLOSED", "tenant": ""}', None, "tenant: String should have at least"),
        (
            b'{"channel": "SMS", "state": "CLOSED", "schemaVersion": 2}',
            None,
            "schemaVersion: unsupported version",
        ),
        (b'{"channel": "SMS", "state": "CLOSED"}', b"RCS", "key: must be 'SMS' for this record, not 'RCS'"),
        (b'{"channel": "SMS", "state": "CLOSED"}', b"acme/SMS", "key: must be 'SMS' for this record"),
        (b'{"channel": "SMS", "tenant": "acme", "state": "CLOSED"}', b"SMS", "key: must be 'acme/SMS'"),
    ],
)
def test_a_bad_control_record_is_refused_with_its_reason(
    value: bytes, key: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode_control(value, key)
    assert info.value.reason.startswith(reason), info.value.reason


# --------------------------------------------------------------------------------------------- command


def test_a_deferred_skipped_command_round_trips() -> None:
    cmd = RetryCommand(
        command_id="m:1",
        message_id="m",
        attempt=1,
        channel=Channel.SMS,
        destination="+393401234567",
        reason=CommandReason.SKIPPED,
        issued_at=datetime(2026, 4, 9, 7, tzinfo=UTC),
        deferred_from=datetime(2026, 4, 8, 21, 30, tzinfo=UTC),
    )
    body = orjson.loads(encode(cmd))
    assert body["reason"] == "SKIPPED"
    assert body["deferredFrom"] == "2026-04-08T21:30:00Z"
    assert decode_command(encode(cmd)) == cmd
