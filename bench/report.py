"""``stream-app report`` over 1,000,000 outcomes: outcomes/s read and peak memory (RSS). Prints JSON.

Writes a JSONL export of N outcomes (the seed scenarios' shapes: WhatsApp delivered, WhatsApp
refused then SMS, WhatsApp stuck then SMS with a late WhatsApp delivery and its doubleDelivery
late status, every channel failed, expired, cancelled; each attempt with statusTimes and realistic
latencies), then runs ``stream-app report --from-file FILE --json`` in a fresh process and measures
its wall time and peak RSS (``wait4``'s ``ru_maxrss`` of that process alone). With ``--kafka`` it
also publishes the same records to a topic of a local Tansu (or ``--bootstrap``) and reports from
the topic. Target (issue 11): under 60 s and under 1 GiB for 1,000,000 outcomes.

    flock /work/.bench.lock python bench/report.py                    # 1,000,000 from a file
    flock /work/.bench.lock python bench/report.py --kafka --outcomes 1000000
    python bench/report.py --export outcomes.jsonl --outcomes 100000   # just the export, to try the command
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream_app.contracts import format_ms

T0 = 1_775_721_600_000  # 2026-04-09T08:00:00Z


def _attempt(n: int, channel: str, issued: int, last: str, ended: str, **times: int) -> dict[str, Any]:
    a: dict[str, Any] = {"attempt": n, "channel": channel, "issuedAt": format_ms(issued), "lastStatus": last,
                         "endedBy": ended}  # fmt: skip
    if times:
        a["statusTimes"] = {k: format_ms(v) for k, v in times.items()}
    return a


def records(n: int, seed: int = 1) -> Any:
    """N outcomes (and their late statuses), spread over 24 h of completion times."""
    rng = random.Random(seed)
    for i in range(n):
        mid = f"bench-{i:08d}"
        start = T0 + i * 86_400_000 // n
        kind = rng.random()
        late = None
        lat = int(rng.lognormvariate(8.5, 1.2))  # ms, median ~5 s
        if kind < 0.70:
            attempts = [_attempt(0, "WHATSAPP", start, "DELIVERED", "SUCCEEDED", ACCEPTED=start + 300,
                                 SENT=start + 800, DELIVERED=start + lat)]  # fmt: skip
            result, channel, end = "SUCCEEDED", "WHATSAPP", start + lat
        elif kind < 0.85:
            sms = start + 400
            attempts = [
                {
                    **_attempt(0, "WHATSAPP", start, "REJECTED", "FAILED"),
                    "reasons": ["template not approved"],
                },
                _attempt(1, "SMS", sms, "DELIVERED", "SUCCEEDED", ACCEPTED=sms + 200, DELIVERED=sms + lat),
            ]
            result, channel, end = "SUCCEEDED", "SMS", sms + lat
        elif kind < 0.93:
            sms = start + 600_000
            attempts = [
                _attempt(0, "WHATSAPP", start, "SENT", "TIMEOUT", ACCEPTED=start + 300, SENT=start + 900),
                _attempt(1, "SMS", sms, "DELIVERED", "SUCCEEDED", ACCEPTED=sms + 200, DELIVERED=sms + lat),
            ]
            result, channel, end = "SUCCEEDED", "SMS", sms + lat
            if rng.random() < 0.4:
                late = {"type": "late-status", "schemaVersion": 1, "messageId": mid, "attempt": 0,
                        "channel": "WHATSAPP", "status": "DELIVERED",
                        "occurredAt": format_ms(start + 600_000 + lat * 10),
                        "doubleDelivery": True}  # fmt: skip
        elif kind < 0.97:
            attempts = [
                {**_attempt(0, "WHATSAPP", start, "ERROR", "FAILED"), "reasons": ["expired number"]},
                {**_attempt(1, "SMS", start + 500, "REJECTED", "FAILED"), "reasons": ["INVALID_DESTINATION"]},
            ]
            result, channel, end = "FAILED", None, start + 900
        elif kind < 0.99:
            attempts = [_attempt(0, "WHATSAPP", start, "SENT", "EXPIRED", ACCEPTED=start + 300)]
            result, channel, end = "EXPIRED", None, start + 3_600_000
        else:
            attempts = [_attempt(0, "WHATSAPP", start, "ACCEPTED", "CANCELLED", ACCEPTED=start + 300)]
            result, channel, end = "CANCELLED", None, start + 5_000
        outcome = {
            "type": "outcome", "schemaVersion": 1, "messageId": mid, "tenant": f"tenant-{i % 7}",
            "campaignId": f"campaign-{i % 31}", "result": result, "channel": channel,
            "status": "DELIVERED" if channel else None, "attemptCount": len(attempts), "attempts": attempts,
            "requestedAt": format_ms(start), "completedAt": format_ms(end), "durationMs": end - start,
            "metadata": {},
        }  # fmt: skip
        yield mid, orjson.dumps(outcome)
        if late is not None:
            yield mid, orjson.dumps(late)


def measure(argv: list[str]) -> dict[str, Any]:
    """Run ``stream-app`` with ``argv`` in a fresh process: wall seconds, peak RSS, its JSON output."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream_app", *argv], stdout=out, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        if proc.returncode != 0:
            raise SystemExit(f"stream-app {' '.join(argv)} failed ({proc.returncode}): {err}")
        out.seek(0)
        report = orjson.loads(out.read())
    return {"seconds": round(elapsed, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "report": report}


def summary(run: dict[str, Any], n: int) -> dict[str, Any]:
    rep = run["report"]
    return {
        "seconds": run["seconds"],
        "outcomes_per_s": round(n / run["seconds"]),
        "records_per_s": round(rep["read"]["records"] / run["seconds"]),
        "peak_rss_mib": run["peak_rss_mib"],
        "messages": rep["messages"],
        "records": rep["read"]["records"],
        "bad": rep["read"]["bad"],
        "late_matched": rep["late"]["messages"],
        "whatsapp_recommended_fallback_after": next(
            c["whatIf"]["recommendedFallbackAfter"] for c in rep["channels"] if c["channel"] == "WHATSAPP"
        ),
    }


async def publish(bootstrap: str, topic: str, path: Path) -> float:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 12, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    started = time.monotonic()
    try:
        pending = []
        with path.open("rb") as f:
            for line in f:
                value = line.rstrip(b"\n")
                key = orjson.loads(value)["messageId"].encode()
                pending.append(await producer.send(topic, value, key=key))
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outcomes", type=int, default=1_000_000)
    parser.add_argument("--kafka", action="store_true", help="also publish to a topic and report from it")
    parser.add_argument("--bootstrap", default=None, help="an existing broker (default: start a local Tansu)")
    parser.add_argument("--port", type=int, default=19552, help="port of the local Tansu")
    parser.add_argument("--export", metavar="FILE", help="only write the JSONL export to FILE")
    args = parser.parse_args()
    if args.export:
        with open(args.export, "wb") as f:
            for _, line in records(args.outcomes):
                f.write(line + b"\n")
        return
    result: dict[str, Any] = {"outcomes": args.outcomes, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "outcomes.jsonl"
        started = time.monotonic()
        with path.open("wb") as f:
            for _, line in records(args.outcomes):
                f.write(line + b"\n")
        result["file_mib"] = round(path.stat().st_size / (1 << 20), 1)
        result["generate_seconds"] = round(time.monotonic() - started, 1)
        result["from_file"] = summary(
            measure(["report", "--from-file", str(path), "--json", "--quiet"]), args.outcomes
        )
        if args.kafka:
            from stream_app.broker import LocalBroker

            broker = None
            bootstrap = args.bootstrap
            if bootstrap is None:
                broker = LocalBroker(port=args.port)
                bootstrap = broker.start()
            try:
                prefix = f"bench{uuid.uuid4().hex[:8]}."
                result["kafka_publish_seconds"] = round(
                    asyncio.run(publish(bootstrap, f"{prefix}outcomes", path)), 1
                )
                run = measure(
                    [
                        "report",
                        "--json",
                        "--quiet",
                        "--bootstrap-servers",
                        bootstrap,
                        "--topic-prefix",
                        prefix,
                    ]
                )
                result["from_kafka"] = summary(run, args.outcomes)
                result["broker"] = "tansu (local)" if broker is not None else bootstrap
            finally:
                if broker is not None:
                    broker.stop()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
