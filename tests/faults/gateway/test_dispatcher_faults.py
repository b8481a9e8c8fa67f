"""Dispatcher under gateway faults and crashes: every command ends as exactly one gateway send and
one ACCEPTED/REJECTED status. The simulator counts sends per customer message id (our commandId)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from stream_app.config import Settings
from stream_app.contracts import Status, decode_status
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import Simulator, parse_rules
from stream_app.gateway.testing import free_port, running_simulator
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_all,
    read_statuses,
    running_dispatcher,
)


def _gateway(url: str, **over: object) -> GatewaySettings:
    values: dict[str, object] = {"url": url, "api_key": "test-key", "backoff_base": 0.02, "backoff_max": 0.3}
    values.update(over)
    return GatewaySettings(**values)  # type: ignore[arg-type]


def _assert_once_each(sim: Simulator, cids: list[str]) -> None:
    assert {cid: sim.state.sends[cid] for cid in cids} == dict.fromkeys(cids, 1)
    assert set(sim.state.sends) == set(cids), "a send for a command nobody issued"


async def _statuses_per_command(bootstrap: str, settings: Settings, cids: list[str]) -> Counter[str]:
    """How many statuses each command got, read until every command has one (and a little longer)."""
    wanted = set(cids)

    def complete(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
        return wanted <= {_cid(r) for r in records}

    records = await read_all(bootstrap, settings.topics.delivery_status, complete)
    return Counter(_cid(r) for r in records)


def _cid(record: ConsumerRecord[bytes, bytes]) -> str:
    status = decode_status(record.value or b"")
    return f"{status.message_id}:{status.attempt}"


async def test_429_storm_500s_and_lost_answers(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Every destination: 3 rate-limited calls, then 2 HTTP 500s; a third of them answer only after the
    client's timeout (the send happened, the answer is lost)."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "7", "rateLimit": 3, "retryAfter": 0.05, "fail": 2, "delay": 0.6},'
        b' {"rateLimit": 3, "retryAfter": 0.05, "fail": 2}]}'
    )
    n = 90
    cmds = [command(f"s{i}", destination=f"+3934012345{i % 10}{i % 10}") for i in range(n)]
    cids = [f"s{i}:0" for i in range(n)]
    async with running_simulator(rules) as (sim, url):
        async with running_dispatcher(settings, _gateway(url, timeout=0.25)) as disp:
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in cmds])
            per_command = await _statuses_per_command(kafka_bootstrap, settings, cids)
        _assert_once_each(sim, cids)
    assert per_command == Counter(cids), "each command: exactly one status"
    assert disp.counts["rate_limited"] >= 10 and disp.counts["transient"] >= 10
    assert disp.counts["resolved_by_status"] >= 1  # lost answers were resolved by asking, not resending


class _ResettingProxy:
    """A TCP proxy that resets the client connection instead of relaying every ``every``-th answer.

    The request has reached the gateway by then, so the client sees a reset on a send that happened.
    """

    def __init__(self, upstream_port: int, every: int) -> None:
        self.upstream_port = upstream_port
        self.every = every
        self.answers = 0
        self.resets = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [writer, up_writer]

        async def pipe_up() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            up_writer.close()

        async def pipe_down() -> None:
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    self.answers += 1
                    if self.answers % self.every == 0:
                        self.resets += 1
                        sock = writer.get_extra_info("socket")
                        # SO_LINGER 0: close() sends RST, a real connection reset.
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    writer.write(data)
                    await writer.drain()
            writer.close()

        await asyncio.gather(pipe_up(), pipe_down())

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        port = free_port()
        server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            for w in self.writers:
                w.transport.abort()
            await server.wait_closed()


async def test_connection_resets_after_the_request_never_double_send(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    n = 60
    cmds = [command(f"r{i}") for i in range(n)]
    cids = [f"r{i}:0" for i in range(n)]
    async with running_simulator() as (sim, url):
        proxy = _ResettingProxy(int(url.rsplit(":", 1)[1]), every=4)
        async with proxy.serve() as proxied, running_dispatcher(settings, _gateway(proxied)) as disp:
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in cmds])
            per_command = await _statuses_per_command(kafka_bootstrap, settings, cids)
        _assert_once_each(sim, cids)
    assert proxy.resets >= 5
    assert disp.counts["resolved_by_status"] >= 1
    assert per_command == Counter(cids)


@pytest.mark.slow
async def test_dispatcher_killed_mid_batch_and_restarted(kafka_bootstrap: str, tmp_path: Path) -> None:
    """kill -9 the dispatcher process twice while it works through 300 commands, restart it each time."""
    settings = await make_settings(kafka_bootstrap, tmp_path / "state")
    # 40 ms per answer and 8 in flight: 300 commands take about 1.5 s of sending, so kills land mid-batch.
    rules = parse_rules(b'{"rules": [{"delay": 0.04}]}')
    n = 300
    cmds = [command(f"k{i}", channel=("SMS", "RCS", "WHATSAPP")[i % 3]) for i in range(n)]
    cids = [f"k{i}:0" for i in range(n)]
    async with running_simulator(rules) as (sim, url):
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "STREAM_APP_TOPIC_PREFIX": settings.topic_prefix,
            "STREAM_APP_APP_ID": settings.app_id,
            "STREAM_APP_STATE_DIR": str(settings.state_dir),
            "STREAM_APP_GATEWAY_URL": url,
            "STREAM_APP_GATEWAY_API_KEY": "test-key",
            "STREAM_APP_DISPATCH_CONCURRENCY": "8",
            "STREAM_APP_DISPATCHER_METRICS_PORT": "0",  # its default port may be taken on a shared host
        }
        cmd = [sys.executable, "-m", "stream_app", "dispatcher"]

        log_path = tmp_path / "dispatcher.log"

        def start() -> subprocess.Popen[bytes]:
            # stderr to a file, never a pipe nobody reads: a full pipe would stall the dispatcher.
            with log_path.open("ab") as log:
                return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)

        def log_tail() -> str:
            return "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])

        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in cmds])
        sent_before_kill: list[int] = []
        for _ in range(2):
            proc = start()
            try:
                # kill once it is sending, part-way through
                floor = sum(sim.state.sends.values())
                try:
                    await eventually(
                        lambda f=floor: sum(sim.state.sends.values()) >= f + 40, 60, "sends resumed"
                    )
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; dispatcher log:\n{log_tail()}") from None
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            sent_before_kill.append(sum(sim.state.sends.values()))
        assert sent_before_kill[-1] < n, "the kills came too late to land mid-batch"
        proc = start()
        try:
            per_command = await _statuses_per_command(kafka_bootstrap, settings, cids)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        assert proc.returncode == 0, log_tail()
        _assert_once_each(sim, cids)
    assert set(per_command) == set(cids), "every command got a status"
    dupes = {cid: c for cid, c in per_command.items() if c != 1}
    assert not dupes, f"statuses published twice: {dupes}"
    statuses = await read_statuses(kafka_bootstrap, settings, n)
    assert {s.status for s in statuses} == {Status.ACCEPTED}
