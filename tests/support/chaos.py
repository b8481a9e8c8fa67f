"""Chaos harness: several processor instances in one group, kill -9 under load, and a full audit.

Why: the contract promises that across crashes and rebalances no command and no outcome is lost,
and that a repeat carries the same commandId (issue 14). Unit and integration tests check one crash
at a time at a chosen moment; the bugs that remain live in the interleavings they do not reach
(a kill during a rebalance, a restore racing a revoke, a commit of offsets whose effects were never
produced). This module drives real ``stream-app processor`` child processes through such interleavings
and then audits every record the run produced against what each scripted flow must end as.

One run (:func:`run_chaos`):

1. creates the topics (``cfg.partitions`` each) and starts ``cfg.instances`` processors, one state
   dir each, one app id (one consumer group), and waits until together they own every partition;
2. publishes ``cfg.flows`` flows in ``cfg.batches`` batches over ``cfg.publish_seconds`` (so
   rebalances land mid-stream), with ``cfg.bad_records`` bad records on both input topics in between;
3. plays the gateway: a task follows ``retry-commands`` (no group) and publishes each flow's scripted
   statuses for every new commandId (some repeated, some out of order; a few flows get their first
   statuses before their request);
4. meanwhile kills a random instance (one that owns partitions, when there is one) with SIGKILL
   ``cfg.kills`` times and restarts it 1-3 s later; with ``cfg.kill_at_handover`` (the default) each
   kill after the first waits for the group to hand partitions out again and strikes 0.2-2 s into
   the new ownership. Optionally it freezes the broker (SIGSTOP/SIGCONT) once, when the harness
   started the broker itself;
5. waits for a condition (every flow has an outcome and every bad record is dead-lettered), or until
   nothing new appeared on the output topics for ``cfg.quiet_seconds``, within ``cfg.deadline_seconds``;
6. stops every instance with SIGTERM, reads the output topics to their end and counts what went
   wrong into a :class:`ChaosReport`.

Sleeps here only shape the chaos (when to kill, how long an instance stays dead, batch pacing);
every wait for a result is a bounded wait on a condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import re
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from stream_app.broker import LocalBroker
from stream_app.config import Settings, Topics
from tests.integration.runtime.helpers import ProcessorProcess, settings_for, setup_topics
from tests.support.broker import free_port

#: An instance's log line that says which partitions it owns now.
_ASSIGNED = re.compile(r"event=partitions_assigned partitions=([0-9,]*)")
#: fallbackAfter of steps that must NOT time out in a run: far beyond any run's length, so a late
#: status (an instance dead for a while, a frozen broker) never turns a scripted flow into a TIMEOUT.
LONG_FALLBACK_S = 900.0
#: Polls of the live reader; short enough that the gateway reacts within a fraction of a timer.
POLL_MS = 200
#: How long starting N instances and their first assignment may take on a busy 2-core machine.
START_TIMEOUT_S = 120.0
#: How long a kill at handover waits for the group to hand partitions out (a dead member leaves the
#: group after its 10 s session timeout, and the rebalance completes only then).
HANDOVER_WAIT_S = 30.0
#: How long reading the output topics to their end may take once the instances stopped.
DRAIN_TIMEOUT_S = 120.0
#: Examples of each failure kind kept in the report, to start a debugging session from.
EXAMPLES = 5


class Kind(StrEnum):
    """The scripted flow kinds; each has one right ending (CONTRACT.md)."""

    DELIVERED = "whatsapp-delivered"  # (a) WhatsApp DELIVERED: SUCCEEDED on WHATSAPP
    ERROR_THEN_SMS = "whatsapp-error-sms"  # (b) WhatsApp ERROR, SMS DELIVERED: SUCCEEDED on SMS
    TIMEOUT_THEN_SMS = "whatsapp-timeout-sms"  # (c) WhatsApp stuck in SENT, TIMEOUT, SMS DELIVERED
    CANCEL = "cancel"  # (d) a cancel after attempt 0: CANCELLED
    ALL_FAIL = "all-fail"  # (e) every channel fails: FAILED


#: (channel, status reactions) per step of each kind, in chain order. A reaction list is what the
#: gateway reports for that attempt; CANCEL's cancel itself is published by the gateway task.
SCRIPTS: dict[Kind, list[tuple[str, list[str]]]] = {
    Kind.DELIVERED: [("WHATSAPP", ["ACCEPTED", "SENT", "DELIVERED"]), ("SMS", ["DELIVERED"])],
    Kind.ERROR_THEN_SMS: [("WHATSAPP", ["ACCEPTED", "ERROR"]), ("SMS", ["SENT", "DELIVERED"])],
    Kind.TIMEOUT_THEN_SMS: [("WHATSAPP", ["ACCEPTED", "SENT"]), ("SMS", ["SENT", "DELIVERED"])],
    Kind.CANCEL: [("WHATSAPP", ["SENT"]), ("SMS", ["DELIVERED"])],
    Kind.ALL_FAIL: [("WHATSAPP", ["REJECTED"]), ("RCS", ["ERROR"]), ("SMS", ["ACCEPTED", "EXPIRED"])],
}
#: (result, winning channel or None, attempts that must be issued) per kind.
EXPECTED: dict[Kind, tuple[str, str | None, frozenset[int]]] = {
    Kind.DELIVERED: ("SUCCEEDED", "WHATSAPP", frozenset({0})),
    Kind.ERROR_THEN_SMS: ("SUCCEEDED", "SMS", frozenset({0, 1})),
    Kind.TIMEOUT_THEN_SMS: ("SUCCEEDED", "SMS", frozenset({0, 1})),
    Kind.CANCEL: ("CANCELLED", None, frozenset({0})),
    Kind.ALL_FAIL: ("FAILED", None, frozenset({0, 1, 2})),
}
#: Kinds whose attempt-0 statuses may be published before the request (held as orphans).
EARLY_KINDS = (Kind.DELIVERED, Kind.ERROR_THEN_SMS)


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """One chaos run's shape. Defaults are a CI size; ``bench/chaos.py`` scales them up."""

    work_dir: Path
    #: An existing broker; None starts a local Tansu broker of the run's own (needed for a freeze).
    bootstrap: str | None = None
    instances: int = 3
    partitions: int = 12
    flows: int = 600
    batches: int = 10
    publish_seconds: float = 10.0
    kills: int = 3
    #: Kill moments are drawn in [1 s, this] from the first publish; default publish_seconds + 10 s,
    #: so kills also hit the phase where timers fire and the last statuses come in.
    kill_window_seconds: float | None = None
    restart_delay: tuple[float, float] = (1.0, 3.0)
    #: Each kill after the first strikes 0.2-2 s after the group handed partitions out again.
    kill_at_handover: bool = True
    freeze_seconds: float = 0.0
    guarantee: str = "at_least_once"
    bad_records: int = 10
    #: fallbackAfter range of the WhatsApp step of TIMEOUT_THEN_SMS flows (seconds).
    timeout_range: tuple[float, float] = (2.0, 5.0)
    #: Share of flows of EARLY_KINDS whose attempt-0 statuses go out before their request.
    early_share: float = 0.05
    #: Share of status reactions published twice / in reverse order.
    repeat_share: float = 0.2
    reorder_share: float = 0.2
    seed: int = 0
    quiet_seconds: float = 30.0
    deadline_seconds: float = 600.0
    log_level: str = "info"

    @property
    def window(self) -> float:
        return self.kill_window_seconds if self.kill_window_seconds is not None else self.publish_seconds + 10


