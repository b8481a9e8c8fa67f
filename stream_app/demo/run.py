"""``stream-app demo``: every room of the product working together on one laptop.

One asyncio process runs the processor, the dispatcher, the webhook receiver and the gateway
simulator against a broker (a local Tansu started here unless ``--bootstrap-servers`` names one),
each on its own fresh topic prefix and state directory so a demo never sees an earlier run's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from stream_app.admin.follow import channel_path, follow_outcomes
from stream_app.admin.publish import publish_requests, validate
from stream_app.admin.topics import create_topics
from stream_app.config import Settings
from stream_app.contracts import Channel, Outcome
from stream_app.demo.errors import DemoFailed
from stream_app.demo.outage import (
    CAUGHT,
    CONTROL_SETTLE_S,
    DEMO_BREAKER,
    RECOVERED,
    SKIPPING,
    STEP_TIMEOUT,
    ControlLog,
    outage_request,
    wait_gave_up,
    watch_control,
)
from stream_app.demo.outage import simulator_rules as outage_rules
from stream_app.demo.scenarios import SCENARIOS, Scenario, simulator_rules
from stream_app.demo.table import render
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import Simulator, parse_rules, run_simulator
from stream_app.lifecycle import wait_started

#: Speed-up of the seed pages' timeouts: 1200 plays a 2 h WhatsApp wait in 6 s, so the whole demo
#: (its longest chain is a 2 h wait plus a few seconds of gateway timeline) ends well within a minute.
DEFAULT_SPEED = 1200.0
#: How long the demo waits for every outcome before it gives up and says which are missing.
DEFAULT_TIMEOUT = 120.0
#: Three partitions: enough to show co-partitioning at work, few enough to start in a second.
DEMO_PARTITIONS = 3


@dataclass
class Row:
    scenario: Scenario
    message_id: str
    outcome: Outcome | None = None

    @property
    def ok(self) -> bool:
        o = self.outcome
        if o is None or o.result.value != self.scenario.expect_result:
            return False
        if (o.channel.value if o.channel else None) != self.scenario.expect_channel:
            return False
        ended = self.scenario.expect_ended
        return ended is None or tuple(a.ended_by.value if a.ended_by else "" for a in o.attempts) == ended


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def play(
    settings: Settings,
    *,
    speed: float = DEFAULT_SPEED,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - a deadline for outcomes, not for one await
    out: TextIO = sys.stdout,
    outage: bool = True,
) -> list[Row]:
    """Play every scenario against the broker of ``settings``; returns one row per message.

    ``outage``: then play the outage act (:mod:`stream_app.demo.outage`): WhatsApp goes down, the
    dispatcher's breaker closes it on channel-control, the chain skips it, and it comes back.
    """
    run = uuid.uuid4().hex[:8]
    state_root = Path(tempfile.mkdtemp(prefix="stream-app-demo-"))
    settings = replace(
        settings,
        topic_prefix=f"{settings.topic_prefix}demo-{run}.",
        app_id=f"demo-{run}",
        state_dir=state_root / "processor",
        partitions=DEMO_PARTITIONS,
        metrics_port=0,
    )
    say: Callable[[str], None] = lambda line: print(line, file=out, flush=True)  # noqa: E731
    say(f"demo {run}: topics with prefix {settings.topic_prefix!r} on {settings.bootstrap_servers}")
    await create_topics(settings, partitions=DEMO_PARTITIONS)

    api_key = secrets.token_hex(16)
    secret = secrets.token_bytes(32)
    sim_port, hook_port = _free_port(), _free_port()
    gateway = GatewaySettings(
        url=f"http://127.0.0.1:{sim_port}", api_key=api_key, webhook_secret=secret, breaker=DEMO_BREAKER
    )
    simulator: list[Simulator] = []
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def start(what: str, make: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
        ready = asyncio.Event()
        task: asyncio.Task[None] = asyncio.create_task(make(ready), name=what)
        tasks.append(task)
        await wait_started(task, ready, what)
        say(f"  started {what}")

    from stream_app.gateway.dispatcher import run_dispatcher
    from stream_app.gateway.webhook import run_webhook
    from stream_app.runtime import run_processor

    rows = [Row(s, f"demo-{run}-{s.key}") for s in SCENARIOS]
    try:
        await start(
            "webhook receiver",
            lambda r: run_webhook(settings, gateway, host="127.0.0.1", port=hook_port, stop=stop, ready=r),
        )
        await start(
            "gateway simulator",
            lambda r: run_simulator(
                "127.0.0.1",
                sim_port,
                rules=parse_rules(_json(_rules())),
                api_key=api_key,
                webhook_url=f"http://127.0.0.1:{hook_port}/dlr",
                webhook_secret=secret,
                stop=stop,
                ready=r,
                simulator=simulator,
            ),
        )
        await start(
            "dispatcher",
            lambda r: run_dispatcher(
                replace(settings, state_dir=state_root / "dispatcher"), gateway, stop=stop, ready=r
            ),
        )
        await start("processor", lambda r: run_processor(settings, stop=stop, ready=r))

        requests = [validate(row.scenario.request(row.message_id, speed)) for row in rows]
        await publish_requests(settings, requests)
        say(f"published {len(rows)} send requests (timeouts / {speed:g}); waiting for outcomes...")
        for row in rows:
            say(f"  {row.message_id}  {row.scenario.name}: {row.scenario.story}")
        await _collect(settings, rows, timeout, say, tasks)
        if outage:
            rows += await _outage_act(settings, simulator[0], run, speed, timeout, say, tasks)
    finally:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=15) if tasks else (set(), set())
        for task in pending:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                say(f"  {task.get_name()} stopped with: {task.exception()}")
    return rows


def _rules() -> dict[str, Any]:
    """The seed scenarios' rules, the outage act's before the catch-all."""
    rules = simulator_rules()
    rules["rules"][-1:-1] = outage_rules()
    return rules


async def _outage_act(
    settings: Settings,
    sim: Simulator,
    run: str,
    speed: float,
    timeout: float,  # noqa: ASYNC109 - a deadline for outcomes, not for one await
    say: Callable[[str], None],
    services: list[asyncio.Task[None]],
) -> list[Row]:
    """WhatsApp down, the breaker closes it, the chain skips it, WhatsApp back (demo/outage.py)."""
    say("")
    say("outage: WhatsApp goes down (every WhatsApp call to the gateway answers 503)")
    started = time.monotonic()
    controls = ControlLog()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_control(settings, controls, stop, say, started))
    rows: list[Row] = []

    async def publish(scenarios: tuple[Scenario, ...]) -> list[Row]:
        batch = [Row(s, f"demo-{run}-{s.key}") for s in scenarios]
        await publish_requests(
            settings, [validate(outage_request(r.scenario, r.message_id, speed)) for r in batch]
        )
        for row in batch:
            say(f"  {row.message_id}  {row.scenario.name}: {row.scenario.story}")
        rows.extend(batch)
        return batch

    try:
        sim.fail_channel(Channel.WHATSAPP, status=503)
        caught = await publish(CAUGHT)
        await _step(controls.wait_for(Channel.WHATSAPP, "CLOSED", "the breaker's trip"), watcher, services)
        await asyncio.sleep(CONTROL_SETTLE_S)  # the processor's own read of channel-control
        skipped = await publish((SKIPPING,))
        await _collect(settings, caught + skipped, timeout, say, services, started)
        say("  waiting for the caught messages' WhatsApp retries to reach their notAfter ...")
        gave_up = wait_gave_up(settings, {r.message_id for r in caught}, stop)
        await _step(asyncio.wait_for(gave_up, STEP_TIMEOUT), watcher, services)
        sim.recover_channel(Channel.WHATSAPP)
        say(f"  [{time.monotonic() - started:5.1f}s] WhatsApp is back; the breaker probes it after its until")
        await _step(controls.wait_for(Channel.WHATSAPP, "OPEN", "the breaker's probe"), watcher, services)
        await _collect(settings, await publish((RECOVERED,)), timeout, say, services, started)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(watcher, timeout=5)
    return rows


async def _step(
    awaitable: Coroutine[Any, Any, Any], watcher: asyncio.Task[None], services: list[asyncio.Task[None]]
) -> None:
    """Await one step of the act; a service or the watcher that died meanwhile is the news instead."""
    step = asyncio.ensure_future(awaitable)
    try:
        while not step.done():
            await asyncio.wait({step, watcher, *services}, return_when=asyncio.FIRST_COMPLETED)
            dead = [t for t in (watcher, *services) if t.done()]
            if dead and not step.done():
                dead[0].result()
                raise DemoFailed(f"the {dead[0].get_name()} stopped unexpectedly")
        step.result()
    except TimeoutError:
        raise DemoFailed(
            "the outage act timed out waiting for the dispatcher to give up its retries"
        ) from None
    finally:
        step.cancel()


def _json(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


async def _collect(
    settings: Settings,
    rows: list[Row],
    timeout: float,  # noqa: ASYNC109 - a deadline for outcomes, not for one await
    say: Callable[[str], None],
    services: list[asyncio.Task[None]],
    started: float | None = None,
) -> None:
    """Follow ``outcomes`` until every row has its outcome, printing each as it lands (with the
    seconds since ``started``, default now)."""
    by_id = {row.message_id: row for row in rows}
    began = time.monotonic()
    started = began if started is None else started
    done = asyncio.Event()

    async def follow() -> None:
        async for item in follow_outcomes(settings, follow=True, from_beginning=True, stop=done):
            rec = item.record
            if isinstance(rec, Outcome) and rec.message_id in by_id and by_id[rec.message_id].outcome is None:
                row = by_id[rec.message_id]
                row.outcome = rec
                mark = "ok" if row.ok else "UNEXPECTED"
                say(
                    f"  [{time.monotonic() - started:5.1f}s] {rec.message_id} {rec.result.value}"
                    f" via {channel_path(rec)}  ({mark})"
                )
                if all(r.outcome is not None for r in rows):
                    done.set()

    follower = asyncio.create_task(follow())
    try:
        while not done.is_set():
            if follower.done():
                follower.result()
                break
            dead = [t for t in services if t.done()]
            if dead:
                dead[0].result()
                raise DemoFailed(f"the {dead[0].get_name()} stopped unexpectedly")
            if time.monotonic() - began > timeout:
                missing = ", ".join(r.message_id for r in rows if r.outcome is None)
                raise DemoFailed(f"no outcome after {timeout:.0f} s for: {missing}")
            await asyncio.sleep(0.2)
    finally:
        done.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(follower, timeout=5)


def report(rows: list[Row]) -> str:
    return render([(r.scenario.name, r.message_id, r.outcome, "yes" if r.ok else "NO") for r in rows])
