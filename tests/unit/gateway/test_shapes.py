"""CONTRACT.md v1.1's normalisation table, row by row, and what is outside it."""

from __future__ import annotations

import logging

import pytest

from stream_app.contracts import Status
from stream_app.gateway.errors import UnknownGatewayShape
from stream_app.gateway.shapes import MAX_ONCE_KINDS, UNMAPPED_CODE, Ignored, Mapped, OnceLog, normalise


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ({"status": "SENT"}, Mapped(Status.SENT, "SENT")),
        ({"status": "RECEIVED"}, Mapped(Status.SENT, "RECEIVED")),
        ({"status": "received"}, Mapped(Status.SENT, "RECEIVED")),
        ({"status": "DELIVERED"}, Mapped(Status.DELIVERED, "DELIVERED")),
        ({"event_type": "DELIVERY", "status_code": 3}, Mapped(Status.DELIVERED, "DELIVERY")),
        ({"status": "READ"}, Mapped(Status.READ, "READ")),
        ({"event_type": "READ"}, Mapped(Status.READ, "READ")),
        ({"status": "ERROR", "status_code": 6}, Mapped(Status.ERROR, "ERROR")),
        ({"event_type": "DELIVERY", "status_code": 6}, Mapped(Status.ERROR, "DELIVERY")),
        ({"status_code": 6}, Mapped(Status.ERROR, "statusCode 6")),
        ({"status": "EXPIRED", "status_code": 8}, Mapped(Status.EXPIRED, "EXPIRED")),
        ({"event_type": "DELIVERY", "status_code": 8}, Mapped(Status.EXPIRED, "DELIVERY")),
        ({"status": "ACCEPTED"}, Mapped(Status.ACCEPTED, "ACCEPTED")),
        ({"status": "UNKNOWN"}, Ignored("UNKNOWN")),
        ({"event_type": "DELIVERY", "status_code": 4}, Ignored(UNMAPPED_CODE)),
        ({"event_type": "INBOUND"}, Ignored("eventType INBOUND")),
        ({"event_type": "inbound", "status": "LOST"}, Ignored("eventType INBOUND")),
    ],
)
def test_the_contract_table(said: dict[str, object], expected: Mapped | Ignored) -> None:
    assert normalise(**said) == expected  # type: ignore[arg-type]


def test_a_status_word_decides_over_a_code_beside_it() -> None:
    """The word is the gateway's own summary; a code beside it adds detail, it does not overrule."""
    assert normalise(status="SENT", status_code=3) == Mapped(Status.SENT, "SENT")


@pytest.mark.parametrize(
    ("said", "reason"),
    [
        ({"status": "LOST"}, "status: unknown gateway status 'LOST'"),
        ({"event_type": "CLICK"}, "eventType: must be one of DELIVERY, READ, INBOUND, got 'CLICK'"),
        ({}, "status: required (deliveryStatus, status, statusCode or eventType)"),
        ({"event_type": "DELIVERY"}, "status: required"),
    ],
)
def test_outside_the_vocabulary_is_an_unknown_shape(said: dict[str, object], reason: str) -> None:
    with pytest.raises(UnknownGatewayShape) as info:
        normalise(**said)  # type: ignore[arg-type]
    assert info.value.reason.startswith(reason) and "\n" not in info.value.reason


def test_once_log_logs_each_kind_once(caplog: pytest.LogCaptureFixture) -> None:
    once = OnceLog(logging.getLogger("test.once"))
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            once.note("UNKNOWN", "gateway status UNKNOWN")
        once.note("statusCode 4", "gateway status statusCode 4")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "gateway status UNKNOWN",
        "gateway status statusCode 4",
    ]


def test_each_unmapped_status_code_is_a_new_kind_regression(caplog: pytest.LogCaptureFixture) -> None:
    """Each distinct unmapped statusCode was its own kind: a new Prometheus label value and a new
    log-once entry per number a body chose. Now one kind for all; and the log-once set is bounded."""
    assert {normalise(status_code=code) for code in range(1000, 1500)} == {Ignored(UNMAPPED_CODE)}
    once = OnceLog(logging.getLogger("test.once"))
    with caplog.at_level(logging.WARNING):
        for n in range(MAX_ONCE_KINDS * 3):
            once.note(f"unknown WORD{n}", f"gateway status WORD{n}")
    assert len(once.seen) == MAX_ONCE_KINDS
    assert len(caplog.records) == MAX_ONCE_KINDS + 1  # one line more says the rest go unlogged
