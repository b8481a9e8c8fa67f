"""Three dispatchers in one group, no shared disk: at most one gateway call per commandId while
members join, leave (SIGTERM) and die (kill -9) with calls in flight, and exactly one status each.

The gateway answers take a second, so every rebalance lands while calls are in flight: a revoked
partition must finish its calls and record their answers before it is released, and its next owner
must restore the partition's sent-log from the topic (each dispatcher has its own state directory,
as on separate machines) and ask the gateway about any call left in doubt instead of calling again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stream_app.config import Settings
from stream_app.contracts import Status
from stream_app.gateway.simulator import Simulator, parse_rules
from stream_app.gateway.testing import running_simulator
from tests.faults.gateway.test_dispatcher_faults import _assert_once_each, _statuses_per_command
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_statuses,
)

COMMANDS = 1200
#: Slow answers: a rebalance always finds calls in flight.
ANSWER_DELAY_S = 1.0


class Member:
    """One ``stream-app dispatcher`` process with a state directory of its own."""

    def __init__(self, name: str, settings: Settings, url: str, tmp_path: Path) -> None:
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "STREAM_APP_TOPIC_PREFIX": settings.topic_prefix,
            "STREAM_APP_APP_ID": settings.app_id,
            "STREAM_APP_STATE_DIR": str(tmp_path / f"state-{name}"),
            "STREAM_APP_GATEWAY_URL": url,
            "STREAM_APP_GATEWAY_API_KEY": "test-key",
            "STREAM_APP_DISPATCH_CONCURRENCY": "12",
            "STREAM_APP_DISPATCHER_METRICS_PORT": "0",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # a file, never an unread pipe
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_app", "dispatcher"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        proc = self.proc
        await eventually(lambda: proc.poll() is not None, timeout, f"{self.name} to exit")
        return proc.returncode

    def tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name}\n" + "\n".join(text.splitlines()[-15:])


def _sent(sim: Simulator) -> int:
    return sum(sim.state.sends.values())


@pytest.mark.slow
async def test_three_dispatchers_joining_leaving_and_dying_send_each_command_once(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path / "unused", partitions=6)
    rules = parse_rules(b'{"rules": [{"delay": %.1f}]}' % ANSWER_DELAY_S)
    cmds = [command(f"g{i}", channel=("SMS", "RCS", "WHATSAPP")[i % 3]) for i in range(COMMANDS)]
    cids = [f"g{i}:0" for i in range(COMMANDS)]
    async with running_simulator(rules) as (sim, url):
        a, b, c = (Member(n, settings, url, tmp_path) for n in ("a", "b", "c"))
        members = (a, b, c)

        async def progress(more: int, what: str) -> None:
            floor = _sent(sim)
            try:
                await eventually(lambda: _sent(sim) >= min(COMMANDS, floor + more), 120, what)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n" + "\n".join(m.tail() for m in members)) from None

        try:
            a.start()
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(x) for x in cmds])
            await progress(60, "a sending")
            b.start()  # joins while a has calls in flight
            await progress(120, "a and b sending")
            c.start()
            await progress(120, "three sending")
            a.signal(signal.SIGTERM)  # leaves with calls in flight
            assert await a.wait() == 0, a.tail()
            await progress(60, "b and c sending")
            a.start()  # back, joins again
            await progress(60, "three sending again")
            b.signal(signal.SIGKILL)  # dies with calls in flight; its partitions wait out its session
            await b.wait()
            assert _sent(sim) < COMMANDS, "the kill came too late to land mid-run"
            per_command = await _statuses_per_command(kafka_bootstrap, settings, cids)
        finally:
            for m in members:
                m.signal(signal.SIGTERM)
            for m in members:
                if m.proc is not None and m.proc.poll() is None:
                    try:
                        await m.wait(60)
                    except AssertionError:
                        m.signal(signal.SIGKILL)
        _assert_once_each(sim, cids)
    assert set(per_command) == set(cids), "every command got a status"
    dupes = {cid: n for cid, n in per_command.items() if n != 1}
    assert not dupes, f"statuses published twice: {dupes}"
    statuses = await read_statuses(kafka_bootstrap, settings, COMMANDS)
    assert Counter(s.status for s in statuses) == {Status.ACCEPTED: COMMANDS}
