"""``stream-app channel close|open|list`` against a real broker: what it publishes and what it shows."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts import decode_control
from tests.support.kafka import consume_until, create_topics, produce, unique_prefix


@pytest.fixture
def env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    prefix = unique_prefix()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", prefix)
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)
    asyncio.run(create_topics(kafka_bootstrap, settings))
    yield settings


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_close_publishes_a_valid_record_under_its_key(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    before = datetime.now(UTC)
    code, out, err = cli(
        capsys,
        "channel",
        "close",
        "whatsapp",
        "--tenant",
        "acme",
        "--until",
        "2h",
        "--reason",
        "outage",
        "--in-flight",
        "fallback",
    )
    assert (code, err) == (0, "")
    assert out.startswith("closed WHATSAPP for tenant acme until ")
    assert "in-flight attempts fall back at once (key acme/WHATSAPP, " in out
    [rec] = asyncio.run(consume_until(env.bootstrap_servers, env.topics.channel_control))
    assert rec.key == b"acme/WHATSAPP"
    record = decode_control(rec.value, rec.key)
    assert (record.state, record.in_flight, record.reason, record.tenant) == (
        "CLOSED",
        "FALLBACK",
        "outage",
        "acme",
    )
    assert record.until is not None
    assert timedelta(hours=2) <= record.until - before < timedelta(hours=2, minutes=1)


def test_open_and_list_show_the_table(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "channel", "list")[1].startswith("no channel-control records")
    assert cli(capsys, "channel", "close", "SMS", "--until", "2026-01-01T00:00:00Z")[0] == 2  # the past
    assert cli(capsys, "channel", "close", "SMS")[0] == 0
    assert cli(capsys, "channel", "close", "RCS", "--reason", "agent down")[0] == 0
    assert cli(capsys, "channel", "open", "RCS")[0] == 0
    asyncio.run(produce(env.bootstrap_servers, env.topics.channel_control, b"VIBER", b"{not json"))
    code, out, err = cli(capsys, "channel", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["KEY", "STATE", "UNTIL", "IN-FLIGHT", "AT", "REASON"]
    assert lines[1].split()[:4] == ["RCS", "OPEN", "-", "-"]
    assert lines[2].split()[:4] == ["SMS", "CLOSED", "-", "WAIT"]
    assert lines[3].startswith("(1 invalid record(s) skipped")
    code, out, _ = cli(capsys, "channel", "list", "--json")
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [(r["key"], r["closedNow"], r["record"]["state"]) for r in rows] == [
        ("RCS", False, "OPEN"),
        ("SMS", True, "CLOSED"),
    ]


def test_bad_input_is_one_line_and_publishes_nothing(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "channel", "close", "FAX")
    assert (code, out) == (2, "")
    assert err.startswith("stream-app: error: channel control: channel: Input should be 'WHATSAPP'")
    assert err.count("\n") == 1
    code, _, err = cli(capsys, "channel", "close", "SMS", "--until", "soon")
    assert code == 2 and err.startswith("stream-app: error: --until 'soon': give a duration")
    assert cli(capsys, "channel", "list")[1].startswith("no channel-control records")


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["channel", "close", "--help"])
    out = capsys.readouterr().out
    assert "--in-flight {wait,fallback}" in out and "--until DURATION|TIME" in out
    assert "docs/semantics.md" in out and "stream-app channel close WHATSAPP --until 2h" in out
