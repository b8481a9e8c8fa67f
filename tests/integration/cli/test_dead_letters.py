"""``stream-app dead-letters`` against a real broker: snapshot, --json, --source-topic, --follow."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts.headers import dead_letter_headers
from tests.support.kafka import create_topics, produce, produce_batch, unique_prefix

CLI = [sys.executable, "-m", "stream_app"]


@pytest.fixture
def env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    prefix = unique_prefix()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", prefix)
    yield Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def dead_letter(env: Settings, key: str, value: bytes, reason: str, source: str) -> None:
    headers = dead_letter_headers(reason, source, 2, 41, "InvalidRecord")
    asyncio.run(produce(env.bootstrap_servers, env.topics.dead_letters, key, value, headers))


def test_every_dead_letter_with_its_reason_then_exit(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(create_topics(env.bootstrap_servers, env))
    assert cli(capsys, "dead-letters") == (0, "", f"no dead letters on {env.topics.dead_letters}\n")
    dead_letter(env, "m-1", b'{"messageId":"m-1"}', "destination: required", env.topics.send_requests)
    dead_letter(env, "m-2", b"\xff", "record: not JSON", env.topics.delivery_status)

    code, out, err = cli(capsys, "dead-letters")
    assert (code, err) == (0, "")
    lines = sorted(out.splitlines(), key=lambda line: "m-2" in line)
    assert len(lines) == 2
    assert f"  {env.topics.send_requests}[2]@41  InvalidRecord  destination: required  key=m-1 " in lines[0]

    code, out, _ = cli(capsys, "dead-letters", "--json", "--source-topic", "delivery-status")
    [body] = [orjson.loads(line) for line in out.splitlines()]
    assert (code, body["key"], body["valueBase64"], body["reason"]) == (0, "m-2", "/w==", "record: not JSON")


def test_bad_options_and_a_missing_topic_are_one_line(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "dead-letters", "--max", "0") == (
        2,
        "",
        "stream-app: error: --max must be at least 1\n",
    )
    code, out, err = cli(capsys, "dead-letters")
    assert (code, out) == (2, "")
    assert err.startswith(f"stream-app: error: missing topic(s) {env.topics.dead_letters} on ")
    assert err.count("\n") == 1


def _wait_for_line(stream: Any, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return str(line)
    raise AssertionError(f"no line with {needle!r} within {timeout:g} s")


def _follow_shows_the_new_one_only(env: Settings) -> None:
    """``dead-letters --follow --max 1`` from now: a dead letter written once it is ready is printed
    and ends it; the old ones are not."""
    proc = subprocess.Popen(
        [*CLI, "dead-letters", "--follow", "--max", "1"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_line(proc.stderr, f"following {env.topics.dead_letters} from now")
        dead_letter(env, "new", b"{}", "new one", env.topics.send_requests)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert "new one" in out and "old one" not in out


def test_follow_shows_new_dead_letters_only_and_stops_at_max(env: Settings) -> None:
    asyncio.run(create_topics(env.bootstrap_servers, env))
    dead_letter(env, "old", b"{}", "old one", env.topics.send_requests)
    _follow_shows_the_new_one_only(env)


def test_follow_from_now_skips_the_last_batch_of_old_dead_letters_regression(env: Settings) -> None:
    """Regression: ``--follow`` started at ListOffsets(latest), which Tansu answers with the last
    batch's base offset + 1, so the rest of each partition's last batch of old dead letters was
    printed as if new."""
    asyncio.run(create_topics(env.bootstrap_servers, env))
    headers = dead_letter_headers("old one", env.topics.send_requests, 2, 41, "InvalidRecord")
    records = [(f"old-{i}".encode(), b"{}", headers) for i in range(5)]
    asyncio.run(produce_batch(env.bootstrap_servers, env.topics.dead_letters, 0, records))
    _follow_shows_the_new_one_only(env)
