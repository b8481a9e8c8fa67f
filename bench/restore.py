"""Restore speed: flows/s replayed from the changelog into a fresh instance, then from a local store
with a short tail. Prints JSON.

The changelog is pre-filled with N real flow states (a WhatsApp -> SMS request run through
``decide()``, encoded with ``encode_state`` and wrapped with ``changelog_value``, each with its own
deadline), spread over the partitions as the processor writes them. Then:

* fresh: a processor with an empty state dir takes all partitions and replays the whole changelog;
* tail: it stops cleanly, T more records are appended, and a processor on the SAME state dir
  replays only those T records past the offset its local store remembers.

Times are the processor's own ``restored`` measurements (from the start of the replay to the
last partition done), so the group join is not counted. Target: fresh >= 100,000 flows/s.

    python bench/restore.py                     # 200,000 flows on a local Tansu (127.0.0.1:19542)
    python bench/restore.py --flows 1000000 --bootstrap localhost:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.compiled import mode
from stream_app.config import Settings
from stream_app.contracts import SendRequest, decode_request
from stream_app.fallback import Limits, RequestEvent, decide, encode_state
from stream_app.runtime import Processor
from stream_app.runtime.task import limits_of
from stream_app.store import changelog_value

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import create_topics

DEFAULT_PORT = 19542
_RESTORED = re.compile(r"event=restored partition=(\d+) applied=(\d+) skipped=(\d+) .*seconds=([0-9.]+)")


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def states(n: int, now_ms: int, limits: Limits) -> list[tuple[bytes, bytes]]:
    """(key, changelog value) of n pending flows, each a real state from decide()."""
    template = {
        "messageId": "",
        "destination": "+393401234567",
        "channels": [
            {"channel": "WHATSAPP", "fallbackAfter": 7200, "content": {"template": {"id": 42}}},
            {"channel": "SMS", "content": {"sender": "Bench", "text": "hello"}},
        ],
        "tenant": "bench",
    }
    out = []
    for i in range(n):
        mid = f"flow-{i:09d}"
        template["messageId"] = mid
        req = decode_request(orjson.dumps(template))
        assert isinstance(req, SendRequest)
        decision = decide(None, RequestEvent(req), now_ms + i, limits)
        state = decision.state
        assert state is not None
        out.append((mid.encode(), changelog_value(encode_state(state), state.deadline_ms)))
    return out


async def write_changelog(settings: Settings, records: list[tuple[bytes, bytes]], partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20, acks="all")
    await producer.start()
    try:
        futures = []
        for i, (key, value) in enumerate(records):
            # The processor writes partition p of the changelog for partition p of the inputs; any
            # spread will do for a restore, round-robin keeps the partitions even.
            futures.append(
                await producer.send(settings.topics.changelog, value, key=key, partition=i % partitions)
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def restore_once(settings: Settings, capture: _Capture, partitions: int) -> dict[str, Any]:
    capture.lines.clear()
    stop = asyncio.Event()
    ready = asyncio.Event()
    proc = Processor(settings, stop=stop, ready=ready)
    task = asyncio.create_task(proc.run())
    try:
        await asyncio.wait_for(ready.wait(), 120)
    finally:
        stop.set()
        await task
    found = [_RESTORED.search(line) for line in capture.lines]
    hits = [m for m in found if m]
    applied = sum(int(m.group(2)) for m in hits)
    seconds = max((float(m.group(4)) for m in hits), default=0.0)
    return {
        "partitions_replayed": len(hits),
        "flows": applied,
        "seconds": seconds,
        "flows_per_s": round(applied / seconds) if seconds else None,
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    broker = None
    bootstrap = args.bootstrap
    if bootstrap is None:
        from stream_app.broker import LocalBroker

        broker = LocalBroker(port=args.port)
        bootstrap = await broker.astart()
    capture = _Capture()
    logging.getLogger("stream_app.runtime").addHandler(capture)
    logging.getLogger("stream_app.runtime").setLevel(logging.INFO)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(
                bootstrap_servers=bootstrap,
                topic_prefix=f"bench{uuid.uuid4().hex[:8]}.",
                app_id="bench-restore",
                state_dir=Path(tmp),
                metrics_port=0,
                partitions=args.partitions,
            )
            await create_topics(settings, args.partitions, [])
            limits = limits_of(settings)
            now = int(time.time() * 1000)
            t0 = time.perf_counter()
            flows = states(args.flows + args.tail, now, limits)
            build_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            await write_changelog(settings, flows[: args.flows], args.partitions)
            write_s = time.perf_counter() - t0
            fresh = await restore_once(settings, capture, args.partitions)
            await write_changelog(settings, flows[args.flows :], args.partitions)
            tail = await restore_once(settings, capture, args.partitions)
    finally:
        logging.getLogger("stream_app.runtime").removeHandler(capture)
        if broker is not None:
            await broker.astop()
    return {
        "benchmark": "restore",
        "hot_path": mode(),
        "broker": "tansu (local)" if broker is not None else bootstrap,
        "partitions": args.partitions,
        "changelog_bytes_per_flow": round(sum(len(k) + len(v) for k, v in flows) / len(flows), 1),
        "build_states_per_s": round(len(flows) / build_s),
        "write_changelog_per_s": round(args.flows / write_s),
        "fresh": fresh,
        "tail": {**tail, "tail_records": args.tail},
        "target_fresh_flows_per_s": 100_000,
    }


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--flows", type=int, default=200_000)
    parser.add_argument("--tail", type=int, default=2_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the local Tansu")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args)), indent=2))


if __name__ == "__main__":
    cli()
