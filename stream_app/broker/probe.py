"""A dependency-free Kafka readiness probe: ApiVersions, then Metadata, over one raw socket.

A broker is ready when it answers a Metadata request listing at least one broker: a bare TCP
connect is not enough (Apache Kafka accepts connections seconds before it can serve requests), and
aiokafka would drag an event loop and its own retry logic into a check that must be synchronous and
bounded. Only the non-flexible request versions are spoken (header v1), which every broker from
Kafka 0.10 to 4.x and Tansu answer; the Metadata version is picked from the ApiVersions answer
because Kafka 4 dropped the oldest ones (KIP-896).
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable

API_METADATA = 3
API_VERSIONS = 18
#: Metadata v9 and later use the flexible (tagged-field) encoding, which this probe does not speak.
_MAX_RIGID_METADATA = 8
_CLIENT_ID = b"stream-app-probe"


class ProbeError(Exception):
    """The peer is not (yet) a Kafka broker that answers requests."""


def _request(sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes) -> bytes:
    header = struct.pack(">hhih", api_key, version, correlation_id, len(_CLIENT_ID)) + _CLIENT_ID
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _read_exact(sock, 4))[0]
    response = _read_exact(sock, size)
    (got,) = struct.unpack_from(">i", response)
    if got != correlation_id:
        raise ProbeError(f"correlation id {got} != {correlation_id}")
    return response[4:]


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ProbeError("connection closed by peer")
        chunks += chunk
    return bytes(chunks)


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    data = _request(sock, API_VERSIONS, 0, 1, b"")
    error, count = struct.unpack_from(">hi", data)
    if error != 0:
        raise ProbeError(f"ApiVersions error code {error}")
    versions: dict[int, tuple[int, int]] = {}
    for i in range(count):
        key, lo, hi = struct.unpack_from(">hhh", data, 6 + 6 * i)
        versions[key] = (lo, hi)
    return versions


def _metadata_body(version: int) -> bytes:
    # An empty topic list: we only want the broker list, not every topic's partitions.
    body = struct.pack(">i", 0)
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation = false
    if version >= 8:
        body += b"\x00\x00"  # include cluster / topic authorized operations = false
    return body


def _broker_count(sock: socket.socket, versions: dict[int, tuple[int, int]]) -> int:
    lo = versions.get(API_METADATA, (0, 0))[0]
    if lo > _MAX_RIGID_METADATA:
        raise ProbeError(f"broker needs Metadata v{lo}+, probe speaks up to v{_MAX_RIGID_METADATA}")
    version = lo
    data = _request(sock, API_METADATA, version, 2, _metadata_body(version))
    offset = 4 if version >= 3 else 0  # v3+ starts with throttle_time_ms
    (count,) = struct.unpack_from(">i", data, offset)
    return int(count)


def kafka_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when ``host:port`` answers ApiVersions and a Metadata listing at least one broker."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return _broker_count(sock, _api_versions(sock)) > 0
    except (OSError, ProbeError, struct.error):
        return False


def wait_ready(
    host: str,
    port: int,
    timeout: float,
    *,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
) -> bool:
    """Poll :func:`kafka_ready` until it succeeds (True), ``timeout`` passes or ``alive()`` is False.

    ``alive`` lets a caller that spawned the broker stop waiting as soon as the process died.
    """
    deadline = time.monotonic() + timeout
    while True:
        if not alive():
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if kafka_ready(host, port, timeout=min(2.0, remaining)):
            return True
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
