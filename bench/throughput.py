"""End-to-end processor throughput vs a raw aiokafka passthrough, same run, same broker. Prints JSON.

Both sides read the same pre-filled ``send-requests`` topic (N requests with a WhatsApp -> SMS chain,
each issuing one command and one changelog record) from their own consumer group:

* passthrough: ``getmany()`` batches, produce the same number of records per input the processor
  produced (no decode, no logic), await delivery, commit. The floor any aiokafka app pays.
* processor: ``run_processor`` itself (decode, ``decide()``, RocksDB store, outputs, changelog,
  commit in DESIGN.md's order).

The clock of each side starts at its first consumed record and stops when the last input offset is
committed, so the group join (seconds on Tansu) is not counted on either side. Target: processor
>= 0.7 of the passthrough.

Each side runs in a process of its own (``--side``), so neither inherits the other's heap, garbage
collector or imports, and the sides alternate for ``--rounds`` rounds (a fresh group, app id and state
directory each time): on two cores shared with the broker one run of a few seconds varies by 10-20%,
so the figure reported is the ratio of the medians, with every round listed beside it.

    python bench/throughput.py                       # a local Tansu on 127.0.0.1:19541
    python bench/throughput.py --records 100000 --rounds 5 --bootstrap localhost:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from stream_app.config import Settings
from stream_app.contracts.catalogue import CATALOGUE
from stream_app.runtime import Processor

#: The runtime room's port range (19500-19599).
DEFAULT_PORT = 19541


def request(i: int) -> tuple[bytes, bytes]:
    mid = f"bench-{i:08d}"
    body = {
        "messageId": mid,
        "destination": "+393401234567",
        "channels": [
            {"channel": "WHATSAPP", "fallbackAfter": 3600, "content": {"template": {"id": 42}}},
            {"channel": "SMS", "content": {"sender": "Bench", "text": "hello"}},
        ],
        "tenant": "bench",
    }
    return mid.encode(), orjson.dumps(body)


async def create_topics(settings: Settings, partitions: int, extra: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        specs = [
            NewTopic(
                spec.name(settings.topic_prefix, settings.app_id),
                partitions,
                1,
                topic_configs=dict(spec.configs),
            )
            for spec in CATALOGUE
        ]
        specs += [NewTopic(name, partitions, 1) for name in extra]
        existing = set(await admin.list_topics())  # the topics every round shares exist after round 0
        specs = [spec for spec in specs if spec.name not in existing]
        if specs:
            await admin.create_topics(specs)
        while not {s.name for s in specs} <= set(await admin.list_topics()):  # noqa: ASYNC110  # broker polling
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def fill(settings: Settings, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20, acks="all")
    await producer.start()
    try:
        futures = []
        for i in range(n):
            key, value = request(i)
            futures.append(await producer.send(settings.topics.send_requests, value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def passthrough(settings: Settings, n: int, per_input: float, out_topic: str) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        settings.topics.send_requests,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"passthrough-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=(RangePartitionAssignor,),
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=2)
    await consumer.start()
    await producer.start()
    consumed = produced = 0
    owed = 0.0
    started: float | None = None
    try:
        while consumed < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
                cpu0 = time.process_time()
            futures = []
            offsets = {}
            for tp, records in batch.items():
                for rec in records:
                    owed += per_input
                    while owed >= 1:
                        owed -= 1
                        futures.append(await producer.send(out_topic, rec.value, key=rec.key))
                consumed += len(records)
                offsets[tp] = records[-1].offset + 1
            await asyncio.gather(*futures)
            produced += len(futures)
            await consumer.commit(offsets)
        assert started is not None
        took = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "records": consumed,
        "cpu_seconds": round(cpu, 3),
        "produced": produced,
        "seconds": round(took, 3),
        "per_s": round(consumed / took),
    }


async def processor(settings: Settings, n: int) -> dict[str, Any]:
    stop = asyncio.Event()
    proc = Processor(settings, stop=stop)
    reg = proc.metrics.registry
    task = asyncio.create_task(proc.run())
    topic = settings.topics.send_requests
    records_in = proc.metrics.records_in.labels(topic)

    def consumed() -> float:
        # The counter's own value: get_sample_value() collects the whole registry, which at every
        # sample would take CPU from the processor being measured.
        return float(records_in._value.get())

    try:
        while consumed() == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        cpu0 = time.process_time()
        # records_in counts a batch when it is read; the batch is committed when the turn ends, and
        # the loop records the turn in batch_seconds, so wait for both to cover every input.
        while consumed() < n or not proc._idle.is_set():  # noqa: ASYNC110  # sampling another task's metrics
            # 5 ms: under 0.2% of a run of seconds, and a sample costs next to nothing.
            await asyncio.sleep(0.005)
        took = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        stop.set()
        await task
    out = {
        t: reg.get_sample_value("stream_app_records_out_total", {"topic": t}) or 0
        for t in (settings.topics.retry_commands, settings.topics.outcomes, settings.topics.changelog)
    }
    return {
        "records": int(consumed()),
        "cpu_seconds": round(cpu, 3),
        "produced": int(sum(out.values())),
        "seconds": round(took, 3),
        "per_s": round(n / took),
    }


def settings_for(bootstrap: str, prefix: str, app_id: str, state_dir: Path, partitions: int) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        app_id=app_id,
        state_dir=state_dir,
        metrics_port=0,
        partitions=partitions,
    )


def run_side(args: argparse.Namespace, side: str, app_id: str, per_input: float) -> dict[str, Any]:
    """One side in a fresh interpreter; returns the JSON it prints."""
    cmd = [
        sys.executable,
        __file__,
        "--side",
        side,
        "--bootstrap",
        args.bootstrap,
        "--prefix",
        args.prefix,
        "--app-id",
        app_id,
        "--records",
        str(args.records),
        "--partitions",
        str(args.partitions),
        "--per-input",
        str(per_input),
    ]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def side(args: argparse.Namespace) -> dict[str, Any]:
    """The child process: measure one side on topics the parent created and filled."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(args.bootstrap, args.prefix, args.app_id, Path(tmp), args.partitions)
        if args.side == "processor":
            return await processor(settings, args.records)
        return await passthrough(settings, args.records, args.per_input, f"{args.prefix}passthrough-out")


