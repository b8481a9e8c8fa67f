"""The dispatcher's send and rebalance protocol without a broker: intent before call, a revoke that
lets calls in flight finish and record their answers, and a new owner that asks instead of resending.

Fakes stand in for the producer, the consumer and the gateway client; each records what happened in
one shared ``events`` list, so the tests check the order of the protocol's steps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import Channel, decode_status
from stream_app.gateway import dispatcher as dispatcher_module
from stream_app.gateway.client import Accepted, Found, NotFound, Transient
from stream_app.gateway.dispatcher import Dispatcher, _Loop
from stream_app.gateway.sentlog import SendState, decode_entry, encode_entry
from stream_app.gateway.settings import GatewaySettings
from tests.integration.gateway.helpers import command
from tests.unit.runtime.fakes import FakeRestorer, Log

SETTINGS = Settings(topic_prefix="t.", state_dir=Path("unused"))
T = SETTINGS.topics
TP0 = TopicPartition(T.retry_commands, 0)


@dataclass
class World:
    events: list[tuple[Any, ...]] = field(default_factory=list)
    sentlog: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)
    fail_writes: int = 0


class FakeProducer:
    def __init__(self, world: World) -> None:
        self.world = world

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Any = None,
        partition: int | None = None,
    ) -> None:
        await asyncio.sleep(0)
        if topic == T.sentlog and self.world.fail_writes:
            self.world.fail_writes -= 1
            raise KafkaConnectionError("broker gone")
        if topic == T.sentlog:
            assert partition is not None and key is not None
            self.world.sentlog.append((partition, key, value))
            state = None if value is None else decode_entry(value).state
            self.world.events.append(("write", key.decode(), state, partition))
        else:
            self.world.events.append(("produce", topic, decode_status(value or b"").status.value))


class FakeClient:
    def __init__(self, world: World) -> None:
        self.world = world
        self.gate = asyncio.Event()
        self.gate.set()
        self.answers: list[Any] = []
        self.found: dict[str, Any] = {}
        self.calls = 0

    async def send(self, channel: Channel, body: dict[str, Any]) -> Any:
        self.calls += 1
        self.world.events.append(("call", body["messageId"]))
        await self.gate.wait()
        return self.answers.pop(0) if self.answers else Accepted("prov-1")

    async def status(self, command_id: str, channel: Channel) -> Any:
        self.world.events.append(("ask", command_id))
        return self.found.get(command_id, NotFound())


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.assigned = {TP0}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def record(message_id: str, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = orjson.dumps(command(message_id))
    return ConsumerRecord(TP0.topic, 0, offset, 0, 0, message_id.encode(), value, None, 0, len(value), [])


def rig(
    world: World, restored: list[tuple[int, bytes, bytes | None]] | None = None
) -> tuple[_Loop, FakeClient, FakeConsumer]:
    gateway = GatewaySettings(url="http://gw", api_key="k", backoff_base=30.0, backoff_max=30.0)
    client = FakeClient(world)
    disp = Dispatcher(SETTINGS, gateway, client, FakeProducer(world), stop=asyncio.Event())  # type: ignore[arg-type]
    consumer = FakeConsumer()
    restorer = None
    if restored is not None:  # what another dispatcher wrote to the sent-log topic, read back
        log = Log()
        for p, key, value in restored:
            log.append(T.sentlog, p, key, value, [])
        restorer = FakeRestorer(log)
    loop = _Loop(consumer, disp, 100, restorer=restorer, revoke_wait_s=5.0)  # type: ignore[arg-type]
    return loop, client, consumer


async def until(check: Any, what: str) -> None:
    for _ in range(2000):  # yields only: every fake answers at once, so no wall-clock time is needed
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never happened: {what}")


async def test_the_intent_is_durable_before_the_call_and_the_answer_before_done() -> None:
    world = World()
    loop, _, consumer = rig(world)
    await loop.adopt({TP0})
    loop._spawn(record("m", 7))
    await until(lambda: not loop.tasks, "the command to finish")
    assert world.events == [
        ("write", "m:0", SendState.SENDING, 0),
        ("call", "m:0"),
        ("write", "m:0", SendState.RESULT, 0),
        ("produce", T.delivery_status, "ACCEPTED"),
        ("write", "m:0", SendState.DONE, 0),
    ]
    await loop.commit()
    assert consumer.commits == [{TP0: 8}]


async def test_no_call_while_the_intent_cannot_be_written() -> None:
    world = World(fail_writes=1)
    loop, client, _ = rig(world)
    loop.dispatcher.gateway = GatewaySettings(url="http://gw", api_key="k", backoff_base=0.0, backoff_max=0.0)
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    assert world.events[0] == ("write", "m:0", SendState.SENDING, 0)  # after the failed write, retried
    assert client.calls == 1


async def test_a_revoke_waits_for_the_call_in_flight_and_records_its_answer() -> None:
    world = World()
    loop, client, consumer = rig(world)
    await loop.adopt({TP0})
    client.gate.clear()  # the gateway is slow to answer
    loop._spawn(record("m", 3))
    await until(lambda: ("call", "m:0") in world.events, "the call to start")
    release = asyncio.create_task(loop.release({TP0}))
    await until(lambda: 0 in loop.dispatcher.releasing, "the revoke to begin")
    loop._spawn(record("n", 4))  # a command fetched meanwhile: no call for it any more
    for _ in range(50):
        await asyncio.sleep(0)
    assert not release.done(), "released while a call was in flight"
    client.gate.set()
    await release
    assert client.calls == 1
    assert ("write", "m:0", SendState.DONE, 0) in world.events
    assert consumer.commits == [{TP0: 4}]  # m finished; n is left for the next owner
    assert not loop.dispatcher.sent.owns(0)


async def test_a_revoke_stops_a_command_waiting_to_retry_and_leaves_it_in_doubt() -> None:
    world = World()
    loop, client, consumer = rig(world)
    await loop.adopt({TP0})
    client.answers = [Transient("reset", maybe_sent=True)]
    loop._spawn(record("m", 0))
    await until(lambda: client.calls == 1 and loop.tasks, "the first call to fail")
    await loop.release({TP0})  # the 30 s backoff is cut short
    assert client.calls == 1
    assert all(c[TP0] == 0 for c in consumer.commits), "never committed past the unfinished command"
    assert world.events[-1] == ("call", "m:0")  # SENDING stays: in doubt for the next owner

    # The next owner restores that record and asks the gateway instead of calling again.
    world2 = World()
    loop2, client2, _ = rig(world2, restored=world.sentlog)
    client2.found["m:0"] = Found("ACCEPTED", None, (), None, "prov-1")
    await loop2.adopt({TP0})
    loop2._spawn(record("m", 0))
    await until(lambda: not loop2.tasks, "the command to finish")
    assert client2.calls == 0
    assert world2.events[0] == ("ask", "m:0")
    assert ("produce", T.delivery_status, "ACCEPTED") in world2.events


async def test_a_partition_assigned_back_keeps_its_log_without_a_restore() -> None:
    world = World()
    loop, client, _ = rig(world)
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    await loop.release({TP0})
    loop.restorer = None  # a restore now would start empty and resend
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))  # the processor repeats the command
    await until(lambda: not loop.tasks, "the repeat to be dropped")
    assert client.calls == 1


@pytest.mark.parametrize("offset", [0, 5])
async def test_a_command_of_a_partition_not_owned_is_not_sent(offset: int) -> None:
    world = World()
    loop, client, _ = rig(world)
    loop._spawn(record("m", offset))  # no adopt: the sent-log of partition 0 is not restored here
    await until(lambda: not loop.tasks, "the command to end")
    assert client.calls == 0 and world.events == []


class PausingConsumer(FakeConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False

    def pause(self, *tps: TopicPartition) -> None:
        self.paused = True

    def resume(self, *tps: TopicPartition) -> None:
        self.paused = False


async def test_max_in_flight_1_pauses_the_consumer_for_ever_regression() -> None:
    """With STREAM_APP_DISPATCH_MAX_IN_FLIGHT=1 fetching resumed only below 1 // 2 == 0 commands in
    flight: after the first command the consumer stayed paused for good."""
    world = World()
    loop, client, _ = rig(world)
    consumer = PausingConsumer()
    loop.consumer = consumer  # type: ignore[assignment]
    loop.max_in_flight = 1
    await loop.adopt({TP0})
    client.gate.clear()
    loop._spawn(record("m", 0))
    loop._flow_control()
    assert consumer.paused  # one in flight: the limit
    client.gate.set()
    await until(lambda: not loop.tasks, "the command to finish")
    loop._flow_control()
    assert not consumer.paused


def _no_backoff(loop: _Loop) -> None:
    loop.dispatcher.gateway = GatewaySettings(url="http://gw", api_key="k", backoff_base=0.0, backoff_max=0.0)


async def test_a_lost_answer_is_asked_about_never_sent_again() -> None:
    """A timeout or reset after the request left may have sent it: the status endpoint decides."""
    world = World()
    loop, client, _ = rig(world)
    _no_backoff(loop)
    await loop.adopt({TP0})
    client.answers = [Transient("read timeout", maybe_sent=True)]
    client.found["m:0"] = Found("ACCEPTED", None, (), None, "prov-1")
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    assert client.calls == 1, "sent a second time after an answer that may have been lost"
    assert ("ask", "m:0") in world.events
    assert ("produce", T.delivery_status, "ACCEPTED") in world.events


async def test_a_command_in_doubt_that_the_gateway_never_got_is_sent() -> None:
    """SENDING found by a new owner, and the gateway does not know the message: it is sent, once."""
    world = World()
    loop, client, _ = rig(world, restored=[(0, b"m:0", encode_entry(SendState.SENDING, 1000))])
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    assert world.events[:3] == [("ask", "m:0"), ("write", "m:0", SendState.SENDING, 0), ("call", "m:0")]
    assert client.calls == 1
    assert ("produce", T.delivery_status, "ACCEPTED") in world.events


class HeldWrites(FakeProducer):
    """Sent-log writes wait for ``gate``: a slow broker acknowledging the intent."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.gate = asyncio.Event()
        self.waiting = False

    async def send_and_wait(self, topic: str, value: bytes | None, **kw: Any) -> None:
        if topic == T.sentlog:
            self.waiting = True
            await self.gate.wait()
        await super().send_and_wait(topic, value, **kw)


