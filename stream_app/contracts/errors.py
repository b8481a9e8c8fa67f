"""Errors of the contracts room."""

from __future__ import annotations

from stream_app.errors import StreamAppError


class ContractError(StreamAppError):
    """Base class of everything the contracts room raises."""


class InvalidRecord(ContractError):
    """A record's bytes are not a valid record of the contract.

    ``reason`` is one line, fit for the ``__error.reason`` dead-letter header: it names the field and
    the rule it broke (``destination: must be E.164, '+' then 8 to 15 digits``).
    """

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
