"""ControlTable.poll without a broker: what a live instance makes of the records it follows."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord, TopicPartition

from stream_app.config import Settings
from stream_app.contracts import Channel
from stream_app.runtime.control import DEAD_LETTER_TRIES, ControlTable
from stream_app.runtime.metrics import Metrics

S = Settings(topic_prefix="ctl.", app_id="ctl")
T = S.topics
NOW = 1_900_000_000_000


def _rec(offset: int, key: bytes, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        T.channel_control, 0, offset, 0, 0, key, value, None, len(key), len(value or b""), []
    )


class _Follower:
    """The table's consumer: hands each scripted batch out once, as getmany() moves the position."""

    def __init__(self, *batches: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.batches = list(batches)

    async def getmany(self, *tps: TopicPartition, **_: Any) -> dict[TopicPartition, list[Any]]:
        if not self.batches:
            return {}
        return {TopicPartition(T.channel_control, 0): self.batches.pop(0)}


class _Producer:
    """Dead letters: the first ``fail`` sends time out (a broker away), the rest land in ``sent``."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None, *, key: bytes | None, headers: Any
    ) -> None:
        if self.fail:
            self.fail -= 1
            raise KafkaTimeoutError()
        self.sent.append((topic, key, value))


async def test_a_dead_letter_that_fails_loses_no_control_record_after_it_regression() -> None:
    """A bad record's dead letter that could not be produced used to end poll() there: the records
    after it in the same fetch were consumed and never applied, so this instance went on issuing
    steps on a channel closed for every other one until it restarted."""
    table = ControlTable(S, Metrics(), exactly_once=False)
    closing = orjson.dumps({"channel": "RCS", "state": "CLOSED"})
    table._consumer = _Follower([_rec(0, b"WHATSAPP", b"not json"), _rec(1, b"RCS", closing)])  # type: ignore[assignment]
    producer = _Producer(fail=1)
    # (before the fix, this poll raised: the turn would be retried, but the consumer was past both)
    with contextlib.suppress(KafkaTimeoutError):
        await table.poll(NOW, {0}, 1, producer, T.dead_letters)  # type: ignore[arg-type]
    await table.poll(NOW, {0}, 1, producer, T.dead_letters)  # type: ignore[arg-type]
    assert table.view.closed(Channel.RCS, None, NOW), "the CLOSED after the bad record was lost"
    # and the bad record still reaches dead-letters, once, when the broker answers again
    assert producer.sent == [(T.dead_letters, b"WHATSAPP", b"not json")]


async def test_a_dead_letter_the_broker_never_takes_is_given_up_not_retried_for_ever() -> None:
    table = ControlTable(S, Metrics(), exactly_once=False)
    table._consumer = _Follower([_rec(0, b"SMS", b"[]")], [], [], [], [], [_rec(1, b"VIBER", b"{}")])  # type: ignore[assignment]
    producer = _Producer(fail=DEAD_LETTER_TRIES)
    for _ in range(DEAD_LETTER_TRIES):
        await table.poll(NOW, {0}, 1, producer, T.dead_letters)  # type: ignore[arg-type]
    assert producer.sent == []
    await table.poll(NOW, {0}, 1, producer, T.dead_letters)  # type: ignore[arg-type]
    assert producer.sent == [(T.dead_letters, b"VIBER", b"{}")]
