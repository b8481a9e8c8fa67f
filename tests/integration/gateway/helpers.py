"""Helpers for the gateway room's broker tests: commands, a running dispatcher, reading statuses."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from stream_app.config import Settings
from stream_app.contracts import DeliveryStatus, decode_status
from stream_app.gateway.dispatcher import Dispatcher, run_dispatcher
from stream_app.gateway.sentlog import SendState, encode_entry
from stream_app.gateway.settings import GatewaySettings
from stream_app.lifecycle import wait_started
from tests.support.kafka import consume_until, create_topics, unique_prefix

SMS_CONTENT = {"sender": "Shop", "text": "hello"}
WA_CONTENT = {"phoneNumberId": 5, "template": {"id": 42}, "placeholders": {"nome": "Giulia"}}


def command(message_id: str, attempt: int = 0, channel: str = "SMS", **over: Any) -> dict[str, Any]:
    content = SMS_CONTENT if channel in ("SMS", "VIBER") else WA_CONTENT
    if channel == "RCS":
        content = {"agentId": 1, "templateId": 10}
    body: dict[str, Any] = {
        "type": "command",
        "schemaVersion": 1,
        "commandId": f"{message_id}:{attempt}",
        "messageId": message_id,
        "attempt": attempt,
        "channel": channel,
        "destination": "+393401234500",
        "content": content,
        "reason": "INITIAL" if attempt == 0 else "FAILED",
        "issuedAt": "2026-04-09T08:15:01Z",
    }
    body.update(over)
    return body


async def seed_sentlog(
    bootstrap: str, settings: Settings, entries: list[tuple[str, int, SendState, int, bytes]]
) -> None:
    """Write sent-log entries ``(messageId, attempt, state, at_ms, payload)`` as a dispatcher would:
    to the partition of ``retry-commands`` that the command's key (its messageId) goes to."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        n = len(await producer.partitions_for(settings.topics.retry_commands))
        for message_id, attempt, state, at_ms, payload in entries:
            p = DefaultPartitioner()(message_id.encode(), list(range(n)), list(range(n)))
            cid = f"{message_id}:{attempt}".encode()
            value = encode_entry(state, at_ms, payload)
            await producer.send_and_wait(settings.topics.sentlog, value, key=cid, partition=p)
    finally:
        await producer.stop()


async def make_settings(bootstrap: str, state_dir: Path, partitions: int = 3) -> Settings:
    """Topics of a prefix of the test's own, and an app id of its own: tests share the broker, and a
    consumer group shared with an earlier test's (killed) dispatchers would make this one wait for
    their rebalance timeout before it gets a partition."""
    prefix = unique_prefix()
    settings = Settings(
        bootstrap_servers=bootstrap,
        topic_prefix=prefix,
        app_id=f"gw-{prefix.rstrip('.')}",
        state_dir=state_dir,
        partitions=partitions,
    )
    await create_topics(bootstrap, settings)
    return settings


async def produce_all(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]], headers: Any = None
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, headers=headers) for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def eventually(predicate: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, polling every 50 ms; fail after ``within`` seconds."""
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within:g} s")


async def read_all(
    bootstrap: str,
    topic: str,
    done: Callable[[list[ConsumerRecord[bytes, bytes]]], bool],
    *,
    within: float = 60.0,
    settle: float = 1.5,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning, read until ``done(records)`` holds and then
    ``settle`` more seconds (so a late duplicate is seen too); fails after ``within`` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[ConsumerRecord[bytes, bytes]] = []
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            await consumer.topics()
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        settled_at: float | None = None
        while True:
            now = loop.time()
            if settled_at is None and done(out):
                settled_at = now + settle
            if settled_at is not None and now >= settled_at:
                return out
            if now > deadline:
                raise AssertionError(f"{topic}: condition not met after {within:g} s ({len(out)} records)")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(records)
    finally:
        await consumer.stop()


def as_record(cmd: dict[str, Any]) -> tuple[bytes, bytes]:
    return cmd["messageId"].encode(), orjson.dumps(cmd)


async def read_statuses(
    bootstrap: str, settings: Settings, count: int, within: float = 30.0
) -> list[DeliveryStatus]:
    records = await consume_until(bootstrap, settings.topics.delivery_status, count=count, timeout=within)
    return [decode_status(r.value or b"") for r in records]


@contextlib.asynccontextmanager
async def running_dispatcher(settings: Settings, gateway: GatewaySettings) -> AsyncIterator[Dispatcher]:
    stop, ready = asyncio.Event(), asyncio.Event()
    holder: list[Dispatcher] = []
    task = asyncio.create_task(run_dispatcher(settings, gateway, stop=stop, ready=ready, dispatcher=holder))
    await wait_started(task, ready, "dispatcher")
    try:
        yield holder[0]
    finally:
        stop.set()
        await task
