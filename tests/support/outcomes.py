"""A hand-built set of outcomes whose report figures are worked out by hand (tests of ``stream-app report``).

Built with the contract's own models and encoder, so the report is held to the records the
processor really writes. Times are offsets in seconds from :data:`T0`.

| message | tenant | result | attempts (channel: issue -> statusTimes, end) |
|---|---|---|---|
| m1 | acme | SUCCEEDED | WA: 0 -> ACCEPTED 1, DELIVERED 10, SUCCEEDED |
| m2 | acme | SUCCEEDED | WA: 0 -> ACCEPTED 2, DELIVERED 30, SUCCEEDED |
| m3 | acme | SUCCEEDED | WA: 0 REJECTED "template not approved", FAILED; SMS: 1 -> ACCEPTED 2, DELIVERED 5 |
| m4 | acme | SUCCEEDED | WA: 0 SENT, TIMEOUT; SMS: 600 -> ACCEPTED 601, DELIVERED 603 (see below) |
| m5 | acme | FAILED | WA: 0 ERROR "expired number", FAILED; SMS: 1 REJECTED (no reason), FAILED |
| m6 | other | EXPIRED | WA: 0 SENT, EXPIRED |
| m7 | acme | CANCELLED (paid) | WA: 0 ACCEPTED, CANCELLED |

m4 also has late statuses of its WA attempt: DELIVERED at 900 and READ at 950, both doubleDelivery.
Plus m1 repeated (at_least_once) and a late status of a message that is not in the set ("ghost").
"""

from __future__ import annotations

from stream_app.contracts import (
    AttemptEnd,
    AttemptSummary,
    Channel,
    LateStatus,
    Outcome,
    Result,
    Status,
    SuccessStatus,
    encode,
    from_ms,
)

T0_MS = 1_775_721_600_000  # 2026-04-09T08:00:00Z
T0 = from_ms(T0_MS)
WA, SMS = Channel.WHATSAPP, Channel.SMS


def at(seconds: float) -> object:
    return from_ms(T0_MS + int(seconds * 1000))


def attempt(
    n: int,
    channel: Channel,
    issued: float,
    last: Status,
    ended: AttemptEnd,
    times: dict[str, float] | None = None,
    reasons: list[str] | None = None,
) -> AttemptSummary:
    return AttemptSummary(
        attempt=n,
        channel=channel,
        issued_at=at(issued),
        last_status=last,
        ended_by=ended,
        status_times={SuccessStatus(k): at(v) for k, v in times.items()} if times else None,
        reasons=reasons,
    )


def outcome(
    message_id: str,
    result: Result,
    attempts: list[AttemptSummary],
    completed: float,
    *,
    tenant: str = "acme",
    reason: str | None = None,
) -> Outcome:
    won = next((a for a in attempts if a.ended_by is AttemptEnd.SUCCEEDED), None)
    return Outcome(
        message_id=message_id,
        tenant=tenant,
        campaign_id="spring" if message_id in ("m1", "m2") else "autumn",
        result=result,
        channel=won.channel if won else None,
        status=won.last_status if won else None,
        attempt_count=len(attempts),
        attempts=attempts,
        reason=reason,
        requested_at=T0,
        completed_at=at(completed),
        duration_ms=int(completed * 1000),
    )


def hand_built() -> list[Outcome | LateStatus]:
    ok, fail = AttemptEnd.SUCCEEDED, AttemptEnd.FAILED
    dl = Status.DELIVERED
    m1 = outcome("m1", Result.SUCCEEDED, [attempt(0, WA, 0, dl, ok, {"ACCEPTED": 1, "DELIVERED": 10})], 10)
    return [
        m1,
        outcome("m2", Result.SUCCEEDED, [attempt(0, WA, 0, dl, ok, {"ACCEPTED": 2, "DELIVERED": 30})], 30),
        outcome(
            "m3",
            Result.SUCCEEDED,
            [
                attempt(0, WA, 0, Status.REJECTED, fail, reasons=["template not approved"]),
                attempt(1, SMS, 1, dl, ok, {"ACCEPTED": 2, "DELIVERED": 5}),
            ],
            5,
        ),
        outcome(
            "m4",
            Result.SUCCEEDED,
            [
                attempt(0, WA, 0, Status.SENT, AttemptEnd.TIMEOUT, {"ACCEPTED": 1, "SENT": 2}),
                attempt(1, SMS, 600, dl, ok, {"ACCEPTED": 601, "DELIVERED": 603}),
            ],
            603,
        ),
        m1,  # a repeat, as at_least_once may publish after a crash
        LateStatus(
            message_id="m4", attempt=0, channel=WA, status=dl, occurred_at=at(900), double_delivery=True
        ),
        LateStatus(
            message_id="m4",
            attempt=0,
            channel=WA,
            status=Status.READ,
            occurred_at=at(950),
            double_delivery=True,
        ),
        outcome(
            "m5",
            Result.FAILED,
            [
                attempt(0, WA, 0, Status.ERROR, fail, reasons=["expired number"]),
                attempt(1, SMS, 1, Status.REJECTED, fail),
            ],
            2,
        ),
        outcome(
            "m6", Result.EXPIRED, [attempt(0, WA, 0, Status.SENT, AttemptEnd.EXPIRED)], 3600, tenant="other"
        ),
        outcome(
            "m7",
            Result.CANCELLED,
            [attempt(0, WA, 0, Status.ACCEPTED, AttemptEnd.CANCELLED)],
            60,
            reason="paid",
        ),
        LateStatus(
            message_id="ghost", attempt=0, channel=SMS, status=dl, occurred_at=at(70), double_delivery=False
        ),
    ]


def hand_built_lines() -> list[bytes]:
    """The set as a JSONL export's lines."""
    return [encode(r) for r in hand_built()]
