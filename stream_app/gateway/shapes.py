"""The gateway's status vocabulary -> the contract's statuses: CONTRACT.md v1.1's normalisation table.

The one place the table lives; the webhook receiver and the poller both ask :func:`normalise`, so a
word the gateway adds is taught once. What the gateway says arrives in three spellings (the Qlara
documentation shows all of them):

* the status endpoint and its callbacks: ``deliveryStatus`` (``SENT``, ``RECEIVED``, ``DELIVERED``,
  ``READ``, ``ERROR``, ``EXPIRED``, ``UNKNOWN``), with ``statusCode`` on failures;
* the event callbacks: ``eventType`` ``DELIVERY`` with ``statusCode`` (3 delivered, 6 error,
  8 expired), ``READ`` (WhatsApp/RCS), ``INBOUND`` (a reply from the person: not a status);
* the older callbacks: ``status`` with the same words, and ``error`` for the reason.

Rules, in order (the table of CONTRACT.md, plus what it leaves open):

1. ``eventType``: ``INBOUND`` is no record; ``READ`` is READ; ``DELIVERY`` goes on to 2 and 3.
2. A status word decides when there is one (it is the gateway's own summary; a code beside it only
   adds detail). ``RECEIVED`` (the carrier has it, the handset has not confirmed) is SENT;
   ``UNKNOWN`` is no record. ``ACCEPTED`` and ``REJECTED`` are the contract's own words (the
   simulator answers ``ACCEPTED`` before the first DLR) and pass through.
3. Without a word, ``statusCode`` decides: 3 DELIVERED, 6 ERROR, 8 EXPIRED; any other code is no
   record (the gateway documents no other meaning for us to rely on), all of one kind
   (:data:`UNMAPPED_CODE`).

"No record" is :class:`Ignored`: counted in metrics and logged once per kind, never per poll or per
callback (a gateway that says UNKNOWN for hours would otherwise fill the log). A word outside the
vocabulary, or a body with no status at all, is :class:`~stream_app.gateway.errors.UnknownGatewayShape`:
the receiver answers 400 and dead-letters it; the poller counts and logs it once per kind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from stream_app.contracts import Status
from stream_app.gateway.errors import UnknownGatewayShape

#: Gateway status words that map to a contract status.
STATUS_WORDS: dict[str, Status] = {
    "SENT": Status.SENT,
    "RECEIVED": Status.SENT,
    "DELIVERED": Status.DELIVERED,
    "READ": Status.READ,
    "ERROR": Status.ERROR,
    "EXPIRED": Status.EXPIRED,
    "ACCEPTED": Status.ACCEPTED,
    "REJECTED": Status.REJECTED,
}
#: Gateway status words that are known and carry no progress: no record.
UNMAPPED_WORDS = frozenset({"UNKNOWN"})
#: ``statusCode`` of ``eventType: DELIVERY`` (seed page 000, the webhook guide).
STATUS_CODES: dict[int, Status] = {3: Status.DELIVERED, 6: Status.ERROR, 8: Status.EXPIRED}
EVENT_DELIVERY, EVENT_READ, EVENT_INBOUND = "DELIVERY", "READ", "INBOUND"
EVENT_TYPES = (EVENT_DELIVERY, EVENT_READ, EVENT_INBOUND)
#: The kind of every ``statusCode`` outside :data:`STATUS_CODES`: one label, whatever the number.
#: The code comes from the body, so a label (and a log-once entry) per code would let callbacks
#: grow /metrics and memory without bound.
UNMAPPED_CODE = "statusCode unmapped"
#: ``statusCode`` is a small number (3, 6 and 8 in the docs). One outside a signed 32-bit int is no
#: code, and past 64 bits it could not even be written again (orjson): such a body is refused.
MIN_STATUS_CODE, MAX_STATUS_CODE = -(2**31), 2**31 - 1


def status_code_of(value: Any) -> int | None:
    """A ``statusCode`` from a gateway answer: an int within the bounds, else None (not a code)."""
    if isinstance(value, int) and not isinstance(value, bool) and MIN_STATUS_CODE <= value <= MAX_STATUS_CODE:
        return value
    return None


@dataclass(frozen=True, slots=True)
class Mapped:
    """A contract status, with the gateway's own word kept for ``gatewayStatus``."""

    status: Status
    gateway_status: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Known, but no DeliveryStatus; ``kind`` labels the metric (``UNKNOWN``, ``statusCode 4``)."""

    kind: str


def normalise(
    *, status: str | None = None, status_code: int | None = None, event_type: str | None = None
) -> Mapped | Ignored:
    """What the gateway said, as a contract status (or no record); raises :class:`UnknownGatewayShape`."""
    event = event_type.strip().upper() if event_type is not None else None
    if event is not None:
        if event == EVENT_INBOUND:
            return Ignored(f"eventType {EVENT_INBOUND}")
        if event == EVENT_READ:
            return Mapped(Status.READ, EVENT_READ)
        if event != EVENT_DELIVERY:
            raise UnknownGatewayShape(
                f"eventType: must be one of {', '.join(EVENT_TYPES)}, got {event_type!r}"
            )
    if status is not None:
        word = status.strip().upper()
        if word in STATUS_WORDS:
            return Mapped(STATUS_WORDS[word], word)
        if word in UNMAPPED_WORDS:
            return Ignored(word)
        known = ", ".join([*STATUS_WORDS, *UNMAPPED_WORDS])
        raise UnknownGatewayShape(f"status: unknown gateway status {status!r} (known: {known})")
    if status_code is not None:
        mapped = STATUS_CODES.get(status_code)
        if mapped is None:
            return Ignored(UNMAPPED_CODE)
        return Mapped(mapped, event or f"statusCode {status_code}")
    raise UnknownGatewayShape("status: required (deliveryStatus, status, statusCode or eventType)")


#: Kinds a :class:`OnceLog` remembers at most. Kinds can carry the gateway's own word (an unknown
#: status), so they are not a closed set; 100 is far beyond the dozen the gateway documents, and a
#: gateway inventing words past it gets one line saying so, then silence (the metrics still count).
MAX_ONCE_KINDS = 100


@dataclass(slots=True)
class OnceLog:
    """Logs each kind of ignored or unknown gateway status the first time only (per process)."""

    logger: logging.Logger
    seen: set[str] = field(default_factory=set)
    full: bool = False

    def note(self, kind: str, message: str) -> None:
        if kind in self.seen or self.full:
            return
        if len(self.seen) >= MAX_ONCE_KINDS:
            self.full = True
            self.logger.warning(
                "%d kinds of gateway status logged; no more are (metrics count them)", MAX_ONCE_KINDS
            )
            return
        self.seen.add(kind)
        self.logger.warning("%s (logged once; counted in metrics from now on)", message)
