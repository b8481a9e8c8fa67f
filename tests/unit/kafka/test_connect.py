"""The one-line reason of a failed connect."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError

from stream_app.kafka.connect import describe

UNABLE = KafkaConnectionError("Unable to bootstrap from [('kafka', 9093, <AddressFamily.AF_UNSPEC: 0>)]")


def test_no_broker_answered_on_a_plaintext_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_SECURITY_PROTOCOL", raising=False)
    assert describe(UNABLE) == "no broker answered"
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "plaintext")
    assert describe(UNABLE) == "no broker answered"


@pytest.mark.parametrize("protocol", ["SASL_SSL", "ssl", "SASL_PLAINTEXT"])
def test_a_secured_cluster_names_tls_and_sasl_as_causes_regression(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    """Regression: aiokafka raises "Unable to bootstrap" for a refused TLS handshake or SASL login
    too, and the error said only "no broker answered; is the broker running?", sending whoever
    had an expired password or an untrusted CA to debug the network."""
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    assert describe(UNABLE) == (
        f"no broker answered, or with KAFKA_SECURITY_PROTOCOL={protocol.upper()} its TLS handshake or "
        "SASL login failed: check the KAFKA_SSL_* and KAFKA_SASL_* settings"
    )
