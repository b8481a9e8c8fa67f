"""The sent-log's record format, replay and writes, without a broker."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from stream_app.gateway.sentlog import (
    Entry,
    PartitionLog,
    SendState,
    SentLog,
    decode_entry,
    encode_entry,
)

#: A DeliveryStatus as the dispatcher records it in a RESULT entry.
STATUS = b'{"messageId":"m","attempt":0,"channel":"SMS","status":"ACCEPTED"}'


def test_an_entry_round_trips() -> None:
    raw = encode_entry(SendState.RESULT, 1_760_000_000_123, b'{"status":"ACCEPTED"}')
    assert decode_entry(raw) == Entry(SendState.RESULT, 1_760_000_000_123, b'{"status":"ACCEPTED"}')


@pytest.mark.parametrize(
    ("raw", "why"),
    [(b"", "shorter than"), (b"S12", "shorter than"), (b"X" + bytes(8), "is not a valid SendState")],
)
def test_a_foreign_value_is_refused(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        decode_entry(raw)


def test_replay_keeps_the_latest_state_and_tombstones_delete() -> None:
    part = PartitionLog()
    part.apply(b"m:0", encode_entry(SendState.SENDING, 1))
    part.apply(b"m:0", encode_entry(SendState.RESULT, 2, STATUS))
    part.apply(b"n:0", encode_entry(SendState.DONE, 3))
    part.apply(b"n:0", None)
    assert part.entries == {"m:0": Entry(SendState.RESULT, 2, STATUS)}
    with pytest.raises(ValueError, match="without a key"):
        part.apply(None, b"")


class Writes:
    def __init__(self) -> None:
        self.records: list[tuple[int, bytes, bytes | None]] = []
        self.fail_next = False

    async def __call__(self, p: int, key: bytes, value: bytes | None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise KafkaConnectionError("broker gone")
        self.records.append((p, key, value))


async def test_a_state_counts_only_once_written() -> None:
    writes = Writes()
    log = SentLog(writes)
    log.partitions[3] = PartitionLog()
    writes.fail_next = True
    with pytest.raises(KafkaConnectionError):
        await log.put(3, "m:0", SendState.SENDING, 10)
    assert log.get(3, "m:0") is None, "not durable, so not recorded"
    await log.put(3, "m:0", SendState.SENDING, 11)
    assert writes.records == [(3, b"m:0", encode_entry(SendState.SENDING, 11))]
    assert log.get(3, "m:0") == Entry(SendState.SENDING, 11, b"")


async def test_a_write_for_a_released_partition_reaches_only_the_topic() -> None:
    writes = Writes()
    log = SentLog(writes)
    await log.put(5, "m:0", SendState.DONE, 1)
    assert writes.records and not log.owns(5)


async def test_prune_tombstones_old_done_entries_only() -> None:
    writes = Writes()
    log = SentLog(writes)
    log.partitions[0] = PartitionLog(
        {
            "old:0": Entry(SendState.DONE, 100, b""),
            "new:0": Entry(SendState.DONE, 900, b""),
            "doubt:0": Entry(SendState.SENDING, 100, b""),
        }
    )
    assert await log.prune(500) == 1
    assert writes.records == [(0, b"old:0", None)]
    assert set(log.partitions[0].entries) == {"new:0", "doubt:0"}


async def test_a_result_that_cannot_be_read_is_in_doubt_regression(caplog: pytest.LogCaptureFixture) -> None:
    """A RESULT record holding no readable status passed the replay, then raised InvalidRecord
    outside the dispatcher's handling when its command came back: fatal at every restart. Replayed,
    it is now SENDING (the gateway is asked, never a blind resend), logged once."""
    from stream_app.gateway.client import Found
    from tests.unit.gateway.test_dispatcher_rebalance import TP0, World, record, rig, until

    part = PartitionLog()
    part.apply(b"m:0", encode_entry(SendState.RESULT, 7, b"not a status"))
    assert part.entries["m:0"] == Entry(SendState.SENDING, 7, b"")
    assert caplog.text.count("cannot be read") == 1
    world = World()
    loop, client, _ = rig(world)
    client.found["m:0"] = Found("SENT", None, (), None, "prov-1")
    await loop.adopt({TP0})
    loop.dispatcher.sent.partitions[0] = part
    loop._spawn(record("m", 0))
    await until(lambda: not loop.tasks, "the command to finish")
    assert loop.dispatcher.fatal is None
    assert ("ask", "m:0") in world.events and client.calls == 0
