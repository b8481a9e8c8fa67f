"""Every service logs in one format, chosen by ``--log-format`` (issue 13, item 8).

Run as a user would, in real processes against the session's broker: each line of stderr is a
``key=value`` line with the processor's keys, or with ``--log-format json`` a JSON object with the
same keys; a service says when it starts and when it stops (the poller used to say nothing at all).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from stream_app.config import Settings
from stream_app.gateway.testing import free_port
from tests.support.kafka import create_topics, unique_prefix

CLI = [sys.executable, "-m", "stream_app"]
KEYS = ("ts", "level", "logger", "event")


class Service:
    """A service in a child process, its stderr collected line by line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(needle in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in the log:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)

    def wait_listening(self, port: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"nothing listens on {port}:\n" + "\n".join(self.lines[-30:])
                    ) from None
                time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=10)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return rc


@pytest.fixture
def env(kafka_bootstrap: str, tmp_path: Path) -> dict[str, str]:
    prefix = unique_prefix()
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=2)
    asyncio.run(create_topics(kafka_bootstrap, settings))
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_APP_TOPIC_PREFIX": prefix,
        "STREAM_APP_GATEWAY_API_KEY": "k",
        "STREAM_APP_WEBHOOK_SECRET": "s",
        "STREAM_APP_STATE_DIR": str(tmp_path / "state"),
        "STREAM_APP_POLLER_METRICS_PORT": "0",
    }


def test_the_poller_says_when_it_starts_and_stops_in_json(env: dict[str, str]) -> None:
    service = Service(["poller", "--log-format", "json"], env)
    service.wait_for('"event":"poller_started"')
    rc = service.stop()
    assert rc == 0, "\n".join(service.lines)
    objects = [orjson.loads(line) for line in service.lines]  # every line is JSON
    assert all(all(key in obj for key in KEYS) for obj in objects), service.lines
    events = [obj["event"] for obj in objects]
    for expected in (
        "poller_started",
        "service_stopping",
        "poller_stopped",
        "service_stopped",
    ):
        assert expected in events, events
    started = next(obj for obj in objects if obj["event"] == "poller_started")
    assert started["partitions"] == 2 and started["min_interval"] == 1.0


def test_the_webhook_logs_key_value_lines_like_the_processor(env: dict[str, str]) -> None:
    port = free_port()
    service = Service(["webhook", "--port", str(port)], env)
    service.wait_listening(port)
    rc = service.stop()
    assert rc == 0, "\n".join(service.lines)
    assert service.lines
    for line in service.lines:
        assert line.startswith("ts=") and " level=" in line and " logger=" in line and " event=" in line, line
    assert any("event=service_stopped service=webhook" in line for line in service.lines)


def test_the_log_format_comes_from_the_environment(env: dict[str, str]) -> None:
    port = free_port()
    service = Service(["gateway-sim", "--port", str(port)], {**env, "STREAM_APP_LOG_FORMAT": "json"})
    service.wait_listening(port)
    assert service.stop() == 0
    assert [orjson.loads(line)["event"] for line in service.lines][-1] == "service_stopped"


def test_a_bad_log_format_in_the_environment_is_one_line(env: dict[str, str]) -> None:
    done = subprocess.run(
        [*CLI, "gateway-sim", "--port", "0"],
        env={**env, "STREAM_APP_LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "stream-app: error: STREAM_APP_LOG_FORMAT='xml': choose one of kv, json"
    ]
