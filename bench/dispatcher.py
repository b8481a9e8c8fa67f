"""Dispatcher speed: gateway sends/s of one ``stream-app dispatcher`` process, and its CPU per send.

N commands are put on ``retry-commands`` first; then one dispatcher process starts and sends them to
the gateway simulator (served by this script, answering at once), publishing a status for each. The
figure is measured from the first send the simulator sees to the last status on ``delivery-status``,
so start-up and the group join are not counted; CPU time is the dispatcher process's own (user +
system), which is steadier than wall time on a shared machine.

``--repo`` runs the dispatcher of another checkout (e.g. a ``git worktree`` of an older commit) on
the same broker and simulator, so a before/after comparison runs in one session:

    python bench/dispatcher.py                              # 3,000 commands on a local Tansu
    python bench/dispatcher.py --repo /tmp/before --commands 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.admin.topics import create_topics
from stream_app.broker import LocalBroker
from stream_app.config import Settings
from stream_app.gateway.testing import free_port, running_simulator

HERE = Path(__file__).resolve().parent.parent


def command(i: int) -> bytes:
    mid = f"b{i}"
    return orjson.dumps(
        {
            "type": "command",
            "schemaVersion": 1,
            "commandId": f"{mid}:0",
            "messageId": mid,
            "attempt": 0,
            "channel": "SMS",
            "destination": "+393401234500",
            "content": {"sender": "Shop", "text": "hello"},
            "reason": "INITIAL",
            "issuedAt": "2026-04-09T08:15:01Z",
        }
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(args: argparse.Namespace, bootstrap: str) -> dict[str, Any]:
    prefix = f"bench{time.time_ns() % 10**9}."
    settings = Settings(bootstrap_servers=bootstrap, topic_prefix=prefix, partitions=args.partitions)
    await create_topics(settings)
    t = settings.topics
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(t.retry_commands, command(i), key=f"b{i}".encode())
            for i in range(args.commands)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    reader = AIOKafkaConsumer(t.delivery_status, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await reader.start()
    statuses = 0
    async with running_simulator() as (sim, url):
        env = {
            **os.environ,
            "PYTHONPATH": str(args.repo),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "STREAM_APP_TOPIC_PREFIX": prefix,
            "STREAM_APP_STATE_DIR": str(Path(args.state_dir) / prefix),
            "STREAM_APP_GATEWAY_URL": url,
            "STREAM_APP_GATEWAY_API_KEY": "test-key",
            "STREAM_APP_DISPATCH_CONCURRENCY": str(args.concurrency),
            "STREAM_APP_DISPATCHER_METRICS_PORT": "0",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stream_app",
            "dispatcher",
            cwd=args.repo,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            first: float | None = None
            cpu_at_first = 0.0
            deadline = time.monotonic() + args.timeout
            while statuses < args.commands:
                if time.monotonic() > deadline or proc.returncode is not None:
                    rc = proc.returncode
                    raise SystemExit(f"bench: {statuses} of {args.commands} statuses (dispatcher rc={rc})")
                batch = await reader.getmany(timeout_ms=50, max_records=10_000)
                statuses += sum(len(v) for v in batch.values())
                if first is None and sum(sim.state.sends.values()) > 0:
                    first = time.monotonic()
                    cpu_at_first = cpu_seconds(proc.pid)
            end = time.monotonic()
            cpu = cpu_seconds(proc.pid) - cpu_at_first
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
            await reader.stop()
        sends = sum(sim.state.sends.values())
    assert first is not None
    return {
        "repo": str(args.repo),
        "commands": args.commands,
        "gateway_sends": sends,
        "statuses": statuses,
        "seconds": round(end - first, 3),
        "sends_per_s": round(args.commands / (end - first), 1),
        "dispatcher_cpu_us_per_send": round(cpu / args.commands * 1e6, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=3000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight sends per channel")
    parser.add_argument("--repo", type=Path, default=HERE, help="checkout whose dispatcher runs")
    parser.add_argument("--bootstrap", help="an existing broker (default: a local Tansu of its own)")
    parser.add_argument("--state-dir", default="/tmp/stream-app-bench-dispatcher")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.bootstrap:
        result = await run(args, args.bootstrap)
    else:
        broker = LocalBroker(port=free_port())
        bootstrap = await broker.astart()
        try:
            result = await run(args, bootstrap)
        finally:
            broker.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
