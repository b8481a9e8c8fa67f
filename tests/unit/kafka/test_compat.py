"""The aiokafka fixes of :mod:`stream_app.kafka.compat`, run through aiokafka's own code paths.

Each test feeds aiokafka's unmodified request loop a Kafka answer as the broker sends it, through a
stand-in network client: the fix must be what turns that answer into the right outcome.
"""

from __future__ import annotations

import types
from typing import Any

import aiokafka.errors as kafka_errors
import pytest
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.sender import TxnOffsetCommitHandler
from aiokafka.protocol.commit import OffsetFetchResponse_v2, OffsetFetchResponse_v3
from aiokafka.protocol.transaction import TxnOffsetCommitResponse_v0
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from stream_app.kafka import install_fixes
from stream_app.kafka.compat import offset_fetch_group_error

TP = TopicPartition("t.send-requests", 0)
LOAD_IN_PROGRESS, NOT_COORDINATOR, NETWORK_EXCEPTION = 14, 16, 13


class _Client:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.sent = 0

    async def send(self, node_id: int, request: Any, group: Any = None) -> Any:
        self.sent += 1
        return self.answers.pop(0)


def _coordinator(answers: list[Any]) -> Any:
    """Just enough of a GroupCoordinator for its own fetch_committed_offsets() to run."""
    c = types.SimpleNamespace(
        group_id="app",
        coordinator_id=1,
        _client=_Client(answers),
        _retry_backoff_ms=1,
        dead=0,
    )

    async def ensure_coordinator_known() -> None:
        c.coordinator_id = 1

    def coordinator_dead() -> None:
        c.dead += 1
        c.coordinator_id = None

    c.ensure_coordinator_known = ensure_coordinator_known
    c.coordinator_dead = coordinator_dead
    c._send_req = types.MethodType(GroupCoordinator._send_req, c)
    c._do_fetch_commit_offsets = types.MethodType(GroupCoordinator._do_fetch_commit_offsets, c)
    return c


def _answer(version: int, error: int, offset: int | None) -> Any:
    topics = [] if offset is None else [(TP.topic, [(TP.partition, offset, "", 0)])]
    if version == 2:
        return OffsetFetchResponse_v2(topics, error)
    return OffsetFetchResponse_v3(0, topics, error)


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("error", [LOAD_IN_PROGRESS, NOT_COORDINATOR])
async def test_a_group_level_offset_fetch_error_is_retried_not_read_as_none(version: int, error: int) -> None:
    """Issue 14, mechanism 2: the coordinator loading __consumer_offsets is not "nothing committed"."""
    install_fixes()
    c = _coordinator([_answer(version, error, None), _answer(version, 0, 42)])
    got = await GroupCoordinator.fetch_committed_offsets(c, [TP])
    assert got == {TP: OffsetAndMetadata(42, "")}
    assert c._client.sent == 2
    assert c.dead == (1 if error == NOT_COORDINATOR else 0)  # a moved coordinator is looked up again


async def test_a_fatal_group_level_error_is_raised() -> None:
    install_fixes()
    c = _coordinator([_answer(3, 30, None)])  # GROUP_AUTHORIZATION_FAILED
    with pytest.raises(kafka_errors.GroupAuthorizationFailedError):
        await GroupCoordinator.fetch_committed_offsets(c, [TP])


async def test_a_partition_without_commit_is_still_none() -> None:
    install_fixes()
    c = _coordinator([_answer(3, 0, -1)])
    assert await GroupCoordinator.fetch_committed_offsets(c, [TP]) == {}


def test_offset_fetch_group_error_reads_only_offset_fetch_answers() -> None:
    assert (
        offset_fetch_group_error(_answer(2, LOAD_IN_PROGRESS, None)) is kafka_errors.GroupLoadInProgressError
    )
    assert offset_fetch_group_error(_answer(3, 0, 1)) is None
    assert offset_fetch_group_error(types.SimpleNamespace(API_KEY=8, error_code=14)) is None


def _txn_handler() -> TxnOffsetCommitHandler:
    sender = types.SimpleNamespace(_retry_backoff=0.1, _txn_manager=types.SimpleNamespace())
    return TxnOffsetCommitHandler(sender, {TP: OffsetAndMetadata(7, "")}, "app")


def test_network_exception_on_txn_offset_commit_is_retried() -> None:
    """Issue 14, part 4: Kafka 3.7.0's transaction verification answers NETWORK_EXCEPTION (13).

    Unfixed, the handler raised it inside aiokafka's sender task ("Unexpected error during batch
    delivery") and every transaction of the turn failed.
    """
    install_fixes()
    answer = TxnOffsetCommitResponse_v0(0, [(TP.topic, [(TP.partition, NETWORK_EXCEPTION)])])
    assert _txn_handler().handle_response(answer) == 0.1


def test_other_txn_offset_commit_answers_are_aiokafkas() -> None:
    install_fixes()
    committed: list[int] = []
    handler = _txn_handler()
    handler._sender._txn_manager.offset_committed = lambda tp, off, group: committed.append(off)
    assert handler.handle_response(TxnOffsetCommitResponse_v0(0, [(TP.topic, [(TP.partition, 0)])])) is None
    assert committed == [7]
    with pytest.raises(kafka_errors.ProducerFenced):
        handler.handle_response(TxnOffsetCommitResponse_v0(0, [(TP.topic, [(TP.partition, 47)])]))


def test_network_exception_on_produce_is_retriable() -> None:
    install_fixes()
    assert kafka_errors.for_code(NETWORK_EXCEPTION)().retriable
