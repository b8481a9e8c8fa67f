"""Two instances, one killed with SIGKILL: the survivor takes its partitions, restores them from the
changelog and fires their (by then overdue) timers."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.runtime.helpers import (
    ProcessorProcess,
    Reader,
    publish,
    send_request,
    settings_for,
    setup_topics,
)
from tests.support.kafka import wait_committed
from tests.support.wait import until

FLOWS = 400
PARTITIONS = 4


def _assignments(log: str) -> list[set[int]]:
    return [
        {int(p) for p in m.group(1).split(",") if p}
        for m in re.finditer(r"event=partitions_assigned partitions=([0-9,]*)", log)
    ]


@pytest.mark.slow
async def test_survivor_takes_over_restores_and_fires(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "state", partitions=PARTITIONS)
    await setup_topics(s)
    t = s.topics
    a = ProcessorProcess(s, tmp_path / "a.log", state_dir=tmp_path / "state-a")
    b = ProcessorProcess(s, tmp_path / "b.log", state_dir=tmp_path / "state-b")
    ids = [f"k{i}" for i in range(FLOWS)]
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes])
    await a.start()
    await b.start()
    try:

        def split() -> bool:
            la, lb = _assignments(a.log_text()), _assignments(b.log_text())
            return bool(la and lb and la[-1] and lb[-1] and la[-1] | lb[-1] == set(range(PARTITIONS)))

        await until(split, "both instances to own partitions", 90)
        owned_by_a = _assignments(a.log_text())[-1]
        assert not owned_by_a & _assignments(b.log_text())[-1]
        async with reader:
            # 6 s: every timer is still pending when A dies, and overdue when B takes over.
            await publish(
                s,
                t.send_requests,
                [(m.encode(), send_request(m, [("WHATSAPP", 6), ("SMS", 1)])) for m in ids],
            )
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= FLOWS, "every attempt 0", 60)
            # A has committed every request: their commands and changelog records are written.
            await wait_committed(kafka_bootstrap, s.app_id, t.send_requests, FLOWS)
            assert _assignments(a.log_text())[-1] == owned_by_a, "no rebalance may happen before the kill"
            a.kill()
            await a.wait()
            await reader.wait(lambda: len(reader.values(t.outcomes)) >= FLOWS, "every outcome", 120)
        blog = b.log_text()
        assert _assignments(blog)[-1] == set(range(PARTITIONS))
        restored = {
            int(m.group(1)) for m in re.finditer(r"event=restored partition=(\d+) applied=[1-9]", blog)
        }
        assert owned_by_a <= restored, (owned_by_a, restored)
        assert await b.terminate() == 0
    finally:
        a.kill()
        b.kill()
    commands: dict[str, set[int]] = defaultdict(set)
    for c in reader.values(t.retry_commands):
        commands[c["messageId"]].add(c["attempt"])
    assert all(commands[m] == {0, 1} for m in ids)
    results = {o["messageId"]: o["result"] for o in reader.values(t.outcomes)}
    assert set(results) == set(ids) and set(results.values()) == {"FAILED"}
