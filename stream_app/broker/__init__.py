"""The local broker room: a Kafka-compatible Tansu broker for the demo, the CLI and the tests.

``LocalBroker(host, port)`` spawns it and waits until it answers Kafka requests;
``kafka_ready`` / ``wait_ready`` probe any broker (Tansu, Apache Kafka) the same way.
"""

from stream_app.broker.errors import BrokerBinaryMissing, BrokerError, BrokerStartError, PortInUse
from stream_app.broker.local import LocalBroker, check_port_free, resolve_binary
from stream_app.broker.probe import kafka_ready, wait_ready

__all__ = [
    "BrokerBinaryMissing",
    "BrokerError",
    "BrokerStartError",
    "LocalBroker",
    "PortInUse",
    "check_port_free",
    "kafka_ready",
    "resolve_binary",
    "wait_ready",
]
