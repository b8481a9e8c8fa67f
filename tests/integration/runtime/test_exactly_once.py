"""exactly_once on a broker WITH Kafka transactions (skipped, with the reason, on Tansu).

The refusal on a broker without transactions is in ``test_startup.py`` and always runs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
    status,
)


@pytest.mark.transactions
async def test_exactly_once_flow_and_restart_repeat_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "state", processing_guarantee="exactly_once")
    await setup_topics(s)
    t = s.topics
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters], "read_committed")
    async with reader:
        async with running(s):
            await publish(
                s,
                t.send_requests,
                [(b"x1", send_request("x1", [("WHATSAPP", 60), ("SMS", None)])), (b"bad", b"{nope")],
            )
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 1, "attempt 0")
            await publish(s, t.delivery_status, [(b"x1", status("x1", "WHATSAPP", "REJECTED", 0))])
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2, "attempt 1")
        # A restart from a fresh state dir restores from the (transactional) changelog and repeats nothing.
        async with running(replace(s, state_dir=tmp_path / "fresh")):
            await publish(s, t.delivery_status, [(b"x1", status("x1", "SMS", "DELIVERED", 1))])
            await reader.wait(lambda: len(reader.records[t.outcomes]) >= 1, "the outcome")
    assert [c["commandId"] for c in reader.values(t.retry_commands)] == ["x1:0", "x1:1"]
    assert [o["result"] for o in reader.values(t.outcomes)] == ["SUCCEEDED"]
    assert len(reader.records[t.dead_letters]) == 1
