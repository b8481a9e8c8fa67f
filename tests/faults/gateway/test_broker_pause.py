"""The dispatcher through a broker pause: a broker of its own, frozen (SIGSTOP) for 6 s mid-run.

Publishing stalls while the broker is frozen; the dispatcher must neither die, nor resend, nor lose
a status: every command still ends as one gateway send and one status.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from stream_app.broker import LocalBroker
from stream_app.contracts import Channel, decode_status
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import free_port, running_simulator
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_all,
    running_dispatcher,
)

#: Frozen for 6 s: longer than the producer's linger and a few request round trips, shorter than the
#: consumer group's 10 s session timeout, so the pause is felt by the produce path, not by a rebalance.
PAUSE_SECONDS = 6.0


@pytest.mark.slow
async def test_dispatcher_survives_a_broker_pause(tmp_path: Path) -> None:
    broker = LocalBroker(port=free_port())
    bootstrap = await broker.astart()
    try:
        settings = await make_settings(bootstrap, tmp_path)
        # 50 ms per answer, 2 at a time: 150 sends take about 4 s, so the pause lands mid-run.
        rules = parse_rules(b'{"rules": [{"delay": 0.05}]}')
        n = 150
        cids = [f"p{i}:0" for i in range(n)]
        async with running_simulator(rules) as (sim, url):
            gw = GatewaySettings(
                url=url,
                api_key="test-key",
                backoff_base=0.05,
                backoff_max=0.5,
                concurrency=dict.fromkeys(Channel, 2.0),
            )
            async with running_dispatcher(settings, gw) as disp:
                await produce_all(
                    bootstrap, settings.topics.retry_commands, [as_record(command(f"p{i}")) for i in range(n)]
                )
                await eventually(lambda: sum(sim.state.sends.values()) >= 20, what="sending started")
                assert broker.pid is not None
                os.kill(broker.pid, signal.SIGSTOP)
                published_at_pause = disp.counts["published"]
                try:
                    await asyncio.sleep(PAUSE_SECONDS)
                finally:
                    os.kill(broker.pid, signal.SIGCONT)
                wanted = set(cids)

                def complete(records: list[ConsumerRecord[bytes, bytes]]) -> bool:
                    return wanted <= {_cid(r.value) for r in records}

                records = await read_all(bootstrap, settings.topics.delivery_status, complete, within=90)
            assert {cid: sim.state.sends[cid] for cid in cids} == dict.fromkeys(cids, 1)
        per_command = Counter(_cid(r.value) for r in records)
        assert per_command == Counter(cids), {c: k for c, k in per_command.items() if k != 1}
        assert disp.counts["published"] == n
        assert published_at_pause < n / 2, "the pause came too late to matter"
    finally:
        await broker.astop()


def _cid(value: bytes | None) -> str:
    status = decode_status(value or b"")
    return f"{status.message_id}:{status.attempt}"
