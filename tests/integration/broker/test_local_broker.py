"""LocalBroker and `stream-app broker` against the real Tansu binary (each test its own broker)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream_app.broker import BrokerStartError, LocalBroker, PortInUse, kafka_ready
from tests.support.broker import free_port
from tests.support.kafka import consume_until, create_topics, produce, unique_prefix


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); stop() reaps, so a reaped pid is gone for real.
    return True


async def test_start_produce_consume_stop() -> None:
    broker = LocalBroker(port=free_port())
    with broker:
        assert kafka_ready(broker.host, broker.port)
        topic = unique_prefix() + "roundtrip"
        await create_topics(broker.bootstrap_servers, [topic], partitions=2)
        partition, offset = await produce(
            broker.bootstrap_servers, topic, "m1", b'{"x":1}', headers=[("traceparent", b"00-ab")]
        )
        [record] = await consume_until(broker.bootstrap_servers, topic, count=1, timeout=10)
        assert (record.key, record.value, record.partition, record.offset) == (
            b"m1",
            b'{"x":1}',
            partition,
            offset,
        )
        assert list(record.headers) == [("traceparent", b"00-ab")]
        pid = broker.pid
        assert pid is not None
    assert not broker.running
    assert not _pid_alive(pid)
    assert not kafka_ready(broker.host, broker.port, timeout=0.5)


async def test_async_context_manager() -> None:
    async with LocalBroker(port=free_port()) as broker:
        assert broker.running
        assert kafka_ready(broker.host, broker.port)
    assert not broker.running


def test_port_taken_by_another_broker_is_a_clear_error() -> None:
    with LocalBroker(port=free_port()) as first:
        second = LocalBroker(port=first.port)
        with pytest.raises(PortInUse) as info:
            second.start()
        assert str(info.value) == f"port {first.port} is in use on 127.0.0.1: another broker? use --port"
        assert not second.running
        assert first.running and kafka_ready(first.host, first.port)


def test_port_taken_by_anything_is_a_clear_error() -> None:
    with socket.create_server(("127.0.0.1", free_port())) as server:
        port = server.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} is in use"):
            LocalBroker(port=port).start()


def test_binary_that_exits_reports_its_exit_code(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: cannot open storage' >&2\nexit 3\n")
    fake.chmod(0o755)
    broker = LocalBroker(port=free_port(), binary=fake, start_timeout=10)
    with pytest.raises(BrokerStartError, match=r"exited with code 3: boom: cannot open storage"):
        broker.start()
    assert not broker.running


def test_binary_that_never_answers_times_out(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'still booting'\nexec sleep 30\n")
    fake.chmod(0o755)
    # 127.0.0.2 (loopback too): on 127.0.0.1 another test's broker, started between the port check
    # and the probe, answered the probe once on a busy machine, and the start "succeeded".
    host = "127.0.0.2"
    broker = LocalBroker(host=host, port=free_port(host), binary=fake, start_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(
        BrokerStartError, match=r"did not answer .* within 0.5 s \(last output: still booting\)"
    ):
        broker.start()
    assert time.monotonic() - started < 7  # the 0.5 s wait plus at most the 5 s stop grace
    assert not broker.running


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "stream_app", *args]


async def test_cli_runs_in_foreground_until_sigterm() -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        *_cli("broker", "--port", str(port), "--quiet"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert f"broker ready at {bootstrap}" in line.decode()
        topic = unique_prefix() + "cli"
        await create_topics(bootstrap, [topic])
        await produce(bootstrap, topic, b"k", b"v")
        [record] = await consume_until(bootstrap, topic, timeout=10)
        assert record.value == b"v"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
    assert proc.returncode == 0, err
    assert b"broker stopped" in err
    assert not kafka_ready("127.0.0.1", port, timeout=0.5)


def test_cli_port_taken_prints_one_line() -> None:
    with LocalBroker(port=free_port()) as broker:
        done = subprocess.run(
            _cli("broker", "--port", str(broker.port)), capture_output=True, text=True, timeout=30
        )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"stream-app: error: port {broker.port} is in use on 127.0.0.1: another broker? use --port"
    )


def test_advertised_name_need_not_resolve_here() -> None:
    """Listening on all interfaces for other machines: readiness is probed on loopback."""
    broker = LocalBroker("0.0.0.0", free_port(), advertised_host="broker.invalid", start_timeout=10)
    with broker:
        assert broker.bootstrap_servers == f"broker.invalid:{broker.port}"
        assert kafka_ready("127.0.0.1", broker.port)
