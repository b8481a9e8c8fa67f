"""kill -9 the processor at random moments while ~2,000 flows with pending timers run, restart it.

Every request must still end in exactly one outcome (repeats counted as the same messageId, and a
repeat must say the same thing), and no command may be lost: each message's commandIds are exactly
the ones its chain implies. Runs the real ``stream-app processor`` as a child process.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.runtime.helpers import (
    ProcessorProcess,
    Reader,
    publish,
    send_request,
    settings_for,
    setup_topics,
    status,
)

FLOWS = 2000
BURSTS = 4
KILLS = 6
#: Generous: every restart after a kill -9 waits for the dead member's session to expire (10 s)
#: before the group hands the partitions back, and Tansu adds its own rejoin delay.
FINISH_S = 240.0

# Three kinds of flow; the kind is the messageId prefix.
#   a: WhatsApp 1 s -> SMS 1 s, no statuses            -> FAILED, commands :0 :1
#   b: WhatsApp 1.5 s -> SMS, DELIVERED on attempt 0   -> SUCCEEDED, commands :0 (and :1 if the
#      status is processed after the timeout, e.g. across a crash: still SUCCEEDED on WhatsApp)
#   c: WhatsApp 0.5 s -> RCS 0.5 s -> SMS 0.5 s         -> FAILED, commands :0 :1 :2
STEPS = {
    "a": [("WHATSAPP", 1.0), ("SMS", 1.0)],
    "b": [("WHATSAPP", 1.5), ("SMS", None)],
    "c": [("WHATSAPP", 0.5), ("RCS", 0.5), ("SMS", 0.5)],
}


def _kind(i: int) -> str:
    return "abc"[i % 3]


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    rng = random.Random(20261122)
    s = settings_for(kafka_bootstrap, tmp_path / "state", partitions=6)
    await setup_topics(s)
    t = s.topics
    proc = ProcessorProcess(s, tmp_path / "processor.log")
    ids = [f"{_kind(i)}{i}" for i in range(FLOWS)]

    async def producer() -> None:
        per = FLOWS // BURSTS
        for b in range(BURSTS):
            chunk = ids[b * per : (b + 1) * per]
            await publish(s, t.send_requests, [(m.encode(), send_request(m, STEPS[m[0]])) for m in chunk])
            await publish(
                s,
                t.delivery_status,
                [(m.encode(), status(m, "WHATSAPP", "DELIVERED", 0)) for m in chunk if m[0] == "b"],
            )
            await asyncio.sleep(rng.uniform(2.0, 8.0))

    async def killer() -> None:
        # Each kill lands while the instance is working: after it has produced something since its
        # (re)start, at a random moment 0.1-3 s later (mid-batch, mid-commit, mid-restore...).
        for _ in range(KILLS):
            before = len(reader.records[t.retry_commands]) + len(reader.records[t.outcomes])
            await reader.wait(
                lambda before=before: (
                    len(reader.records[t.retry_commands]) + len(reader.records[t.outcomes]) > before
                ),
                "the restarted processor to produce",
                timeout=120,
            )
            await asyncio.sleep(rng.uniform(0.1, 3.0))
            proc.kill()
            await proc.wait()
            await proc.start()

    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes, t.dead_letters])
    await proc.start()
    try:
        async with reader:
            await asyncio.gather(producer(), killer())
            outcomes: dict[str, set[str]] = defaultdict(set)

            def all_ended() -> bool:
                outcomes.clear()
                for o in reader.values(t.outcomes):
                    outcomes[o["messageId"]].add(o["result"])
                return len(outcomes) >= FLOWS

            await reader.wait(all_ended, "an outcome for every request", timeout=FINISH_S)
            await asyncio.sleep(2.0)  # anything still in flight (a repeat, a stray command) shows up now
            await reader.poll(500)
            assert proc.proc is not None and proc.proc.returncode is None, proc.log_text()[-3000:]
            assert await proc.terminate() == 0
    finally:
        proc.kill()

    assert all_ended()
    assert set(outcomes) == set(ids)
    want = {"a": {"FAILED"}, "b": {"SUCCEEDED"}, "c": {"FAILED"}}
    wrong = {m: r for m, r in outcomes.items() if r != want[m[0]]}
    assert not wrong, f"{len(wrong)} messages ended wrongly or inconsistently, e.g. {list(wrong.items())[:5]}"

    commands: dict[str, set[str]] = defaultdict(set)
    by_id: dict[str, set[tuple[str, int]]] = defaultdict(set)
    for c in reader.values(t.retry_commands):
        commands[c["messageId"]].add(c["commandId"])
        by_id[c["commandId"]].add((c["channel"], c["attempt"]))
    assert all(len(v) == 1 for v in by_id.values()), "a repeated commandId must repeat the same command"
    for m in ids:
        expected = {"a": {f"{m}:0", f"{m}:1"}, "c": {f"{m}:0", f"{m}:1", f"{m}:2"}}.get(m[0])
        if expected is None:  # kind b
            assert f"{m}:0" in commands[m] and commands[m] <= {f"{m}:0", f"{m}:1"}, commands[m]
        else:
            assert commands[m] == expected, (m, commands[m])
    assert reader.records[t.dead_letters] == []
    repeats = len(reader.values(t.outcomes)) - FLOWS
    repeated_commands = len(reader.values(t.retry_commands)) - sum(len(v) for v in commands.values())
    print(
        f"crash test: {proc.starts} starts, {repeats} repeated outcomes, "
        f"{repeated_commands} repeated commands"
    )
