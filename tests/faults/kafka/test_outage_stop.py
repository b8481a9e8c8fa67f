"""SIGTERM during a broker outage: every service stops at once, exit 0, no traceback, few lines.

Each service runs as a child process against a broker of the test's own, which is then stopped
(connections refused) or frozen (SIGSTOP: nothing answers). Before, the processor, the dispatcher
and ``outcomes --follow`` printed about 40 lines of CancelledError traceback and "Unclosed
AIOKafkaProducer" and exited 1, and each wrote about 80 aiokafka error lines a second meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from stream_app.admin.topics import create_topics
from stream_app.broker import LocalBroker
from stream_app.config import Settings
from stream_app.gateway.testing import free_port
from tests.support.wait import until

#: A clean stop's bound: every client's stop is bounded by 10 s (stream_app.kafka.clients), and a
#: frozen broker can hold each of them that long.
STOP_BOUND_S = 45.0

SERVICES = {
    "processor": (["processor"], "event=partitions_assigned"),
    "dispatcher": (["dispatcher"], "dispatcher assigned partitions"),
    "outcomes": (["outcomes", "--follow"], "following"),
}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stopped", "frozen"])
@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_sigterm_during_an_outage_is_a_clean_stop(service: str, how: str, tmp_path: Path) -> None:
    broker = LocalBroker(port=free_port())
    bootstrap = await broker.astart()
    frozen = False
    try:
        settings = Settings(bootstrap_servers=bootstrap, topic_prefix="o.", state_dir=tmp_path, partitions=2)
        await create_topics(settings)
        args, ready = SERVICES[service]
        log_path = tmp_path / "service.log"
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "STREAM_APP_TOPIC_PREFIX": "o.",
            "STREAM_APP_STATE_DIR": str(tmp_path / "state"),
            "STREAM_APP_METRICS_PORT": "0",
            "STREAM_APP_DISPATCHER_METRICS_PORT": "0",
            "STREAM_APP_GATEWAY_API_KEY": "k",
        }
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "stream_app", *args, env=env, stdout=log, stderr=log
            )

        def text() -> str:
            return log_path.read_text(errors="replace")

        try:
            await until(lambda: ready in text(), f"{service} to be ready", 60)
            before = len(text().splitlines())
            if how == "stopped":
                broker.stop()
                if service != "outcomes":  # a command, not a service: it logs nothing of aiokafka's
                    await until(lambda: "kafka unreachable" in text(), "the outage to be noticed", 30)
                else:
                    await asyncio.sleep(3)
            else:
                assert broker.pid is not None
                os.kill(broker.pid, signal.SIGSTOP)
                frozen = True
                await asyncio.sleep(3)  # an outage under way: nothing answers for a while
            proc.send_signal(signal.SIGTERM)
            rc = await asyncio.wait_for(proc.wait(), STOP_BOUND_S)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        out = text()
        assert rc == 0, out[-3000:]
        assert "Traceback" not in out and "Unclosed" not in out, out[-3000:]
        assert len(out.splitlines()) - before <= 8, out[-3000:]  # an outage in a few lines
    finally:
        if frozen and broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()
