"""Benchmark of the keyed timer store (issue 3, "Store" and "Restore" benchmarks). Prints one JSON object.

Phases, one PartitionStore (one partition) throughout:

1. insert: ``--count`` flows with a timer each, flushed every ``--batch`` puts with a changelog offset.
   The first ``--fire-rate * --hot-seconds`` timers are due one after another at ``--fire-rate`` per
   second (the hot window); the rest spread over 2 to 4 hours later (promotional fallbacks).
2. rss: VmRSS / VmHWM of this process from /proc/self/status after the insert.
3. lateness: a simulated clock that runs at real speed is started just before the hot window, and a
   runtime-shaped loop (due -> re-arm half, delete half -> flush, sleep until the next deadline) fires
   the hot window at ``--fire-rate``/s; lateness = clock at firing - deadline. p50/p99/max reported.
   Each fired timer's state is read with ``get`` (as the runtime does before ``decide``).
4. fire rate: the clock jumps ahead over ``--fire-count`` bulk timers and the loop drains them as fast
   as it can (due -> get -> delete per timer -> flush per turn of at most 10,000).
5. restore: the same flows as changelog records (``changelog_value``) applied to a fresh store with
   ``apply_changelog`` (record generation is not timed), then ``flush``; and a reopen of the first store
   plus a short tail.

Usage::

    /tmp/venv/bin/python bench/store.py                     # 200k flows, about half a minute
    /tmp/venv/bin/python bench/store.py --count 10000000    # the issue's figure
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stream_app.store import PartitionStore, changelog_value

TOPIC = "bench-flows-changelog"
HOUR_MS = 3_600_000
#: Simulated epoch of the run: any fixed instant works; this one is 2026-01-01T00:00:00Z.
T0_MS = 1_767_225_600_000
#: The hot window starts this long after T0 (the clock is started 1 s before it).
HOT_START_MS = T0_MS + 60_000
#: Bulk timers come due 2 to 4 hours after T0.
BULK_START_MS = T0_MS + 2 * HOUR_MS
BULK_SPAN_MS = 2 * HOUR_MS


def rss_kib() -> dict[str, int]:
    """VmRSS and VmHWM (peak) in KiB, read from /proc/self/status (no psutil)."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def message_key(i: int) -> bytes:
    """A 36-byte key in pseudo-random order (like UUID messageIds): a Fibonacci hash, then the index."""
    return b"%016x-%019d" % ((i * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF, i)


def flows(args: argparse.Namespace, value: bytes) -> Iterator[tuple[bytes, bytes, int]]:
    """(key, value, deadline) for every flow; hot ones first in deadline order, then the bulk."""
    rng = random.Random(args.seed)
    rate = args.fire_rate
    hot = rate * args.hot_seconds
    for i in range(args.count):
        hot_deadline = HOT_START_MS + (i * 1000) // rate
        deadline = hot_deadline if i < hot else BULK_START_MS + rng.randrange(BULK_SPAN_MS)
        yield message_key(i), value, deadline


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def phase_insert(store: PartitionStore, args: argparse.Namespace, value: bytes) -> dict[str, float]:
    batch = args.batch
    put = store.put
    started = time.perf_counter()
    for i, (key, val, deadline) in enumerate(flows(args, value)):
        put(key, val, deadline)
        if i % batch == batch - 1:
            store.flush(i)
    store.flush(args.count - 1)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "per_second": round(args.count / seconds)}


def phase_lateness(store: PartitionStore, args: argparse.Namespace, value: bytes) -> dict[str, float]:
    hot = args.fire_rate * args.hot_seconds
    real_start = time.monotonic()
    sim_start = HOT_START_MS - 1_000

    def clock() -> int:
        return sim_start + int((time.monotonic() - real_start) * 1000)

    end = HOT_START_MS + args.hot_seconds * 1000 + 500
    lateness: list[int] = []
    turns = 0
    offset = args.count
    turn_ms: list[float] = []
    while clock() < end:
        now = clock()
        t_turn = time.perf_counter()
        batch = store.due(now, 10_000)
        if batch:
            fired_at = clock()
            for key, deadline in batch:
                lateness.append(fired_at - deadline)
                if store.get(key) is None:  # the runtime reads the state to call decide()
                    raise SystemExit(f"fired a timer without state: {key!r}")
                if key[-1] & 1:
                    store.delete(key)
                else:  # the next fallback step: re-armed hours later
                    store.put(key, value, deadline + 3 * HOUR_MS)
            offset += len(batch)
            store.flush(offset)
            turns += 1
            turn_ms.append((time.perf_counter() - t_turn) * 1000)
        else:
            nxt = store.next_deadline()
            wait_ms = 5 if nxt is None else min(max(nxt - clock(), 0), 5)
            time.sleep(wait_ms / 1000)
    lateness.sort()
    turn_ms.sort()
    return {
        "fired": len(lateness),
        "expected": hot,
        "target_rate_per_second": args.fire_rate,
        "turns": turns,
        "lateness_ms_p50": percentile(lateness, 0.50),
        "lateness_ms_p99": percentile(lateness, 0.99),
        "lateness_ms_max": lateness[-1] if lateness else 0,
        "lateness_ms_mean": round(statistics.fmean(lateness), 2) if lateness else 0,
        "turn_ms_p99": round(percentile([int(t * 1000) for t in turn_ms], 0.99) / 1000, 3),
        "early_fires": sum(1 for x in lateness if x < 0),
    }


