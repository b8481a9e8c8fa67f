"""Errors of the gateway room (client, dispatcher, status ingest, simulator)."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class GatewayError(StreamAppError):
    """Base class of everything the gateway room raises on purpose."""


class GatewayConfigError(GatewayError):
    """A gateway setting (URL, API key, limits, secret) is missing or malformed."""


class RulesError(GatewayError):
    """A simulator rules file cannot be read or breaks a rule; the message names file and field."""


class CannotListen(GatewayError):
    """The HTTP server cannot listen on ``host:port``; the message says which option to change."""

    def __init__(self, host: str, port: int, detail: str, fix: str) -> None:
        super().__init__(f"cannot listen on {host}:{port} ({detail}); {fix}")


class HostNotHere(CannotListen):
    """``--host`` is no address of this machine: not a name or address at all, or one of another host."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(host, port, detail, f"--host {host} is not an address of this machine")


class PortInUse(CannotListen):
    """The HTTP port asked for is already taken by another process (or not allowed to this user)."""

    def __init__(self, host: str, port: int, detail: str) -> None:
        super().__init__(host, port, detail, "choose another --port")


class GatewayAuthError(GatewayError):
    """The gateway refused our API key (401/403): every send would fail, so the dispatcher stops."""


class UnknownGatewayShape(GatewayError):
    """A gateway status or callback body outside the gateway's documented vocabulary.

    ``reason`` is one line naming the field (``status: unknown gateway status 'LOST'``), fit for a
    400 answer and a dead-letter header.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
