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
* processor-eos: the same with ``exactly_once`` (a transactional producer per partition, each
  turn's outputs, changelog and offsets in its transactions). Only a broker with the transaction
  APIs runs it: Apache Kafka, or here librdkafka's mock cluster (``--mock``), which answers them
  but, being a mock, stores what it is sent without the work a broker does for a transaction (it
  keeps no transactional offsets and filters nothing): its figure is the processor's own cost of
  exactly_once, not what a Kafka cluster's transaction coordinator adds.

The clock of each side starts at its first consumed record and stops when the last input offset is
committed, so the group join (seconds on Tansu) is not counted on either side. Target: processor
>= 0.7 of the passthrough. Each side also reports its process CPU time per input record.

Each side runs in a process of its own (``--side``), so neither inherits the other's heap, garbage
collector or imports, and the sides alternate for ``--rounds`` rounds (fresh topics, groups, app id
and state directory each round): on two cores shared with the broker one run of a few seconds
varies by 10-20%, so the figure reported is the ratio of the medians, with every round listed.

    python bench/throughput.py                       # a local Tansu on 127.0.0.1:19541
    python bench/throughput.py --records 100000 --rounds 5 --bootstrap localhost:9092
    python bench/throughput.py --mock --sides passthrough,processor,processor-eos
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

# The mock cluster's helpers are the test suite's (tests/support/mock_kafka.py: what the mock does and
# does not do is written there); the repository's root makes them importable from bench/.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.mock_kafka import MOCK_PARTITIONS, auto_create, mock_cluster

#: The runtime room's port range (19500-19599).
DEFAULT_PORT = 19541

#: Every side, in the order a round runs them.
SIDES = ("processor", "processor-eos", "passthrough", "passthrough-send", "naive", "decode-floor")
#: What runs without --sides: processor-eos needs a broker with transactions (Tansu has none).
DEFAULT_SIDES = ("processor", "passthrough", "passthrough-send", "naive", "decode-floor")
#: The keys of the JSON a side's median is reported under.
KEYS = {side: side.replace("-", "_") for side in SIDES}


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


#: The consumer group (and changelog) of each processor side: its own, so neither starts from the
#: other's committed offsets.
APP_IDS = {"processor": "bench-processor", "processor-eos": "bench-processor-eos"}


def topic_names(settings: Settings) -> list[str]:
    """Every catalogue topic of both processor sides (the changelog is per app id)."""
    names = {spec.name(settings.topic_prefix, app_id) for spec in CATALOGUE for app_id in APP_IDS.values()}
    return sorted(names)


async def create_topics(settings: Settings, partitions: int, extra: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        configs = {
            spec.name(settings.topic_prefix, app_id): dict(spec.configs)
            for spec in CATALOGUE
            for app_id in APP_IDS.values()
        }
        specs = [NewTopic(name, partitions, 1, topic_configs=configs[name]) for name in topic_names(settings)]
        specs += [NewTopic(name, partitions, 1) for name in extra]
        existing = set(await admin.list_topics())
        specs = [spec for spec in specs if spec.name not in existing]
        if specs:
            await admin.create_topics(specs)
        while not {s.name for s in specs} <= set(await admin.list_topics()):  # noqa: ASYNC110  # broker polling
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def mock_topics(settings: Settings, extra: list[str]) -> None:
    """The mock cluster has no CreateTopics: a Metadata request creates a topic, with 4 partitions."""
    await auto_create(settings.bootstrap_servers, [*topic_names(settings), *extra])


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
        # Turns (a getmany() processed and committed): their size is what the commit's waits and,
        # with exactly_once, each partition's transaction are spread over.
        "turns": int(reg.get_sample_value("stream_app_batch_seconds_count") or 0),
        "seconds": round(took, 3),
        "per_s": round(n / took),
    }


def settings_for(
    bootstrap: str,
    prefix: str,
    app_id: str,
    state_dir: Path,
    partitions: int,
    guarantee: str = "at_least_once",
) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        app_id=app_id,
        state_dir=state_dir,
        metrics_port=0,
        partitions=partitions,
        processing_guarantee=guarantee,
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
    if args.side in ("processor", "processor-eos", "decode-floor") and not args.default_gc:
        tune_gc()  # as `stream-app processor` does (the floor too: it must be the fastest it can be)
    with tempfile.TemporaryDirectory() as tmp:
        guarantee = "exactly_once" if args.side == "processor-eos" else "at_least_once"
        settings = settings_for(
            args.bootstrap, args.prefix, args.app_id, Path(tmp), args.partitions, guarantee
        )
        inputs = 2 * args.records  # a request and its DELIVERED status
        if args.side in ("processor", "processor-eos"):
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
        if args.mock:
            await mock_topics(settings, outs)
        else:
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
    with contextlib.ExitStack() as stack:
        if args.mock:
            # The mock brokers live in this process (a confluent-kafka client) until the block ends;
            # each side's process talks to them over TCP like to any broker.
            args.bootstrap = stack.enter_context(mock_cluster())
            args.partitions = MOCK_PARTITIONS
            broker = None
        else:
            broker = asyncio.run(start_broker(args))
        try:
            fills, rounds = run_rounds(args)
        finally:
            if broker is not None:
                asyncio.run(broker.astop())
    return summary(args, broker, fills, rounds)


def run_rounds(args: argparse.Namespace) -> tuple[list[float], dict[str, list[dict[str, Any]]]]:
    """Each round: fresh topics, then every side once, in turn."""
    fills: list[float] = []
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in args.sides}
    for r in range(args.rounds):
        args.prefix, args.app_id = f"bench{uuid.uuid4().hex[:8]}.", APP_IDS["processor"]
        fills.append(asyncio.run(prepare(args)))
        for side in args.sides:
            rounds[side].append(run_side(args, side, APP_IDS.get(side, f"bench-{side}")))
        line = ", ".join(f"{side} {rounds[side][-1]['per_s']}/s" for side in args.sides)
        print(f"round {r + 1}/{args.rounds}: {line}", file=sys.stderr)
    return fills, rounds