async def prepare(args: argparse.Namespace) -> float:
    """Create the round's topics and fill its ``send-requests``; returns the fill rate.

    Every round has topics of its own, so no round writes onto outputs an earlier one left behind.
    """
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(args.bootstrap, args.prefix, args.app_id, Path(tmp), args.partitions)
        await create_topics(settings, args.partitions, [f"{args.prefix}passthrough-out"])
        t0 = time.perf_counter()
        await fill(settings, args.records)
        return args.records / (time.perf_counter() - t0)


def median_side(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "per_s": round(statistics.median(r["per_s"] for r in rounds)),
        "cpu_us_per_record": round(
            statistics.median(r["cpu_seconds"] for r in rounds) / rounds[0]["records"] * 1e6, 1
        ),
    }


async def start_broker(args: argparse.Namespace) -> Any:
    if args.bootstrap is not None:
        return None
    from stream_app.broker import LocalBroker

    broker = LocalBroker(port=args.port)
    args.bootstrap = await broker.astart()
    return broker


def main(args: argparse.Namespace) -> dict[str, Any]:
    broker = asyncio.run(start_broker(args))
    try:
        fills: list[float] = []
        proc_rounds: list[dict[str, Any]] = []
        raw_rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            args.prefix, args.app_id = f"bench{uuid.uuid4().hex[:8]}.", "bench-processor"
            fills.append(asyncio.run(prepare(args)))
            proc_rounds.append(run_side(args, "processor", args.app_id, 0))
            per_input = proc_rounds[-1]["produced"] / args.records
            raw_rounds.append(run_side(args, "passthrough", "bench-passthrough", per_input))
            print(
                f"round {r + 1}/{args.rounds}: processor {proc_rounds[-1]['per_s']}/s, "
                f"passthrough {raw_rounds[-1]['per_s']}/s",
                file=sys.stderr,
            )
    finally:
        if broker is not None:
            asyncio.run(broker.astop())
    proc, raw = median_side(proc_rounds), median_side(raw_rounds)
    return {
        "benchmark": "throughput",
        "broker": "tansu (local)" if broker is not None else args.bootstrap,
        "records": args.records,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "fill_per_s": round(statistics.median(fills)),
        "outputs_per_input": round(proc_rounds[0]["produced"] / args.records, 3),
        "passthrough": raw,
        "processor": proc,
        "ratio": round(proc["per_s"] / raw["per_s"], 3),
        "ratio_per_round": [
            round(p["per_s"] / q["per_s"], 3) for p, q in zip(proc_rounds, raw_rounds, strict=True)
        ],
        "target_ratio": 0.7,
        "rounds_detail": {"processor": proc_rounds, "passthrough": raw_rounds},
    }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each side (median)")
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the local Tansu")
    # The child process's arguments (run_side passes them).
    parser.add_argument("--side", choices=("processor", "passthrough"), help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--per-input", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.side is not None:
        print(json.dumps(asyncio.run(side(args))))
    else:
        print(json.dumps(main(args), indent=2))


if __name__ == "__main__":
    cli()
