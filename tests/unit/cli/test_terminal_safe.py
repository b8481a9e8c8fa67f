"""``channel list`` and ``dead-letters`` print text written by others (a control record's reason and
tenant, a refused record's key and value): an escape sequence in it must not reach the terminal
as one, and a newline in it must not forge a line of the table (stream_app/terminal.py)."""

from __future__ import annotations

import pytest

from stream_app.admin import channels
from stream_app.admin.dead_letters import DeadLetter, format_line
from stream_app.admin.follow import Raw
from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts import decode_control

CLEAR = "\x1b[2J"


def test_channel_list_escapes_a_reason_and_a_tenant_regression(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reason with ESC [ 2 J cleared the operator's screen; one with a newline printed a line
    that looked like a row of the table."""
    key = b"t\x1b[31m/WHATSAPP"
    value = (
        b'{"type": "channel-control", "channel": "WHATSAPP", "tenant": "t\\u001b[31m", "state": "CLOSED",'
        b' "reason": "outage\\u001b[2J\\nSMS  OPEN  -  -  forged", "at": "2026-04-09T10:00:00Z"}'
    )
    record = decode_control(value, key)

    async def table(settings: Settings) -> tuple[list[channels.Entry], int]:
        return [channels.Entry(key.decode(), record, 0, 0)], 0

    monkeypatch.setattr(channels, "read_table", table)
    assert main(["channel", "list", "--bootstrap-servers", "127.0.0.1:1"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "outage\\x1b[2J\\x0aSMS  OPEN  -  -  forged" in out
    assert "t\\x1b[31m/WHATSAPP" in out
    assert len(out.splitlines()) == 2  # the heading and the one row


def test_dead_letter_line_escapes_the_refused_key_and_value_regression() -> None:
    """The preview of a refused record kept its ESC bytes: ``key=esc<ESC>[2J`` cleared the screen."""
    raw = Raw(
        partition=0,
        offset=7,
        timestamp_ms=1_775_722_800_000,
        key=f"m{CLEAR}".encode(),
        value=f'{{"messageId": "m{CLEAR}"}}'.encode(),
        headers=(("__error.reason", f"bad{CLEAR}".encode()), ("__error.source.topic", b"send-requests")),
    )
    line = format_line(DeadLetter.of(raw))
    assert "\x1b" not in line
    assert "key=m\\x1b[2J" in line and "bad\\x1b[2J" in line