def ratio(rounds: dict[str, list[dict[str, Any]]], side: str, to: str) -> dict[str, Any]:
    """The ratio of two sides' medians, and of each round."""
    return {
        "ratio": round(median_side(rounds[side])["per_s"] / median_side(rounds[to])["per_s"], 3),
        "per_round": [
            round(p["per_s"] / q["per_s"], 3) for p, q in zip(rounds[side], rounds[to], strict=True)
        ],
    }


def summary(
    args: argparse.Namespace, broker: Any, fills: list[float], rounds: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "benchmark": "throughput",
        "broker": "librdkafka mock"
        if args.mock
        else "tansu (local)"
        if broker is not None
        else args.bootstrap,
        "requests": args.records,
        "input_records": 2 * args.records,
        "partitions": args.partitions,
        "rounds": args.rounds,
        "fill_per_s": round(statistics.median(fills)),
        "hot_path": mode(),  # "compiled" after scripts/compile.sh, else "pure"
    }
    for side in ("processor", "processor-eos"):
        if side in rounds:
            out[f"{KEYS[side]}_outputs_per_input"] = round(
                rounds[side][0]["produced"] / (2 * args.records), 3
            )
            out[f"{KEYS[side]}_changelog_per_input"] = round(
                rounds[side][0]["changelog"] / (2 * args.records), 3
            )
    out.update({KEYS[side]: median_side(rounds[side]) for side in args.sides})
    # Each ratio whose two sides ran: to the batch passthrough (the target's), to send() per record,
    # the naive peer's and the decode floor's (what decoding alone leaves: no processor keeping the
    # contract goes higher), and the processor against the naive peer.
    pairs = {
        "ratio": ("processor", "passthrough"),
        "ratio_exactly_once": ("processor-eos", "passthrough"),
        "ratio_to_send": ("processor", "passthrough-send"),
        "naive_ratio": ("naive", "passthrough"),
        "decode_floor_ratio": ("decode-floor", "passthrough"),
        "processor_over_naive": ("processor", "naive"),
        "exactly_once_over_at_least_once": ("processor-eos", "processor"),
    }
    for key, (side, to) in pairs.items():
        if side in rounds and to in rounds:
            r = ratio(rounds, side, to)
            out[key] = r["ratio"]
            out[f"{key}_per_round"] = r["per_round"]
    out["target_ratio"] = {"at_least_once": 0.7, "exactly_once": 0.5}
    out["rounds_detail"] = {KEYS[side]: rounds[side] for side in args.sides}
    return out


def sides_arg(text: str) -> tuple[str, ...]:
    sides = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [side for side in sides if side not in SIDES]
    if unknown or not sides:
        raise argparse.ArgumentTypeError(
            f"unknown side(s) {', '.join(unknown) or '(none given)'}; sides: {', '.join(SIDES)}"
        )
    return sides


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
    parser.add_argument(
        "--sides",
        type=sides_arg,
        default=DEFAULT_SIDES,
        help=f"comma-separated sides to run, of {', '.join(SIDES)} (default: all but processor-eos, "
        "which needs a broker with transactions: --mock, or Apache Kafka with --bootstrap)",
    )
    parser.add_argument(
        "--mock",
        action="store_true",
        help="run on librdkafka's mock cluster (confluent-kafka, the dev extra): the one broker here "
        "with the transaction APIs; 4 partitions, whatever --partitions says",
    )
    # The child process's arguments (run_side passes them).
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
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
