"""CPU per input record of the processor's hot path, without a broker. Prints JSON.

What ``bench/throughput.py`` measures end to end, minus Kafka: the records of ``throughput.py``'s
inputs (N requests, then a DELIVERED status each) go through :class:`PartitionTask` in turns of
``MAX_RECORDS`` into a :class:`Checkpoint`, whose outputs and changelog records are appended to
aiokafka batches as the commit would hand them over, and the store is flushed each turn. On a
machine shared with other work an end-to-end round varies by 10-20%; this varies by a few percent,
so a lever of 5% shows here first (and must then show end to end).

    python bench/hot_path.py --records 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from throughput import delivered, request

from stream_app.compiled import mode
from stream_app.config import Settings
from stream_app.runtime.checkpoint import Checkpoint
from stream_app.runtime.clients import MAX_BATCH_BYTES
from stream_app.runtime.heap import tune_gc
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.processor import MAX_RECORDS
from stream_app.runtime.produce import Out
from stream_app.runtime.task import PartitionTask, TaskConfig, limits_of
from stream_app.store import PartitionStore

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def inputs(topic: str, n: int, make: Any) -> list[ConsumerRecord[bytes, bytes]]:
    out = []
    for i in range(n):
        key, value = make(i)
        out.append(ConsumerRecord(topic, 0, i, NOW, 0, key, value, None, len(key), len(value), ()))
    return out


def appended(producer: AIOKafkaProducer, outs: list[Out]) -> None:
    """What ``produce()`` does with each record before the network: append it to a batch."""
    batch = producer.create_batch()
    for o in outs:
        if batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers) is None:
            batch = producer.create_batch()
            batch.append(key=o.key, value=o.value, timestamp=None, headers=o.headers)


def one_round(n: int, producer: AIOKafkaProducer) -> float:
    settings = Settings(topic_prefix="hot.", app_id="hot")
    t = settings.topics
    config = TaskConfig(
        t, limits_of(settings), settings.max_request_bytes, frozenset({t.retry_commands, t.outcomes})
    )
    feeds = [
        (TopicPartition(t.send_requests, 0), inputs(t.send_requests, n, request)),
        (TopicPartition(t.delivery_status, 0), inputs(t.delivery_status, n, delivered)),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore.open(Path(tmp), t.changelog, 0)
        task = PartitionTask(0, store, config, Metrics())
        cpu = 0.0
        changelog_offset = 0
        try:
            for tp, records in feeds:
                for i in range(0, n, MAX_RECORDS):
                    chunk = records[i : i + MAX_RECORDS]
                    t0 = time.process_time()
                    ck = Checkpoint()
                    task.on_records(tp, chunk, NOW, ck)
                    appended(producer, ck.outputs[0])
                    changes = ck.changelog_records(0, t.changelog)
                    appended(producer, changes)
                    changelog_offset += len(changes)
                    store.flush(changelog_offset - 1)
                    cpu += time.process_time() - t0
        finally:
            store.close()
    return cpu / (2 * n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=50_000, help="requests (each with a DELIVERED status)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--default-gc", action="store_true", help="keep CPython's collector settings (no tune_gc())"
    )
    args = parser.parse_args()
    if not args.default_gc:
        tune_gc()  # as `stream-app processor` does

    async def make() -> AIOKafkaProducer:  # never started: it only builds batches
        return AIOKafkaProducer(bootstrap_servers="unused:9092", max_batch_size=MAX_BATCH_BYTES)

    producer = asyncio.run(make())
    rounds = []
    for _ in range(args.rounds):
        rounds.append(round(one_round(args.records, producer), 2))
    asyncio.run(producer.stop())
    result = {
        "benchmark": "hot_path",
        "input_records": 2 * args.records,
        "gc": "default" if args.default_gc else "tune_gc()",
        "hot_path": mode(),  # "compiled" after scripts/compile.sh, else "pure"
        "cpu_us_per_record": round(statistics.median(rounds), 2),
        "rounds": rounds,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
