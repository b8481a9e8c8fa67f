"""Helpers of the runtime tests: a processor in the test's event loop, and the topics' records.

Each test gets its own topic prefix and state dir, so tests share the session broker. Records are
read back with a :class:`Reader` that follows the output topics without a consumer group, so a test
can wait for "the outcome of m1" while the processor keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.fallback import decode_state
from stream_app.lifecycle import wait_started
from stream_app.runtime.processor import Processor
from tests.support.kafka import create_topics, unique_prefix

#: How long an end-to-end wait may take on a busy 2-core CI machine before a test fails.
WAIT_S = 30.0


def settings_for(bootstrap: str, state_dir: Path, *, partitions: int = 3, **overrides: Any) -> Settings:
    prefix = unique_prefix()
    base = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        app_id=f"fp-{prefix.rstrip('.')}",  # its own consumer group: tests share the broker
        state_dir=state_dir,
        metrics_port=0,
        partitions=partitions,
    )
    return replace(base, **overrides)


async def setup_topics(settings: Settings) -> None:
    await create_topics(settings.bootstrap_servers, settings)


def send_request(
    message_id: str,
    steps: Iterable[tuple[str, float | None]] = (("WHATSAPP", 0.3), ("SMS", None)),
    **extra: Any,
) -> bytes:
    """A SendRequest's bytes; each step is ``(channel, fallbackAfter seconds or None)``."""
    channels = []
    for channel, after in steps:
        step: dict[str, Any] = {"channel": channel, "content": {"text": f"hi {channel}"}}
        if after is not None:
            step["fallbackAfter"] = after
        channels.append(step)
    body: dict[str, Any] = {
        "type": "send",
        "messageId": message_id,
        "destination": "+393401234567",
        "channels": channels,
        "tenant": "t1",
    }
    body.update(extra)
    return orjson.dumps(body)


def control(channel: str, state: str = "CLOSED", **fields: Any) -> tuple[bytes, bytes]:
    """A (key, value) of channel-control, keyed as the contract says."""
    tenant = fields.get("tenant")
    key = channel if tenant is None else f"{tenant}/{channel}"
    body = {"type": "channel-control", "channel": channel, "state": state, **fields}
    return key.encode(), orjson.dumps(body)


def status(message_id: str, channel: str, value: str, attempt: int | None = None, **extra: Any) -> bytes:
    body: dict[str, Any] = {"messageId": message_id, "channel": channel, "status": value}
    if attempt is not None:
        body["attempt"] = attempt
    body.update(extra)
    return orjson.dumps(body)


async def publish(
    settings: Settings,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, list[Any]]],
    max_request_size: int = 1024 * 1024,
) -> None:
    """Produce records (key, value[, headers]) in order and wait for all acknowledgements.

    ``max_request_size``: the producer's (aiokafka's default: 1 MiB), larger for a test of records
    larger than that."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, linger_ms=5, max_request_size=max_request_size
    )
    await producer.start()
    try:
        futures = []
        for rec in records:
            key, value = rec[0], rec[1]
            headers = rec[2] if len(rec) > 2 else None  # type: ignore[misc]
            futures.append(await producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@dataclass
class Reader:
    """Follows topics from the beginning (no group) and keeps every record, decoded when it is JSON."""

    bootstrap: str
    topics: list[str]
    isolation_level: str = "read_uncommitted"

    def __post_init__(self) -> None:
        self.records: dict[str, list[ConsumerRecord[bytes, bytes]]] = defaultdict(list)
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Reader:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, isolation_level=self.isolation_level
        )
        await self._consumer.start()
        await self._consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in self.topics
            for p in sorted(self._consumer.partitions_for_topic(t) or ())
        ]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._consumer is not None
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 100) -> None:
        assert self._consumer is not None
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=20_000)
        for tp, recs in batch.items():
            self.records[tp.topic].extend(recs)

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in self.records[topic] if r.value is not None]

    async def wait(self, check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                seen = {t: len(r) for t, r in self.records.items()}
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; read {seen}")
            await self.poll()


def by_message(values: list[dict[str, Any]], type_: str | None = None) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in values:
        if type_ is None or v.get("type") == type_:
            out[v["messageId"]].append(v)
    return out


@contextlib.asynccontextmanager
async def _started(
    settings: Settings, clock: Callable[[], int] | None, ready_timeout: float
) -> AsyncIterator[tuple[Processor, asyncio.Task[None]]]:
    stop, ready = asyncio.Event(), asyncio.Event()
    processor = Processor(settings, clock=clock, stop=stop, ready=ready)
    task = asyncio.create_task(processor.run())
    try:
        await wait_started(task, ready, "processor", ready_timeout)
        yield processor, task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, clock: Callable[[], int] | None = None, ready_timeout: float = WAIT_S
) -> AsyncIterator[asyncio.Task[None]]:
    """Run a processor in this event loop; stops it (SIGTERM's path) when the block ends."""
    async with _started(settings, clock, ready_timeout) as (_, task):
        yield task


@contextlib.asynccontextmanager
async def running_processor(
    settings: Settings, *, clock: Callable[[], int] | None = None, ready_timeout: float = WAIT_S
) -> AsyncIterator[Processor]:
    """:func:`running`, yielding the processor itself: a test waits on its state, not on a sleep."""
    async with _started(settings, clock, ready_timeout) as (processor, _):
        yield processor


def deferred(processor: Processor, key: bytes) -> bool:
    """Whether ``processor``'s store holds ``key`` with a step deferred by its send window."""
    for task in processor.tasks.values():
        raw = task.store.get(key)
        if raw is not None:
            return decode_state(raw).deferred is not None
    return False


def sees_closed(processor: Processor, *keys: str) -> bool:
    """Whether ``processor``'s control view holds a closure under each of ``keys``."""
    return all(key in processor.control.view.closures for key in keys)


class ProcessorProcess:
    """``stream-app processor`` as a child process (so a test can kill -9 it), logging to a file."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        state_dir: Path | None = None,
        log_level: str = "info",
        instance_id: str = "",
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id
        self.log_level = log_level
        self.log_path = log_path
        self.state_dir = state_dir or Path(settings.state_dir)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def env(self) -> dict[str, str]:
        import os

        s = self.settings
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=s.bootstrap_servers,
            STREAM_APP_TOPIC_PREFIX=s.topic_prefix,
            STREAM_APP_APP_ID=s.app_id,
            STREAM_APP_STATE_DIR=str(self.state_dir),
            STREAM_APP_METRICS_PORT=str(s.metrics_port),
            STREAM_APP_PROCESSING_GUARANTEE=s.processing_guarantee,
            STREAM_APP_INSTANCE_ID=self.instance_id,
        )
        return env

    async def start(self) -> None:
        import sys

        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stream_app",
                "processor",
                "--log-level",
                self.log_level,
                env=self.env(),
                stdout=log,
                stderr=log,
            )

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()

    async def wait(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def terminate(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.terminate()
        try:
            return await self.wait(timeout)
        except TimeoutError:
            self.kill()
            await self.wait()
            raise

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