@dataclass
class ChaosReport:
    """What one run counted. Every count but the repeats must be 0 for a correct processor."""

    flows: int = 0
    lost: int = 0
    never_started: int = 0
    repeated_commands: int = 0
    conflicting_commands: int = 0
    unexpected_commands: int = 0
    repeated_outcomes: int = 0
    conflicting_outcomes: int = 0
    wrong_outcomes: int = 0
    commands_after_outcome: int = 0
    early_timers: int = 0
    bad_records: int = 0
    bad_not_dead_lettered: int = 0
    unexpected_dead_letters: int = 0
    # how the run went
    kills: int = 0
    restarts: int = 0
    crashes: int = 0
    assignments: int = 0
    completed: bool = False
    # settings
    instances: int = 0
    partitions: int = 0
    guarantee: str = ""
    broker: str = ""
    broker_freeze_seconds: float = 0.0
    seed: int = 0
    seconds: float = 0.0
    records: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def failures(self) -> dict[str, int]:
        """The counts that must be 0 whatever the guarantee (repeats of one commandId are allowed
        at_least_once; with exactly_once the caller checks them too)."""
        keys = (
            "lost",
            "never_started",
            "conflicting_commands",
            "unexpected_commands",
            "conflicting_outcomes",
            "wrong_outcomes",
            "commands_after_outcome",
            "early_timers",
            "bad_not_dead_lettered",
            "unexpected_dead_letters",
        )
        return {k: getattr(self, k) for k in keys if getattr(self, k)}

    def as_json(self) -> str:
        """The report as one JSON line (bench output, CI log line)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=False)


# --------------------------------------------------------------------------------------- the script


@dataclass(slots=True)
class Flow:
    """One scripted message: its request, the gateway's reactions per attempt, and its right end."""

    message_id: str
    kind: Kind
    fallback_s: float  # fallbackAfter of step 0
    early: bool  # attempt-0 statuses published before the request
    repeat: bool
    reorder: bool

    def request(self, requested_at: str) -> bytes:
        steps = SCRIPTS[self.kind]
        channels: list[dict[str, Any]] = []
        for i, (channel, _) in enumerate(steps):
            step: dict[str, Any] = {"channel": channel, "content": {"text": f"{self.message_id} {channel}"}}
            if i < len(steps) - 1:
                step["fallbackAfter"] = self.fallback_s if i == 0 else LONG_FALLBACK_S
            channels.append(step)
        return orjson.dumps(
            {
                "type": "send",
                "messageId": self.message_id,
                "destination": "+393401234567",
                "channels": channels,
                "tenant": "chaos",
                # requestedAt pins notAfter, so a command re-decided after a crash equals the first.
                "requestedAt": requested_at,
            }
        )

    def fallback_ms(self, attempt: int) -> int | None:
        steps = SCRIPTS[self.kind]
        if attempt >= len(steps) - 1:
            return None
        return int(self.fallback_s * 1000) if attempt == 0 else int(LONG_FALLBACK_S * 1000)

    def reactions(self, attempt: int) -> list[bytes]:
        """Status records the gateway publishes for this attempt (repeats and reordering included)."""
        steps = SCRIPTS[self.kind]
        if attempt >= len(steps):
            return []
        channel, statuses = steps[attempt]
        seq = list(reversed(statuses)) if self.reorder else list(statuses)
        if self.repeat:
            seq = seq + seq[-1:] + seq[:1]
        now = _iso(time.time())
        return [
            orjson.dumps(
                {
                    "messageId": self.message_id,
                    "attempt": attempt,
                    "channel": channel,
                    "status": s,
                    "occurredAt": now,
                }
            )
            for s in seq
        ]


