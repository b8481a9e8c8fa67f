"""Co-partitioning on a real broker, and a rebalance in the middle of running flows.

The processor subscribes to send-requests and delivery-status with the range assignor. With equal
partition counts every member must own partition p of BOTH topics (DESIGN.md rule 1), so a status
always meets the state its request created, whichever instance owns it. A second instance joining
while flows and timers run must not lose or split any flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from stream_app.runtime import NotCoPartitioned, Processor
from stream_app.runtime.topology import co_partitioned
from tests.integration.runtime.helpers import (
    Reader,
    publish,
    send_request,
    settings_for,
    setup_topics,
    status,
)

PARTITIONS = 6
FLOWS = 600


async def test_range_assignor_gives_each_member_the_same_partitions_of_both_inputs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = settings_for(kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    await setup_topics(s)
    t = s.topics
    consumers = [
        AIOKafkaConsumer(
            t.send_requests,
            t.delivery_status,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"{s.app_id}-assign",
            enable_auto_commit=False,
            partition_assignment_strategy=(RangePartitionAssignor,),
        )
        for _ in range(4)  # 4 members over 6 partitions: uneven ranges, the harder case
    ]
    for c in consumers:
        await c.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            await asyncio.gather(*(c.getmany(timeout_ms=200) for c in consumers))
            owned = [co_partitioned(c.assignment(), t) for c in consumers]
            total = sorted(p for both, _ in owned for p in both)
            if total == list(range(PARTITIONS)) and all(both for both, _ in owned):
                break
            assert time.monotonic() < deadline, f"no stable assignment after 60 s: {owned}"
        assert all(not odd for _, odd in owned), owned
    finally:
        for c in consumers:
            await c.stop()


async def test_second_instance_joins_mid_run_and_every_flow_still_ends_right(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    s = settings_for(kafka_bootstrap, tmp_path / "a", partitions=PARTITIONS)
    await setup_topics(s)
    t = s.topics
    stop = asyncio.Event()
    first, second = Processor(s, stop=stop), Processor(replace(s, state_dir=tmp_path / "b"), stop=stop)
    tasks = [asyncio.create_task(first.run())]
    ids = [f"j{i}" for i in range(FLOWS)]
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters])
    try:
        await asyncio.wait_for(first.ready.wait(), 60)
        async with reader:
            await publish(
                s,
                t.send_requests,
                [(m.encode(), send_request(m, [("WHATSAPP", 2), ("SMS", None)])) for m in ids],
            )
            await reader.wait(
                lambda: len(reader.records[t.retry_commands]) >= FLOWS // 2, "half the attempts 0"
            )
            tasks.append(asyncio.create_task(second.run()))  # the group rebalances mid-run
            await reader.wait(
                lambda: (
                    len({c["messageId"] for c in reader.values(t.retry_commands) if c["attempt"] == 1})
                    >= FLOWS
                ),
                "every SMS",
                90,
            )

            def split() -> bool:
                return bool(first.stores and second.stores) and set(first.stores) | set(second.stores) == set(
                    range(PARTITIONS)
                )

            await reader.wait(split, "both instances to own partitions", 60)
            assert not set(first.stores) & set(second.stores)
            # Statuses for every flow, wherever its partition now lives: each must meet its request.
            await publish(s, t.delivery_status, [(m.encode(), status(m, "SMS", "DELIVERED", 1)) for m in ids])
            await reader.wait(
                lambda: len({o["messageId"] for o in reader.values(t.outcomes)}) >= FLOWS, "every outcome", 60
            )
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)
    results = defaultdict(set)
    for o in reader.values(t.outcomes):
        results[o["messageId"]].add((o["result"], o["channel"]))
    assert set(results) == set(ids)
    assert all(r == {("SUCCEEDED", "SMS")} for r in results.values())
    attempts = defaultdict(set)
    for c in reader.values(t.retry_commands):
        attempts[c["messageId"]].add(c["attempt"])
    assert all(a == {0, 1} for a in attempts.values())
    assert reader.records[t.dead_letters] == []


async def test_two_instances_sharing_one_state_dir_hand_partitions_over(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """RocksDB lock contention on a shared volume (a known Faust / Quix Streams failure shape).

    Both instances use the same STREAM_APP_STATE_DIR. When a partition moves, the new owner may try
    to open its store before the old owner has closed it; it must retry, not crash or wipe anything.
    """
    s = settings_for(kafka_bootstrap, tmp_path / "shared", partitions=PARTITIONS)
    await setup_topics(s)
    t = s.topics
    stop = asyncio.Event()
    first, second = Processor(s, stop=stop), Processor(s, stop=stop)
    tasks = [asyncio.create_task(first.run())]
    ids = [f"v{i}" for i in range(300)]
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes])
    try:
        await asyncio.wait_for(first.ready.wait(), 60)
        async with reader:
            await publish(
                s,
                t.send_requests,
                [(m.encode(), send_request(m, [("WHATSAPP", 2), ("SMS", 1)])) for m in ids],
            )
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 100, "some attempts 0")
            tasks.append(asyncio.create_task(second.run()))
            await reader.wait(
                lambda: len({o["messageId"] for o in reader.values(t.outcomes)}) >= len(ids),
                "every outcome",
                90,
            )
            assert not any(task.done() for task in tasks), "neither instance may die on a locked store"
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 60)
    attempts = defaultdict(set)
    for c in reader.values(t.retry_commands):
        attempts[c["messageId"]].add(c["attempt"])
    assert all(attempts[m] == {0, 1} for m in ids)


async def test_a_foreign_member_splitting_the_inputs_stops_the_processor_loudly(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Another application reusing the group id and reading only send-requests would split messages
    from their statuses; the processor must stop with a one-line reason instead of deciding wrongly."""
    s = settings_for(kafka_bootstrap, tmp_path / "state", partitions=PARTITIONS)
    await setup_topics(s)
    proc = Processor(s)
    task = asyncio.create_task(proc.run())
    foreign = AIOKafkaConsumer(
        s.topics.send_requests,
        bootstrap_servers=kafka_bootstrap,
        group_id=s.app_id,
        enable_auto_commit=False,
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    try:
        await asyncio.wait_for(proc.ready.wait(), 60)
        await foreign.start()
        deadline = time.monotonic() + 90
        while not task.done():
            await foreign.getmany(timeout_ms=200)
            assert time.monotonic() < deadline, "the processor kept running on a split assignment"
        with pytest.raises(NotCoPartitioned) as err:
            task.result()
        assert "only one input topic" in str(err.value)
    finally:
        await foreign.stop()
        proc.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
