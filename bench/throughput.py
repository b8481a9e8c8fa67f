"""End-to-end processor throughput vs the strongest plain aiokafka loop, same input, same broker.

Both sides read the same pre-filled inputs from their own consumer group: N requests on
``send-requests`` (a WhatsApp -> SMS chain) and one DELIVERED status per request on
``delivery-status``, 2N input records in all.

* passthrough: the strongest plain aiokafka loop we could write. It subscribes to both inputs with
  the processor's own group consumer settings (``runtime.clients.group_consumer``: the same big
  fetches) and ``max_records``, produces one output per input with the processor's own producer
  settings (``runtime.clients.output_producer``: acks=all, linger 5 ms, 512 KiB batches), in whole
  batches (``create_batch``/``send_batch``, partition p to partition p: no future and no murmur2
  per record), awaits their delivery, then commits. No decode, no logic, no state, no changelog.
* passthrough-send: the same loop with ``send()`` and a delivery future per record (the loop
  aiokafka's documentation shows), for a second ratio.
* decode-floor: the batch passthrough that also decodes each input with the contract's models
  (``decode_request`` / ``decode_status``, what any processor keeping the contract must do) and
  then passes it on as it came. Not an alternative to the processor: the floor under it, so the
  ratio the decoding alone leaves is measured, not estimated.
* naive: the naive peer of issue 10, an in-memory processor written in an afternoon: the same
  clients, ``json.loads`` of each input, a dict of pending requests, a command (JSON) for each
  request and an outcome for each DELIVERED, ``send()`` and a future per record, commit after
  delivery. No validation, no durable state, no changelog, no timers: what it loses on a crash is
  everything pending. The processor must be far ahead of it, not just ahead.
* processor: ``Processor`` itself (decode, ``decide()``, RocksDB store, commands and outcomes,
  changelog, commit in DESIGN.md's order), at_least_once, with ``stream-app processor``'s
  collector settings (``--default-gc``: CPython's).

The clock of each side starts at its first consumed record and stops when the last input offset is
committed, so the group join (seconds on Tansu) is not counted on either side. Target: processor
>= 0.7 of the passthrough. Each side also reports its process CPU time per input record.

Each side runs in a process of its own (``--side``), so neither inherits the other's heap, garbage
collector or imports, and the sides alternate for ``--rounds`` rounds (fresh topics, groups, app id
and state directory each round): on two cores shared with the broker one run of a few seconds
varies by 10-20%, so the figure reported is the ratio of the medians, with every round listed.

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
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.compiled import mode
from stream_app.config import Settings
from stream_app.contracts import decode_request, decode_status
from stream_app.contracts.catalogue import CATALOGUE
from stream_app.runtime import Processor
from stream_app.runtime.clients import group_consumer, output_producer
from stream_app.runtime.heap import tune_gc
from stream_app.runtime.processor import MAX_RECORDS

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


def delivered(i: int) -> tuple[bytes, bytes]:
    """Request i's WhatsApp attempt DELIVERED: its flow ends with a SUCCEEDED outcome."""
    mid = f"bench-{i:08d}"
    body = {
        "messageId": mid,
        "attempt": 0,
        "channel": "WHATSAPP",
        "status": "DELIVERED",
        "occurredAt": "2026-01-01T00:00:00Z",
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
        existing = set(await admin.list_topics())
        specs = [spec for spec in specs if spec.name not in existing]
        if specs:
            await admin.create_topics(specs)
        while not {s.name for s in specs} <= set(await admin.list_topics()):  # noqa: ASYNC110  # broker polling
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def fill(settings: Settings, n: int) -> None:
    """N requests, then a DELIVERED status for each (the processor holds a status that overtakes
    its request, so the order between the two topics does not change the work)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=20, acks="all", max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        futures = []
        for topic, make in (
            (settings.topics.send_requests, request),
            (settings.topics.delivery_status, delivered),
        ):
            for i in range(n):
                key, value = make(i)
                futures.append(await producer.send(topic, value, key=key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


#: What a plain loop does with one partition's fetched records: hand them to the producer and
#: return the delivery futures and the number of outputs.
Handler = Callable[
    [AIOKafkaProducer, TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    Awaitable[tuple[list[asyncio.Future[Any]], int]],
]


async def plain_loop(settings: Settings, n: int, group: str, handle: Handler) -> dict[str, Any]:
    """The loop every plain side shares: the processor's clients, ``handle`` per fetched partition,
    delivery awaited, then the offsets committed; timed from the first record to the last commit."""
    member = replace(settings, app_id=f"{group}-{uuid.uuid4().hex[:8]}")
    consumer = group_consumer(member, exactly_once=False)
    consumer.subscribe([settings.topics.send_requests, settings.topics.delivery_status])
    producer = output_producer(settings)
    await consumer.start()
    await producer.start()
    consumed = produced = 0
    started: float | None = None
    cpu0 = 0.0
    try:
        while consumed < n:
            batch = await consumer.getmany(timeout_ms=200, max_records=MAX_RECORDS)
            if not batch:
                continue
            if started is None:
                started = time.perf_counter()
                cpu0 = time.process_time()
            futures: list[asyncio.Future[Any]] = []
            offsets = {}
            for tp, records in batch.items():
                if not records:
                    continue
                consumed += len(records)
                offsets[tp] = records[-1].offset + 1
                sent, outputs = await handle(producer, tp, records)
                futures += sent
                produced += outputs
            await asyncio.gather(*futures)
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


async def passthrough(
    settings: Settings, n: int, out_topic: str, per_record: bool, decode: bool = False
) -> dict[str, Any]:
    """The strongest plain loop: the processor's clients and batch size, one output per input.

    ``per_record``: ``send()`` and a delivery future per record (the loop aiokafka's documentation
    shows, and what the passthrough of issue 10 measured) instead of whole batches. ``decode``: each
    input decoded with the contract's models first (the decode floor; batches only).
    """
    requests_topic = settings.topics.send_requests

    async def each(
        producer: AIOKafkaProducer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[asyncio.Future[Any]], int]:
        futures = []
        for rec in records:
            futures.append(
                await producer.send(
                    out_topic, rec.value, key=rec.key, partition=tp.partition, headers=list(rec.headers)
                )
            )
        return futures, len(records)

    async def batches(
        producer: AIOKafkaProducer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[asyncio.Future[Any]], int]:
        futures = []
        out = producer.create_batch()
        if decode:
            decoder = decode_request if tp.topic == requests_topic else decode_status
        for rec in records:
            if decode:
                decoder(rec.value)
            if out.append(key=rec.key, value=rec.value, timestamp=None, headers=list(rec.headers)) is None:
                futures.append(await producer.send_batch(out, out_topic, partition=tp.partition))
                out = producer.create_batch()
                out.append(key=rec.key, value=rec.value, timestamp=None, headers=list(rec.headers))
        out.close()  # as the processor does: a closed batch is sent without lingering (a full one is)
        futures.append(await producer.send_batch(out, out_topic, partition=tp.partition))
        return futures, len(records)

    return await plain_loop(settings, n, "passthrough", each if per_record else batches)


async def naive(settings: Settings, n: int, out_topic: str) -> dict[str, Any]:
    """The naive peer: state in a dict, stdlib json, a future per output (see the module doc)."""
    requests_topic = settings.topics.send_requests
    pending: dict[str, dict[str, Any]] = {}

    async def handle(
        producer: AIOKafkaProducer, tp: TopicPartition, records: list[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[asyncio.Future[Any]], int]:
        futures = []
        for rec in records:
            body = json.loads(rec.value)
            mid = body["messageId"]
            if tp.topic == requests_topic:
                pending[mid] = body
                step = body["channels"][0]
                out = {"messageId": mid, "attempt": 0, "channel": step["channel"]}
                out.update(destination=body["destination"], content=step.get("content"))
            else:
                req = pending.pop(mid, None) if body["status"] == "DELIVERED" else None
                out = {"messageId": mid, "result": "SUCCEEDED" if req else "UNKNOWN"}
                out.update(channel=body["channel"], status=body["status"])
            futures.append(await producer.send(out_topic, json.dumps(out).encode(), key=rec.key))
        return futures, len(records)

    return await plain_loop(settings, n, "naive", handle)


async def processor(settings: Settings, n: int) -> dict[str, Any]:
    stop = asyncio.Event()
    proc = Processor(settings, stop=stop)
    reg = proc.metrics.registry
    task = asyncio.create_task(proc.run())
    t = settings.topics
    counters = [proc.metrics.records_in.labels(topic) for topic in (t.send_requests, t.delivery_status)]

    def consumed() -> float:
        # The counters' own values: get_sample_value() collects the whole registry, which at every
        # sample would take CPU from the processor being measured.
        return float(sum(c._value.get() for c in counters))

    try:
        while consumed() == 0:
            if task.done():
                task.result()
            await asyncio.sleep(0.001)
        started = time.perf_counter()
        cpu0 = time.process_time()
        # records_in counts a batch when it is read; the batch is committed when the turn ends, and
        # the loop is idle again only then, so wait for both to cover every input.
        while consumed() < n or not proc._idle.is_set():  # noqa: ASYNC110  # sampling another task's metrics
            # 5 ms: under 0.2% of a run of seconds, and a sample costs next to nothing.
            await asyncio.sleep(0.005)
        took = time.perf_counter() - started
        cpu = time.process_time() - cpu0
    finally:
        stop.set()
        await task
    out = {
        topic: reg.get_sample_value("stream_app_records_out_total", {"topic": topic}) or 0
        for topic in (t.retry_commands, t.outcomes, t.changelog, t.dead_letters)
    }
    return {
        "records": int(consumed()),
        "cpu_seconds": round(cpu, 3),
        "produced": int(sum(v for k, v in out.items() if k != t.changelog)),
        "changelog": int(out[t.changelog]),
        "dead_letters": int(out[t.dead_letters]),
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


def run_side(args: argparse.Namespace, side: str, app_id: str) -> dict[str, Any]:
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
        *(["--default-gc"] if args.default_gc else []),
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the {side} side failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def side(args: argparse.Namespace) -> dict[str, Any]:
    """The child process: measure one side on topics the parent created and filled."""
    if args.side in ("processor", "decode-floor") and not args.default_gc:
        tune_gc()  # as `stream-app processor` does (the floor too: it must be the fastest it can be)
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(args.bootstrap, args.prefix, args.app_id, Path(tmp), args.partitions)
        inputs = 2 * args.records  # a request and its DELIVERED status
        if args.side == "processor":
            return await processor(settings, inputs)
        if args.side == "naive":
            return await naive(settings, inputs, f"{args.prefix}naive-out")
        per_record = args.side == "passthrough-send"
        decode = args.side == "decode-floor"
        return await passthrough(settings, inputs, f"{args.prefix}{args.side}-out", per_record, decode)


async def prepare(args: argparse.Namespace) -> float:
    """Create the round's topics and fill both inputs; returns the fill rate (input records/s).

    Every round has topics of its own, so no round writes onto outputs an earlier one left behind.
    """
    with tempfile.TemporaryDirectory() as tmp:
        settings = settings_for(args.bootstrap, args.prefix, args.app_id, Path(tmp), args.partitions)
        sides = ("passthrough", "passthrough-send", "naive", "decode-floor")
        outs = [f"{args.prefix}{side}-out" for side in sides]
        await create_topics(settings, args.partitions, outs)
        t0 = time.perf_counter()
        await fill(settings, args.records)
        records: int = args.records
        return 2 * records / (time.perf_counter() - t0)


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
        send_rounds: list[dict[str, Any]] = []
        naive_rounds: list[dict[str, Any]] = []
        floor_rounds: list[dict[str, Any]] = []
        for r in range(args.rounds):
            args.prefix, args.app_id = f"bench{uuid.uuid4().hex[:8]}.", "bench-processor"
            fills.append(asyncio.run(prepare(args)))
            proc_rounds.append(run_side(args, "processor", args.app_id))
            raw_rounds.append(run_side(args, "passthrough", "bench-passthrough"))
            send_rounds.append(run_side(args, "passthrough-send", "bench-passthrough"))
            naive_rounds.append(run_side(args, "naive", "bench-naive"))
            floor_rounds.append(run_side(args, "decode-floor", "bench-passthrough"))
            print(
                f"round {r + 1}/{args.rounds}: processor {proc_rounds[-1]['per_s']}/s, "
                f"passthrough {raw_rounds[-1]['per_s']}/s, "
                f"passthrough with send() {send_rounds[-1]['per_s']}/s, naive {naive_rounds[-1]['per_s']}/s, "
                f"decode floor {floor_rounds[-1]['per_s']}/s",
                file=sys.stderr,
            )
    finally:
        if broker is not None:
            asyncio.run(broker.astop())
    proc, raw, send = median_side(proc_rounds), median_side(raw_rounds), median_side(send_rounds)
    peer, floor = median_side(naive_rounds), median_side(floor_rounds)
    return {
        "benchmark": "throughput",
        "broker": "tansu (local)" if broker is not None else args.bootstrap,
        "requests": args.records,
        "input_records": 2 * args.records,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "fill_per_s": round(statistics.median(fills)),
        "guarantee": "at_least_once",
        "hot_path": mode(),  # "compiled" after scripts/compile.sh, else "pure"
        "processor_outputs_per_input": round(proc_rounds[0]["produced"] / (2 * args.records), 3),
        "processor_changelog_per_input": round(proc_rounds[0]["changelog"] / (2 * args.records), 3),
        "passthrough": raw,
        "passthrough_send": send,
        "naive": peer,
        "decode_floor": floor,
        "processor": proc,
        "ratio": round(proc["per_s"] / raw["per_s"], 3),
        "ratio_per_round": [
            round(p["per_s"] / q["per_s"], 3) for p, q in zip(proc_rounds, raw_rounds, strict=True)
        ],
        "ratio_to_send": round(proc["per_s"] / send["per_s"], 3),
        "ratio_to_send_per_round": [
            round(p["per_s"] / q["per_s"], 3) for p, q in zip(proc_rounds, send_rounds, strict=True)
        ],
        "naive_ratio": round(peer["per_s"] / raw["per_s"], 3),
        # What decoding alone leaves of the passthrough: no processor keeping the contract goes higher.
        "decode_floor_ratio": round(floor["per_s"] / raw["per_s"], 3),
        "processor_over_naive": round(proc["per_s"] / peer["per_s"], 2),
        "target_ratio": 0.7,
        "rounds_detail": {
            "processor": proc_rounds,
            "passthrough": raw_rounds,
            "passthrough_send": send_rounds,
            "naive": naive_rounds,
            "decode_floor": floor_rounds,
        },
    }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--records", type=int, default=50_000, help="requests; each has a DELIVERED status too (2x inputs)"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each side (median)")
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the local Tansu")
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="run the processor with CPython's collector settings, not stream-app processor's tune_gc()",
    )
    # The child process's arguments (run_side passes them).
    parser.add_argument(
        "--side",
        choices=("processor", "passthrough", "passthrough-send", "naive", "decode-floor"),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.side is not None:
        print(json.dumps(asyncio.run(side(args))))
    else:
        print(json.dumps(main(args), indent=2))


if __name__ == "__main__":
    cli()
