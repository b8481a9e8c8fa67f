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

    python bench/throughput.py                       # a local Tansu on 127.0.0.1:19541
    python bench/throughput.py --records 100000 --bootstrap localhost:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import replace
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
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "records": consumed,
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

    def consumed() -> float:
        return reg.get_sample_value("stream_app_records_in_total", {"topic": topic}) or 0.0

    try:
        while consumed() == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        # records_in counts a batch when it is read; the batch is committed when the turn ends, and
        # the loop records the turn in batch_seconds, so wait for both to cover every input.
        while consumed() < n or not proc._idle.is_set():  # noqa: ASYNC110  # sampling another task's metrics
            # 20 ms: fine enough for runs of seconds; sampling more often steals the processor's CPU
            # (each sample collects the whole registry).
            await asyncio.sleep(0.02)
        took = time.perf_counter() - started
    finally:
        stop.set()
        await task
    out = {
        t: reg.get_sample_value("stream_app_records_out_total", {"topic": t}) or 0
        for t in (settings.topics.retry_commands, settings.topics.outcomes, settings.topics.changelog)
    }
    return {
        "records": int(consumed()),
        "produced": int(sum(out.values())),
        "seconds": round(took, 3),
        "per_s": round(n / took),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from stream_app.broker import LocalBroker

        broker = LocalBroker(port=args.port)
        bootstrap = await broker.astart()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            settings = Settings(
                bootstrap_servers=bootstrap,
                topic_prefix=prefix,
                app_id="bench-processor",
                state_dir=Path(tmp),
                metrics_port=0,
                partitions=args.partitions,
            )
            out_topic = f"{prefix}passthrough-out"
            await create_topics(settings, args.partitions, [out_topic])
            t0 = time.perf_counter()
            await fill(settings, args.records)
            fill_s = time.perf_counter() - t0
            proc = await processor(settings, args.records)
            per_input = proc["produced"] / args.records
            raw = await passthrough(replace(settings), args.records, per_input, out_topic)
    finally:
        if broker is not None:
            await broker.astop()
    return {
        "benchmark": "throughput",
        "broker": "tansu (local)" if broker is not None else bootstrap,
        "records": args.records,
        "partitions": args.partitions,
        "fill_per_s": round(args.records / fill_s),
        "outputs_per_input": round(per_input, 3),
        "passthrough": raw,
        "processor": proc,
        "ratio": round(proc["per_s"] / raw["per_s"], 3),
        "target_ratio": 0.7,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the local Tansu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args)), indent=2))


if __name__ == "__main__":
    cli()