async def test_a_partition_given_up_while_its_intent_is_written_makes_no_call() -> None:
    """The next owner finds SENDING and asks the gateway; a call made after the revoke could race it
    (the gateway not knowing the message yet) into a second send."""
    world = World()
    loop, client, consumer = rig(world)
    producer = HeldWrites(world)
    loop.dispatcher.producer = producer  # type: ignore[assignment]
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: producer.waiting, "the intent to be written")
    release = asyncio.create_task(loop.release({TP0}))
    await until(lambda: 0 in loop.dispatcher.releasing, "the revoke to begin")
    producer.gate.set()
    await release
    assert client.calls == 0
    assert world.events == [("write", "m:0", SendState.SENDING, 0)]  # in doubt for the next owner
    assert all(c[TP0] == 0 for c in consumer.commits), "committed past a command not finished"


async def test_the_committed_offset_stops_at_the_lowest_command_still_in_flight() -> None:
    """Commands finish out of order: committing past one still running loses it in a crash."""
    world = World()
    loop, _, consumer = rig(world)
    for offset in (3, 4, 5):
        loop.offsets.start(TP0, offset)
    loop.offsets.finish(TP0, 4)
    await loop.commit()
    assert consumer.commits == [{TP0: 3}]
    loop.offsets.finish(TP0, 3)
    await loop.commit()
    assert consumer.commits[-1] == {TP0: 5}