def phase_fire_rate(store: PartitionStore, args: argparse.Namespace) -> dict[str, float]:
    bulk = args.count - args.fire_rate * args.hot_seconds
    fire_count = min(args.fire_count, bulk)
    # Jump the clock so that about fire_count bulk timers are overdue, then drain them flat out.
    now = BULK_START_MS + int(BULK_SPAN_MS * fire_count / bulk)
    fired = 0
    offset = args.count * 2
    started = time.perf_counter()
    while batch := store.due(now, 10_000):
        for key, _ in batch:
            if store.get(key) is None:  # the runtime reads the state to call decide()
                raise SystemExit(f"fired a timer without state: {key!r}")
            store.delete(key)
        fired += len(batch)
        offset += 1
        store.flush(offset)
    seconds = time.perf_counter() - started
    return {
        "fired": fired,
        "seconds": round(seconds, 2),
        "per_second": round(fired / seconds) if seconds else 0,
    }


def phase_restore(root: Path, args: argparse.Namespace, value: bytes) -> dict[str, float]:
    store = PartitionStore.open(root, TOPIC, 1)
    chunk: list[tuple[bytes, bytes, int]] = []
    timed = 0.0
    apply = store.apply_changelog

    def run_chunk() -> float:
        t = time.perf_counter()
        for key, record, offset in chunk:
            apply(key, record, offset)
        return time.perf_counter() - t

    for i, (key, val, deadline) in enumerate(flows(args, value)):
        chunk.append((key, changelog_value(val, deadline), i))
        if len(chunk) == 100_000:
            timed += run_chunk()
            chunk.clear()
    timed += run_chunk()
    t = time.perf_counter()
    store.flush()
    timed += time.perf_counter() - t
    pending = store.pending_count()
    store.close()
    return {
        "records": args.count,
        "seconds": round(timed, 2),
        "per_second": round(args.count / timed),
        "pending_after": pending,
    }


def phase_reopen_tail(root: Path, args: argparse.Namespace, value: bytes) -> dict[str, float]:
    t = time.perf_counter()
    store = PartitionStore.open(root, TOPIC, 0)
    opened = time.perf_counter() - t
    base = store.changelog_offset or 0
    tail = [
        (message_key(args.count + i), changelog_value(value, BULK_START_MS + i), base + 1 + i)
        for i in range(args.tail)
    ]
    t = time.perf_counter()
    for key, record, offset in tail:
        store.apply_changelog(key, record, offset)
    store.flush()
    applied = time.perf_counter() - t
    store.close()
    return {
        "open_seconds": round(opened, 3),
        "tail_records": args.tail,
        "tail_seconds": round(applied, 3),
        "tail_per_second": round(args.tail / applied) if applied else 0,
    }


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200_000, help="pending flows/timers (default 200000)")
    parser.add_argument("--batch", type=int, default=10_000, help="puts per flush (default 10000)")
    parser.add_argument("--value-bytes", type=int, default=200, help="flow state size (default 200)")
    parser.add_argument("--fire-rate", type=int, default=10_000, help="hot-window timers per second")
    parser.add_argument("--hot-seconds", type=int, default=5, help="length of the hot window (default 5)")
    parser.add_argument("--fire-count", type=int, default=500_000, help="timers drained flat out")
    parser.add_argument("--tail", type=int, default=10_000, help="changelog tail after reopen")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", type=Path, default=None, help="state dir (default: a temp dir, removed)")
    parser.add_argument("--skip-restore", action="store_true")
    args = parser.parse_args(argv)
    if args.count <= args.fire_rate * args.hot_seconds:
        parser.error("--count must exceed --fire-rate * --hot-seconds")

    root = args.root or Path(tempfile.mkdtemp(prefix="store-bench-"))
    # A flow state of realistic size: mostly varied bytes (compresses like real encoded state, a bit).
    value = bytes(random.Random(args.seed).randrange(256) for _ in range(args.value_bytes // 2)) + b"\x00" * (
        args.value_bytes - args.value_bytes // 2
    )
    result: dict[str, object] = {
        "count": args.count,
        "value_bytes": args.value_bytes,
        "batch": args.batch,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    rss_before = rss_kib()
    try:
        store = PartitionStore.open(root, TOPIC, 0)
        result["insert"] = phase_insert(store, args, value)
        rss = rss_kib()
        result["rss_after_insert_mib"] = round(rss["VmRSS"] / 1024, 1)
        result["rss_peak_mib"] = round(rss["VmHWM"] / 1024, 1)
        result["rss_before_mib"] = round(rss_before["VmRSS"] / 1024, 1)
        result["pending_count"] = store.pending_count()
        result["disk_mib"] = round(dir_bytes(store.path) / 2**20, 1)
        result["lateness"] = phase_lateness(store, args, value)
        result["fire_rate"] = phase_fire_rate(store, args)
        store.close()
        if not args.skip_restore:
            result["restore"] = phase_restore(root, args, value)
            result["reopen_with_tail"] = phase_reopen_tail(root, args, value)
        rss = rss_kib()
        result["rss_end_mib"] = round(rss["VmRSS"] / 1024, 1)
        result["rss_peak_mib"] = round(rss["VmHWM"] / 1024, 1)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
