"""The processor's copy of ``channel-control`` (``runtime.control.ControlTable``) on the session broker.

What the processor's ordering rests on: when ``start()`` returns, the whole table up to its end is
in the view (so nothing decided after it can miss a closure written before the start), and records
written later arrive through ``poll()``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.contracts import Channel
from stream_app.runtime.control import ControlTable
from stream_app.runtime.metrics import Metrics
from tests.integration.runtime.helpers import publish, settings_for, setup_topics

NOW = 1_900_000_000_000


def rec(channel: str, state: str = "CLOSED", **fields: object) -> tuple[bytes, bytes]:
    tenant = fields.get("tenant")
    key = channel if tenant is None else f"{tenant}/{channel}"
    return key.encode(), orjson.dumps({"channel": channel, "state": state, **fields})


async def test_start_returns_with_the_whole_table_and_poll_follows_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = settings_for(kafka_bootstrap, tmp_path)
    await setup_topics(s)
    t = s.topics
    # many records over every partition, the last of each key deciding: only a full read gets it right
    records: list[tuple[bytes, bytes | None]] = []
    for i in range(300):
        records += [rec("WHATSAPP", tenant=f"t{i}"), rec("WHATSAPP", "OPEN", tenant=f"t{i}")]
    records += [rec("RCS"), rec("SMS", tenant="t7"), (b"VIBER", b"not json"), rec("VIBER"), (b"VIBER", None)]
    await publish(s, t.channel_control, records)
    table = ControlTable(s, Metrics(), exactly_once=False)
    await table.start()
    try:
        assert sorted(table.view.closures) == ["RCS", "t7/SMS"]
        assert table.view.closed(Channel.RCS, None, NOW)
        assert not table.view.closed(Channel.WHATSAPP, "t299", NOW)
        assert not table.view.closed(Channel.VIBER, None, NOW)  # closed, then deleted by the tombstone
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await publish(s, t.channel_control, [rec("RCS", "OPEN"), rec("VIBER", inFlight="FALLBACK")])
            deadline = time.monotonic() + 15
            while "VIBER" not in table.view.closures or "RCS" in table.view.closures:
                assert time.monotonic() < deadline, f"poll never saw the new records: {table.view}"
                await table.poll(NOW, {0}, 3, producer, t.dead_letters)
                await asyncio.sleep(0.05)
        finally:
            await producer.stop()
        assert sorted(table.view.closures) == ["VIBER", "t7/SMS"]
        assert "VIBER" in table.sweeps  # a live FALLBACK closure sweeps the owned partitions
        assert table.sweeps["VIBER"].cursors == {0: None}
    finally:
        await table.stop()
