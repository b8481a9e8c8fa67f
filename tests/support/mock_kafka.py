"""librdkafka's built-in mock cluster as a Kafka broker WITH transaction APIs, for smoke tests.

The mock brokers live inside one confluent-kafka client (``test.mock.num.brokers``): nothing is
downloaded or spawned, and they listen on a free 127.0.0.1 port until the client is closed. aiokafka
talks to them like to any broker. What the mock does and does not do (librdkafka 2.16, checked with
aiokafka 0.14):

- InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn are answered OK,
  and EndTxn writes a real control batch (COMMIT or ABORT marker) to every partition of the
  transaction; :func:`batch_log` reads those markers.
- No CreateTopics: topics are auto-created on a Metadata request, always with
  :data:`MOCK_PARTITIONS` partitions (librdkafka has no setting for that count; its only mock
  settings are ``test.mock.num.brokers`` and ``test.mock.broker.rtt``).
- TxnOffsetCommit is acknowledged but the offsets are NOT stored (OffsetFetch answers none after).
- Control batches carry crc 0, so an aiokafka consumer with ``check_crcs=True`` (the default) raises
  CorruptRecordException on a partition with data after a marker: read with :func:`read_all`.
- ``read_committed`` is not honoured: the last stable offset equals the high watermark and Fetch
  returns no aborted-transaction list, so aborted records are served as if committed.
- A Metadata request with an empty topic list lists no topics (Kafka's v1+ semantics).

:func:`injecting_mock_cluster` runs the same mock from a librdkafka handle of its own, made through
ctypes, so that a test can push errors onto the mock's answers
(``rd_kafka_mock_push_request_errors_array``: the next n requests of one API key, from any
client, are answered with those error codes, in order), which confluent-kafka's Python API does not
expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import glob
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, COMMIT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords

#: Partitions of every topic the mock auto-creates (librdkafka's fixed default).
MOCK_PARTITIONS = 4


@contextlib.contextmanager
def mock_cluster() -> Iterator[str]:
    """A one-broker librdkafka mock cluster; yields its ``host:port``, gone when the block ends."""
    import confluent_kafka  # imported here: the caller decides how a missing package is reported

    # log_level 4 (warning): without it librdkafka prints a notice per client to stderr.
    handle = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 4})
    try:
        brokers = handle.list_topics(timeout=10).brokers.values()
        yield ",".join(f"{b.host}:{b.port}" for b in brokers)
    finally:
        handle.close()


#: Kafka API keys and error codes the tests push (Kafka's protocol numbers).
PRODUCE_API_KEY = 0
END_TXN_API_KEY = 26
NOT_ENOUGH_REPLICAS = 19


class MockCluster:
    """A librdkafka mock cluster whose answers a test can make fail (see the module's docstring)."""

    def __init__(self, lib: ctypes.CDLL, handle: int, cluster: int) -> None:
        self._lib, self._handle, self._cluster = lib, handle, cluster
        self.bootstrap: str = lib.rd_kafka_mock_cluster_bootstraps(cluster).decode()

    def push_request_errors(self, api_key: int, errors: list[int]) -> None:
        """Answer the next ``len(errors)`` requests of ``api_key`` with these error codes."""
        codes = (ctypes.c_int * len(errors))(*errors)
        self._lib.rd_kafka_mock_push_request_errors_array(self._cluster, api_key, len(errors), codes)

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._cluster, api_key)

    def start_request_tracking(self) -> None:
        self._lib.rd_kafka_mock_start_request_tracking(self._cluster)

    def requests(self, api_key: int) -> int:
        """How many requests of ``api_key`` the mock received since tracking started."""
        cnt = ctypes.c_size_t(0)
        reqs = self._lib.rd_kafka_mock_get_requests(self._cluster, ctypes.byref(cnt))
        try:
            return sum(self._lib.rd_kafka_mock_request_api_key(reqs[i]) == api_key for i in range(cnt.value))
        finally:
            self._lib.rd_kafka_mock_request_destroy_array(reqs, cnt.value)


def _librdkafka() -> ctypes.CDLL:
    import confluent_kafka

    here = os.path.dirname(confluent_kafka.__file__)
    # Linux wheels keep it in confluent_kafka.libs/, macOS wheels in confluent_kafka/.dylibs/.
    found = glob.glob(os.path.join(here, os.pardir, "confluent_kafka.libs", "librdkafka*"))
    found += glob.glob(os.path.join(here, ".dylibs", "librdkafka*"))
    if not found:
        raise ImportError(f"no librdkafka next to {here}")
    lib = ctypes.CDLL(found[0])
    vp = ctypes.c_void_p
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_set.argtypes = [vp, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, ctypes.c_char_p, ctypes.c_size_t]
    lib.rd_kafka_destroy.argtypes = [vp]
    lib.rd_kafka_handle_mock_cluster.restype = vp
    lib.rd_kafka_handle_mock_cluster.argtypes = [vp]
    lib.rd_kafka_mock_cluster_bootstraps.restype = ctypes.c_char_p
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [
        vp,
        ctypes.c_int16,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_int),
    ]
    lib.rd_kafka_mock_clear_request_errors.argtypes = [vp, ctypes.c_int16]
    lib.rd_kafka_mock_start_request_tracking.argtypes = [vp]
    lib.rd_kafka_mock_get_requests.restype = ctypes.POINTER(vp)
    lib.rd_kafka_mock_get_requests.argtypes = [vp, ctypes.POINTER(ctypes.c_size_t)]
    lib.rd_kafka_mock_request_api_key.restype = ctypes.c_int16
    lib.rd_kafka_mock_request_api_key.argtypes = [vp]
    lib.rd_kafka_mock_request_destroy_array.argtypes = [ctypes.POINTER(vp), ctypes.c_size_t]
    return lib