def make_flows(cfg: ChaosConfig, rng: random.Random) -> list[Flow]:
    """The run's flows: kinds in equal shares, shuffled, each with its own random quirks."""
    kinds = list(Kind)
    flows = []
    lo, hi = cfg.timeout_range
    for i in range(cfg.flows):
        kind = kinds[i % len(kinds)]
        fallback = round(rng.uniform(lo, hi), 3) if kind is Kind.TIMEOUT_THEN_SMS else LONG_FALLBACK_S
        flows.append(
            Flow(
                message_id=f"chaos-{cfg.seed}-{i:06d}",
                kind=kind,
                fallback_s=fallback,
                early=kind in EARLY_KINDS and rng.random() < cfg.early_share,
                repeat=rng.random() < cfg.repeat_share,
                reorder=rng.random() < cfg.reorder_share,
            )
        )
    rng.shuffle(flows)
    return flows


def bad_records(n: int, topics: Topics, flows: list[Flow]) -> list[tuple[str, bytes | None, bytes | None]]:
    """``n`` records the processor must dead-letter, alternating between the two input topics.

    Shapes: not JSON, a key that is not the value's messageId (one status of that shape names a real
    flow and would change its ending if it were applied), a required field missing, a tombstone
    request and an unknown channel.
    """
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for i in range(n):
        shape = (i // 2) % 4
        if i % 2 == 0:
            mid = f"bad-req-{i}"
            topic = topics.send_requests
            values: list[tuple[bytes | None, bytes | None]] = [
                (mid.encode(), b"{not json"),
                (
                    f"wrong-{i}".encode(),
                    orjson.dumps(
                        {"messageId": mid, "destination": "+393401234567", "channels": [{"channel": "SMS"}]}
                    ),
                ),
                (mid.encode(), orjson.dumps({"type": "send", "messageId": mid})),
                (mid.encode(), None),
            ]
        else:
            real = flows[i % len(flows)].message_id if flows else f"bad-st-{i}"
            topic = topics.delivery_status
            values = [
                (real.encode(), b"\xff\xfe not json"),
                (
                    f"wrong-{i}".encode(),
                    orjson.dumps({"messageId": real, "attempt": 0, "channel": "WHATSAPP", "status": "READ"}),
                ),
                (real.encode(), orjson.dumps({"messageId": real, "channel": "SMS"})),
                (real.encode(), orjson.dumps({"messageId": real, "channel": "PIGEON", "status": "SENT"})),
            ]
        key, value = values[shape]
        out.append((topic, key, value))
    return out


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp() * 1000)


