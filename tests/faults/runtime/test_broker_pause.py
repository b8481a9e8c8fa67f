"""The broker frozen (SIGSTOP) for 20 s mid-run: the processor waits it out and loses nothing.

Runs its own Tansu from the runtime port range, since pausing the session broker would stall every
other test. Tansu keeps everything in memory, so it is paused and resumed, never killed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from pathlib import Path

import pytest

from stream_app.broker import LocalBroker
from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
)

PORT = 19531
FLOWS = 300
PAUSE_S = 20.0


@pytest.mark.slow
async def test_broker_paused_for_20_s_loses_nothing(tmp_path: Path) -> None:
    async with LocalBroker(port=PORT) as broker:
        assert broker.pid is not None
        s = settings_for(broker.bootstrap_servers, tmp_path / "state", partitions=3)
        await setup_topics(s)
        t = s.topics
        ids = [f"p{i}" for i in range(FLOWS)]
        steps = [("WHATSAPP", 1.0), ("SMS", 1.0)]
        reader = Reader(broker.bootstrap_servers, [t.retry_commands, t.outcomes])
        async with running(s) as task, reader:
            await publish(
                s, t.send_requests, [(m.encode(), send_request(m, steps)) for m in ids[: FLOWS // 2]]
            )
            await asyncio.sleep(0.5)
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(PAUSE_S)
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            assert not task.done(), "the processor must ride out the outage"
            await publish(
                s, t.send_requests, [(m.encode(), send_request(m, steps)) for m in ids[FLOWS // 2 :]]
            )
            await reader.wait(
                lambda: len({o["messageId"] for o in reader.values(t.outcomes)}) >= FLOWS,
                "every outcome",
                120,
            )
    commands: dict[str, set[int]] = defaultdict(set)
    for c in reader.values(t.retry_commands):
        commands[c["messageId"]].add(c["attempt"])
    assert all(commands[m] == {0, 1} for m in ids), [m for m in ids if commands[m] != {0, 1}][:5]
    results = defaultdict(set)
    for o in reader.values(t.outcomes):
        results[o["messageId"]].add(o["result"])
    assert set(results) == set(ids) and all(r == {"FAILED"} for r in results.values())