@contextlib.contextmanager
def injecting_mock_cluster() -> Iterator[MockCluster]:
    """A one-broker mock cluster (as :func:`mock_cluster`) whose answers can be made to fail."""
    lib = _librdkafka()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    for key, value in (("test.mock.num.brokers", "1"), ("log_level", "4")):
        if lib.rd_kafka_conf_set(conf, key.encode(), value.encode(), err, len(err)) != 0:
            raise RuntimeError(f"librdkafka {key}: {err.value.decode()}")
    handle = lib.rd_kafka_new(0, conf, err, len(err))  # RD_KAFKA_PRODUCER; owns conf from here
    if not handle:
        raise RuntimeError(f"librdkafka: {err.value.decode()}")
    try:
        yield MockCluster(lib, handle, lib.rd_kafka_handle_mock_cluster(handle))
    finally:
        lib.rd_kafka_destroy(handle)


async def auto_create(bootstrap: str, topics: Iterable[str]) -> dict[str, int]:
    """Make the mock create ``topics`` (a Metadata request for each, no record written).

    Returns each topic's partition count (:data:`MOCK_PARTITIONS` on this mock).
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return {t: len(await producer.partitions_for(t)) for t in topics}
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str,
    topics: Iterable[str],
    timeout: float = 15.0,  # noqa: ASYNC109
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    """Every record of every partition of ``topics``, from the beginning to the current end."""
    # check_crcs=False: the mock writes transaction markers (control batches) with crc 0, and
    # aiokafka checks the crc of every batch, control ones included, before skipping them; with the
    # default a partition holding a marker followed by more data fails with CorruptRecordException.
    # read_uncommitted: the mock does not implement read_committed (LSO == high watermark), so
    # asking for it would suggest a filtering that does not happen.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=False, group_id=None
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in range(MOCK_PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while True:
            behind = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
            if not behind:
                return out
            if time.monotonic() > deadline:
                raise AssertionError(f"read_all: still behind the end after {timeout:g} s: {behind}")
            for tp, records in (await consumer.getmany(*behind, timeout_ms=200)).items():
                out[tp].extend(records)
    finally:
        await consumer.stop()


@dataclass(frozen=True, slots=True)
class Batch:
    """One record batch as the broker stores it: who wrote it, and whether it is a marker."""

    base_offset: int
    next_offset: int
    producer_id: int
    transactional: bool
    #: "COMMIT" or "ABORT" for a control batch (a transaction marker), None for data.
    marker: str | None


async def batch_log(bootstrap: str, tp: TopicPartition) -> list[Batch]:
    """The batches of ``tp``, markers included (a raw Fetch: consumers hide control batches)."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        await client._metadata_update(client.cluster, [tp.topic])
        leader = client.cluster.leader_for_partition(tp)
        assert leader is not None, f"no leader for {tp}"
        batches: list[Batch] = []
        offset = 0
        for _ in range(1000):
            request = FetchRequest(0, 1, 4 * 1024 * 1024, 0, [(tp.topic, [(tp.partition, offset, 1 << 20)])])
            response = await client.send(leader, request)
            [(_, [(_, error, highwater, *data)])] = response.topics
            assert error == 0, f"fetch {tp} at {offset}: error code {error}"
            records = MemoryRecords(data[-1])
            got = 0
            while (batch := records.next_batch()) is not None:
                marker = None
                if batch.is_control_batch:
                    control = ControlRecord.parse(next(iter(batch)).key)
                    # ControlRecord compares by value but hashes by identity: no dict lookup.
                    if control == COMMIT_MARKER:
                        marker = "COMMIT"
                    elif control == ABORT_MARKER:
                        marker = "ABORT"
                    else:
                        marker = repr(control)
                batches.append(
                    Batch(
                        batch.base_offset,
                        batch.next_offset,
                        batch.producer_id,
                        batch.is_transactional,
                        marker,
                    )
                )
                offset = batch.next_offset
                got += 1
            if offset >= highwater or not got:
                return batches
            await asyncio.sleep(0)
        raise AssertionError(f"batch_log: {tp} did not end")
    finally:
        await client.close()