# ------------------------------------------------------------------------------------ the live side


class Follower:
    """Reads topics from the beginning without a group, keeps every record, tells when anything new came.

    The gateway reactions hang off it (``on_command``), so a command is answered as soon as it is read.
    """

    def __init__(self, bootstrap: str, topics: list[str], isolation_level: str) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.isolation_level = isolation_level
        self.records: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self.last_new = time.monotonic()
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level=self.isolation_level
        )
        await self._consumer.start()
        await self._consumer.topics()
        self._tps = [
            TopicPartition(t, p)
            for t in self.topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self) -> list[ConsumerRecord[bytes, bytes]]:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=POLL_MS, max_records=20_000)
        new: list[ConsumerRecord[bytes, bytes]] = []
        for tp, recs in batch.items():
            self.records[tp.topic].extend(recs)
            new.extend(recs)
        if new:
            self.last_new = time.monotonic()
        return new

    async def drain(self, timeout: float) -> None:  # noqa: ASYNC109
        """Read until every partition is read up to its end offset (the writers have stopped)."""
        assert self._consumer is not None
        deadline = time.monotonic() + timeout
        while True:
            await self.poll()
            ends = await self._consumer.end_offsets(self._tps)
            if all([await self._consumer.position(tp) >= ends[tp] for tp in self._tps]):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the output topics were not read to their end within {timeout:g} s")


class Gateway:
    """Plays the gateway: answers each new commandId with its flow's scripted statuses, and a
    CANCEL flow's attempt 0 with a cancel. Repeats of a commandId are not answered again (a real
    dispatcher drops them by commandId)."""

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, flows: dict[str, Flow]) -> None:
        self.producer = producer
        self.topics = topics
        self.flows = flows
        self.seen: set[str] = set()
        self.published = 0

    async def react(self, commands: Iterable[ConsumerRecord[bytes, bytes]]) -> None:
        futures = []
        for rec in commands:
            if rec.value is None:
                continue
            cmd = orjson.loads(rec.value)
            cid = cmd.get("commandId")
            flow = self.flows.get(cmd.get("messageId", ""))
            if flow is None or cid in self.seen:
                continue
            self.seen.add(cid)
            attempt = int(cmd["attempt"])
            key = flow.message_id.encode()
            if not (attempt == 0 and flow.early):
                for value in flow.reactions(attempt):
                    futures.append(await self.producer.send(self.topics.delivery_status, value, key=key))
            if flow.kind is Kind.CANCEL and attempt == 0:
                cancel = orjson.dumps({"type": "cancel", "messageId": flow.message_id, "reason": "chaos"})
                futures.append(await self.producer.send(self.topics.send_requests, cancel, key=key))
        if futures:
            await asyncio.gather(*futures)
            self.published += len(futures)


