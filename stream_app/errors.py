"""Errors shared by every room. Each room's ``errors.py`` subclasses :class:`StreamAppError`."""

from __future__ import annotations


class StreamAppError(Exception):
    """Base of every error this project raises on purpose.

    The CLI prints these as one line (``stream-app: error: <message>``) instead of a traceback.
    """


class ConfigError(StreamAppError):
    """A setting is missing or out of range; the message names the setting and the rule."""


class BrokerUnreachable(StreamAppError):
    """No Kafka broker answered at the configured bootstrap servers."""

    def __init__(self, bootstrap_servers: str, detail: str = "") -> None:
        hint = f" ({detail})" if detail else ""
        super().__init__(
            f"cannot reach Kafka at {bootstrap_servers}{hint}; is the broker running? "
            "Set KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers, or start one with `stream-app broker`"
        )
        self.bootstrap_servers = bootstrap_servers


class ServiceStartFailed(StreamAppError):
    """A service started in-process stopped before it was ready, or was not ready in time."""


class EndpointPortInUse(StreamAppError):
    """The port of a ``/metrics`` + ``/healthz`` endpoint cannot be bound (taken, or not allowed)."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(
            f"cannot serve /metrics on {host}:{port} ({detail}); choose another metrics port, "
            "or 0 to turn the endpoint off"
        )


class StaleCompiledModule(StreamAppError, ImportError):
    """A compiled hot-path module is older than its source: it would run code that is not there.

    Raised when the package is imported (see :mod:`stream_app.compiled`), so an ImportError too.
    """