async def test_a_partition_that_had_another_owner_meanwhile_is_restored_not_taken_from_the_park() -> None:
    """Revoked, assigned elsewhere, then back in a later rebalance: the other owner's sent-log
    entries (here a call it left in doubt) must be read, or the command is sent a second time."""
    world = World()
    loop, client, _ = rig(world)
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    await loop.release({TP0})
    await loop.adopt(set())  # this rebalance gave partition 0 to another dispatcher
    other = [*world.sentlog, (0, b"n:0", encode_entry(SendState.SENDING, 2000))]
    log = Log()
    for p, key, value in other:
        log.append(T.sentlog, p, key, value, [])
    loop.restorer = FakeRestorer(log)  # type: ignore[assignment]
    client.found["n:0"] = Found("ACCEPTED", None, (), None, "prov-2")
    await loop.release(set())
    await loop.adopt({TP0})  # and the next one gave it back
    loop._spawn(record("n", 1))
    await until(lambda: not loop.tasks, "the command to finish")
    assert client.calls == 1, "the command the other owner left in doubt was sent again"
    assert ("ask", "n:0") in world.events


async def test_a_repeat_arriving_while_its_command_is_in_the_gateway_waits_for_it() -> None:
    """The processor repeated a command (a replay after its crash) while the first is still being
    sent: the repeat must not ask the gateway, which does not know the message yet, and send again."""
    world = World()
    loop, client, consumer = rig(world)
    await loop.adopt({TP0})
    client.gate.clear()
    loop._spawn(record("m", 0))
    await until(lambda: ("call", "m:0") in world.events, "the call to start")
    loop._spawn(record("m", 1))
    for _ in range(50):
        await asyncio.sleep(0)
    client.gate.set()
    await until(lambda: not loop.tasks, "both to finish")
    assert client.calls == 1 and ("ask", "m:0") not in world.events
    assert [e for e in world.events if e[0] == "produce"] == [("produce", T.delivery_status, "ACCEPTED")]
    await loop.commit()
    assert consumer.commits == [{TP0: 2}]


async def test_an_answer_recorded_but_not_published_is_published_by_the_next_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RESULT found: the crash came between the answer and its publication. The recorded status is
    published (and DONE written), with no call and no question to the gateway."""

    async def nothing_published(settings: Any, sent: Any) -> int:
        return 0  # the read of delivery-status's tail found none of them

    monkeypatch.setattr(dispatcher_module, "reconcile_results", nothing_published)
    rejected = orjson.dumps(
        {"messageId": "m", "attempt": 0, "channel": "SMS", "status": "REJECTED", "reasons": ["NO_ROUTE"]}
    )
    world = World()
    loop, client, _ = rig(world, restored=[(0, b"m:0", encode_entry(SendState.RESULT, 1000, rejected))])
    await loop.adopt({TP0})
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    assert world.events == [
        ("produce", T.delivery_status, "REJECTED"),
        ("write", "m:0", SendState.DONE, 0),
    ]
    assert client.calls == 0