# --------------------------------------------------------------------------------------- the run


@dataclass
class _Run:
    cfg: ChaosConfig
    settings: Settings
    procs: list[ProcessorProcess]
    producer: AIOKafkaProducer
    follower: Follower
    gateway: Gateway
    flows: list[Flow]
    rng: random.Random
    broker: LocalBroker | None
    bad: dict[tuple[str, int, int], bytes | None] = field(default_factory=dict)
    killed: set[int] = field(default_factory=set)  # pids we killed on purpose
    kills: int = 0
    crashes: int = 0
    ended: set[str] = field(default_factory=set)  # messageIds with an outcome
    lettered: set[tuple[str, int, int]] = field(default_factory=set)  # sources of dead letters

    async def publish_all(self) -> None:
        """The flows and the bad records in ``cfg.batches`` batches, evenly over ``publish_seconds``."""
        cfg, t = self.cfg, self.settings.topics
        bad = bad_records(cfg.bad_records, t, self.flows)
        n = max(1, cfg.batches)
        gap = cfg.publish_seconds / n
        start = time.monotonic()
        for b in range(n):
            flows = self.flows[b * len(self.flows) // n : (b + 1) * len(self.flows) // n]
            bads = bad[b * len(bad) // n : (b + 1) * len(bad) // n]
            now = _iso(time.time())
            sends: list[tuple[str, bytes | None, bytes | None, bool]] = []
            for f in flows:
                if f.early:
                    sends.extend((t.delivery_status, f.message_id.encode(), v, False) for v in f.reactions(0))
            stride = max(1, len(flows) // (len(bads) + 1))
            for i, f in enumerate(flows):
                sends.append((t.send_requests, f.message_id.encode(), f.request(now), False))
                if bads and i % stride == stride - 1:
                    sends.append((*bads.pop(), True))
            sends.extend((*rec, True) for rec in bads)
            futures = [await self.producer.send(topic, value, key=key) for topic, key, value, _ in sends]
            metas = await asyncio.gather(*futures)
            for (topic, _, value, is_bad), meta in zip(sends, metas, strict=True):
                if is_bad:
                    self.bad[(topic, meta.partition, meta.offset)] = value
            await _sleep_until(start + (b + 1) * gap)

    async def chaos(self) -> None:
        """``cfg.kills`` SIGKILLs of random live instances at random moments of the window, each
        restarted after ``cfg.restart_delay`` seconds (with its own state dir, as a pod would be).

        With ``cfg.kill_at_handover`` each kill after the first also waits for the group to hand
        partitions out again after the previous one (a fresh ``partitions_assigned``), then strikes
        0.2-2 s later: while the new owners restore and take up the traffic, which is when a
        handover can lose what the previous owner committed (issue 14).
        """
        cfg, rng = self.cfg, self.rng
        start = time.monotonic()
        moments = sorted(rng.uniform(1.0, max(1.5, cfg.window)) for _ in range(cfg.kills))
        handed_out = -1  # assignments logged when the previous victim restarted
        for at in moments:
            await _sleep_until(start + at)
            if cfg.kill_at_handover and handed_out >= 0:
                with contextlib.suppress(AssertionError):  # no handover in time: strike anyway
                    await _until(
                        functools.partial(_handed_out_since, self.procs, handed_out),
                        "a handover",
                        HANDOVER_WAIT_S,
                    )
                await asyncio.sleep(rng.uniform(0.2, 2.0))  # chaos shape: when in the handover
            live = [p for p in self.procs if p.proc is not None and p.proc.returncode is None]
            # Prefer an instance that owns partitions now: killing one that is still joining moves
            # no partition and so tests no handover.
            owners = [p for p in live if _owns(p)]
            if not live:
                continue
            victim = rng.choice(owners or live)
            assert victim.proc is not None
            self.killed.add(victim.proc.pid)
            victim.kill()
            await victim.wait()
            self.kills += 1
            await asyncio.sleep(rng.uniform(*cfg.restart_delay))  # chaos shape: how long it stays dead
            handed_out = _assignments(self.procs)
            await victim.start()

    async def freeze(self) -> None:
        """Freeze the broker process once for ``cfg.freeze_seconds``, at a random moment mid-publish."""
        if self.cfg.freeze_seconds <= 0 or self.broker is None or self.broker.pid is None:
            return
        await asyncio.sleep(self.rng.uniform(0.3, 0.7) * self.cfg.publish_seconds)
        os.kill(self.broker.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(self.cfg.freeze_seconds)
        finally:
            os.kill(self.broker.pid, signal.SIGCONT)

    async def pump(self) -> None:
        """Read the output topics for as long as the run lasts; answer commands as they come."""
        t = self.settings.topics
        while True:
            new = await self.follower.poll()
            await self.gateway.react(r for r in new if r.topic == t.retry_commands)
            for r in new:
                if r.topic == t.outcomes and r.value is not None:
                    v = orjson.loads(r.value)
                    if v.get("type") == "outcome":
                        self.ended.add(v["messageId"])
                elif r.topic == t.dead_letters:
                    self.lettered |= _dead_lettered([r])
            for p in self.procs:  # an instance that died by itself is a crash, not one of our kills
                if p.proc is not None and p.proc.returncode is not None and p.proc.pid not in self.killed:
                    self.killed.add(p.proc.pid)
                    self.crashes += 1

    def done(self) -> bool:
        """Every flow has an outcome and every bad record is dead-lettered (from what the pump read)."""
        return len(self.ended) >= len(self.flows) and self.lettered >= set(self.bad)

    async def stop_all(self) -> int:
        """SIGTERM every live instance; returns how many did not exit with 0."""
        unclean = 0
        for p in self.procs:
            if p.proc is None or p.proc.returncode is not None:
                continue
            try:
                if await p.terminate() != 0:
                    unclean += 1
            except TimeoutError:
                unclean += 1
        return unclean


def _dead_lettered(records: list[ConsumerRecord[bytes, bytes]]) -> set[tuple[str, int, int]]:
    out = set()
    for r in records:
        h = {k: v.decode() for k, v in r.headers}
        with contextlib.suppress(KeyError, ValueError):
            out.add(
                (
                    h["__error.source.topic"],
                    int(h["__error.source.partition"]),
                    int(h["__error.source.offset"]),
                )
            )
    return out


async def _sleep_until(moment: float) -> None:
    """Pacing of the chaos itself (batch spacing, kill moments): never a wait for a result."""
    delay = moment - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def _until(check: Callable[[], bool], what: str, timeout: float) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def _assignments(procs: list[ProcessorProcess]) -> int:
    return sum(len(_ASSIGNED.findall(p.log_text())) for p in procs)


def _handed_out_since(procs: list[ProcessorProcess], seen: int) -> bool:
    return _assignments(procs) > seen


def _owns(proc: ProcessorProcess) -> bool:
    """Whether the instance's current run has logged a non-empty assignment (and no revoke after it)."""
    text = proc.log_text()
    run = text[text.rfind("--- start") :]
    events = re.findall(r"event=partitions_(assigned partitions=[0-9,]*|revoked)", run)
    return bool(events) and events[-1].startswith("assigned") and not events[-1].endswith("=")


def _owned(procs: list[ProcessorProcess], partitions: int) -> bool:
    latest = []
    for p in procs:
        found = _ASSIGNED.findall(p.log_text())
        if not found:
            return False
        latest.append({int(x) for x in found[-1].split(",") if x})
    return all(latest) and set().union(*latest) == set(range(partitions))


async def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    """Run one chaos scenario (module docstring) and return what it counted."""
    rng = random.Random(cfg.seed)
    began = time.monotonic()
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    report = ChaosReport(
        flows=cfg.flows,
        instances=cfg.instances,
        partitions=cfg.partitions,
        guarantee=cfg.guarantee,
        broker_freeze_seconds=cfg.freeze_seconds,
        seed=cfg.seed,
    )
    if cfg.freeze_seconds > 0 and cfg.bootstrap is not None:
        raise ValueError("a broker freeze needs the run's own broker (bootstrap=None)")
    async with contextlib.AsyncExitStack() as stack:
        broker: LocalBroker | None = None
        bootstrap = cfg.bootstrap
        if bootstrap is None:
            broker = LocalBroker(port=free_port())
            bootstrap = await broker.astart()
            stack.push_async_callback(broker.astop)
            report.broker = f"tansu (local, {bootstrap})"
        else:
            report.broker = bootstrap
        settings = settings_for(
            bootstrap, cfg.work_dir / "state", partitions=cfg.partitions, processing_guarantee=cfg.guarantee
        )
        await setup_topics(settings)
        t = settings.topics
        procs = [
            ProcessorProcess(
                settings,
                cfg.work_dir / f"p{i}.log",
                state_dir=cfg.work_dir / f"state-{i}",
                log_level=cfg.log_level,
            )
            for i in range(cfg.instances)
        ]
        for p in procs:  # last resort if anything below raises (a no-op for a stopped instance)
            stack.callback(p.kill)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        await producer.start()
        stack.push_async_callback(producer.stop)
        isolation = "read_committed" if cfg.guarantee == "exactly_once" else "read_uncommitted"
        follower = Follower(bootstrap, [t.retry_commands, t.outcomes, t.dead_letters], isolation)
        await follower.start()
        stack.push_async_callback(follower.stop)
        flows = make_flows(cfg, rng)
        run = _Run(
            cfg=cfg,
            settings=settings,
            procs=procs,
            producer=producer,
            follower=follower,
            gateway=Gateway(producer, t, {f.message_id: f for f in flows}),
            flows=flows,
            rng=rng,
            broker=broker,
        )
        for p in procs:
            await p.start()
        await _until(
            lambda: _owned(procs, cfg.partitions), "every instance to own partitions", START_TIMEOUT_S
        )

        pump = asyncio.create_task(run.pump())
        stack.push_async_callback(_cancel, pump)
        await asyncio.gather(run.publish_all(), run.chaos(), run.freeze())
        deadline = began + cfg.deadline_seconds
        while not run.done():
            if pump.done():
                pump.result()  # re-raise what broke the gateway
            now = time.monotonic()
            if now - follower.last_new > cfg.quiet_seconds or now > deadline:
                break
            await asyncio.sleep(0.2)
        report.completed = run.done()
        await _cancel(pump)
        unclean = await run.stop_all()
        report.crashes = run.crashes + unclean
        await follower.drain(DRAIN_TIMEOUT_S)
        report.kills = run.kills
        report.restarts = sum(p.starts for p in procs) - cfg.instances
        report.assignments = _assignments(procs)
        audit(report, flows, follower.records, t, run.bad)
    report.seconds = round(time.monotonic() - began, 1)
    return report


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# ------------------------------------------------------------------------------------------ audit


def audit(
    report: ChaosReport,
    flows: list[Flow],
    records: dict[str, list[ConsumerRecord[bytes, bytes]]],
    t: Topics,
    bad: dict[tuple[str, int, int], bytes | None],
) -> None:
    """Count every deviation from the script into ``report``.

    Command bodies are compared on what the dispatcher acts on (messageId, attempt, channel,
    destination, content, reason, notAfter): ``issuedAt`` and ``previous`` record when and after
    which statuses the step was decided, and a replay after a crash may see those differently.
    Times come from the processor's own ``issuedAt`` / ``completedAt`` rather than the record
    timestamps: those are set when the batch is appended, after the decision, so a timer that fired
    on time would look early by the produce delay of its previous command.
    """
    examples: dict[str, list[str]] = defaultdict(list)

    def bump(name: str, mid: str, n: int = 1) -> None:
        setattr(report, name, getattr(report, name) + n)
        if len(examples[name]) < EXAMPLES:
            examples[name].append(mid)

    commands: dict[str, list[dict[str, Any]]] = defaultdict(list)  # commandId -> bodies in read order
    per_msg: dict[str, list[str]] = defaultdict(list)  # messageId -> commandIds in first-seen order
    for r in records[t.retry_commands]:
        if r.value is None:
            continue
        c = orjson.loads(r.value)
        if c["commandId"] not in commands:
            per_msg[c["messageId"]].append(c["commandId"])
        commands[c["commandId"]].append(c)
    outcomes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records[t.outcomes]:
        if r.value is not None and (o := orjson.loads(r.value)).get("type") == "outcome":
            outcomes[o["messageId"]].append(o)

    def essence(c: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            orjson.dumps(c.get(k), option=orjson.OPT_SORT_KEYS)
            for k in ("messageId", "attempt", "channel", "destination", "content", "reason", "notAfter")
        )

    for cid, bodies in commands.items():
        mid = bodies[0]["messageId"]
        if len(bodies) > 1:
            bump("repeated_commands", cid, len(bodies) - 1)
            if len({essence(b) for b in bodies}) > 1:
                bump("conflicting_commands", cid)
    for f in flows:
        mid = f.message_id
        result, channel, attempts = EXPECTED[f.kind]
        cids = per_msg.get(mid, [])
        issued = {commands[c][0]["attempt"]: commands[c] for c in cids}
        if 0 not in issued:
            bump("never_started", mid)
        if set(issued) - attempts:
            bump("unexpected_commands", mid)
        ends = outcomes.get(mid, [])
        if not ends:
            bump("lost", mid)
        else:
            first = ends[0]
            if len(ends) > 1:
                bump("repeated_outcomes", mid, len(ends) - 1)
                keys = {(o["result"], o.get("channel"), o.get("attemptCount")) for o in ends}
                if len(keys) > 1:
                    bump("conflicting_outcomes", mid)
            if first["result"] != result or (channel is not None and first.get("channel") != channel):
                bump("wrong_outcomes", mid)
            done_ms = _ms(first["completedAt"])
            if any(_ms(commands[c][0]["issuedAt"]) > done_ms for c in cids):
                bump("commands_after_outcome", mid)
        for attempt, bodies in issued.items():
            if bodies[0].get("reason") != "TIMEOUT" or attempt - 1 not in issued:
                continue
            after = f.fallback_ms(attempt - 1)
            prev_ms = min(_ms(b["issuedAt"]) for b in issued[attempt - 1])
            if after is None or min(_ms(b["issuedAt"]) for b in bodies) < prev_ms + after:
                bump("early_timers", f"{mid}:{attempt}")
    report.bad_records = len(bad)
    lettered = _dead_lettered(records[t.dead_letters])
    for src in bad:
        if src not in lettered:
            bump("bad_not_dead_lettered", f"{src[0]}/{src[1]}@{src[2]}")
    for src in lettered - set(bad):
        bump("unexpected_dead_letters", f"{src[0]}/{src[1]}@{src[2]}")
    report.records = {
        "retry_commands": len(records[t.retry_commands]),
        "outcomes": len(records[t.outcomes]),
        "dead_letters": len(records[t.dead_letters]),
    }
    report.examples = dict(examples)


__all__ = ["ChaosConfig", "ChaosReport", "Kind", "run_chaos"]
