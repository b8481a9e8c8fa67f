"""Exact figures of the report over the hand-built set of ``tests/support/outcomes.py`` (worked by hand)."""

from __future__ import annotations

from typing import Any

from stream_app.report import Aggregator, Filters, parse
from tests.support.outcomes import T0_MS, hand_built_lines


def report(filters: Filters | None = None, **kwargs: Any) -> dict[str, Any]:
    agg = Aggregator(filters, **kwargs)
    for line in hand_built_lines():
        agg.add(parse(line))
    return agg.result()


def channel(rep: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in rep["channels"] if c["channel"] == name]
    return found


def test_messages_results_repeats_and_time_to_success() -> None:
    rep = report()
    assert rep["messages"] == 7
    assert rep["results"] == {"SUCCEEDED": 4, "FAILED": 1, "EXPIRED": 1, "CANCELLED": 1}
    read = rep["read"]
    assert (read["records"], read["outcomes"], read["lateStatuses"]) == (11, 8, 3)
    assert (read["repeatedOutcomes"], read["unmatchedLateStatuses"], read["bad"]) == (1, 1, 0)
    # durations of the successes: 5 s, 10 s, 30 s, 603 s; nearest rank: p50 = 2nd, p95 = p99 = 4th
    tts = rep["timeToSuccessMs"]
    assert (tts["count"], tts["p50"], tts["p95"], tts["p99"], tts["exact"]) == (
        4,
        10_000,
        603_000,
        603_000,
        True,
    )
    assert rep["outcomeReasons"] == [{"reason": "CANCELLED: paid", "count": 1}]


def test_the_fallback_funnel() -> None:
    funnel = report()["funnel"]
    assert [(f["step"], f["reached"], f["endedHere"]) for f in funnel] == [(0, 7, 4), (1, 3, 3)]
    assert funnel[0]["results"] == {"SUCCEEDED": 2, "FAILED": 0, "EXPIRED": 1, "CANCELLED": 1}
    assert funnel[1]["results"] == {"SUCCEEDED": 2, "FAILED": 1, "EXPIRED": 0, "CANCELLED": 0}
    steps = report()["steps"]
    assert steps[0]["endedBy"] == {"CANCELLED": 1, "EXPIRED": 1, "FAILED": 2, "SUCCEEDED": 2, "TIMEOUT": 1}
    assert steps[1]["channels"] == {"SMS": 3}


def test_channels_latency_reasons_and_fallbacks() -> None:
    rep = report()
    wa, sms = channel(rep, "WHATSAPP"), channel(rep, "SMS")
    assert (wa["attempts"], wa["successes"], wa["fallbacks"]) == (7, 2, 3)
    # issue -> DELIVERED: 10 s, 30 s, and m4's late DELIVERED at 900 s (joined through the late status)
    lat = wa["deliveryLatencyMs"]["fromIssue"]
    assert (lat["count"], lat["p50"], lat["p95"], lat["max"]) == (3, 30_000, 900_000, 900_000)
    acc = wa["deliveryLatencyMs"]["fromAccepted"]
    assert (acc["count"], acc["p50"], acc["p99"]) == (2, 9_000, 28_000)
    assert wa["failureReasons"] == [
        {"reason": "ERROR: expired number", "count": 1},
        {"reason": "REJECTED: template not approved", "count": 1},
    ]
    assert sms["failureReasons"] == [{"reason": "REJECTED: (no reason given)", "count": 1}]
    assert sms["deliveryLatencyMs"]["fromIssue"]["p50"] == 3_000  # 4 s and 3 s
    assert (wa["lateStatuses"], wa["doubleDeliveries"]) == (2, 1)


def test_late_and_double_delivery_rates_count_a_message_once() -> None:
    late = report()["late"]
    # m4 had a late DELIVERED and a late READ of the same attempt, both doubleDelivery: one message
    assert late == {
        "messages": 1,
        "rate": 1 / 7,
        "doubleDeliveryMessages": 1,
        "doubleDeliveryRate": 1 / 7,
        "doubleDeliveries": 1,
    }


def test_what_if_and_recommendation() -> None:
    wa = channel(report(), "WHATSAPP")["whatIf"]
    # cancelled m7 aside: delivered 10 s, 30 s, 900 s (m4, late); failed m3, m5; undelivered m6
    assert (wa["attempts"], wa["delivered"], wa["failed"], wa["undelivered"]) == (6, 3, 2, 1)
    curve = {p["fallbackAfter"]: p for p in wa["curve"]}
    assert (curve[5]["fallbacks"], curve[5]["doubleDeliveries"]) == (6, 3)
    assert (curve[10]["fallbacks"], curve[10]["doubleDeliveries"]) == (5, 2)  # 10 s is in time at 10 s
    assert (curve[30]["fallbackRate"], curve[30]["doubleDeliveryRate"]) == (4 / 6, 1 / 6)
    assert (curve[900]["fallbackRate"], curve[900]["doubleDeliveryRate"]) == (3 / 6, 0)
    assert wa["recommendedFallbackAfter"] == 900  # the first with at most 1 % double deliveries
    sms = channel(report(), "SMS")["whatIf"]
    assert (sms["recommendedFallbackAfter"], sms["atRecommended"]["fallbackRate"]) == (5, 1 / 3)

    looser = channel(report(max_double_rate=0.2), "WHATSAPP")["whatIf"]
    assert looser["recommendedFallbackAfter"] == 30  # 20 s would double 2 of 6
    assert looser["atRecommended"]["doubleDeliveries"] == 1


def test_tenant_campaign_and_time_filters() -> None:
    rep = report(Filters(tenants=frozenset({"other"})))
    assert (rep["messages"], rep["results"]["EXPIRED"], rep["read"]["filteredOut"]) == (1, 1, 6)
    assert rep["late"]["messages"] == 0  # m4's late statuses belong to a filtered-out message

    rep = report(Filters(campaigns=frozenset({"spring"})))
    assert rep["messages"] == 2

    # completed in [60 s, 3600 s): m4 (603 s) and m7 (60 s)
    rep = report(Filters(since_ms=T0_MS + 60_000, until_ms=T0_MS + 3_600_000))
    assert rep["messages"] == 2
    assert rep["results"] == {"SUCCEEDED": 1, "FAILED": 0, "EXPIRED": 0, "CANCELLED": 1}
    assert rep["late"]["doubleDeliveryMessages"] == 1


def test_outcomes_over_time_per_minute() -> None:
    over = report()["overTime"]
    assert over["bucketSeconds"] == 60
    first = over["buckets"][0]
    assert first["start"] == "2026-04-09T08:00:00Z"
    assert (first["SUCCEEDED"], first["FAILED"]) == (3, 1)  # m1, m2, m3 and m5 in the first minute
    assert sum(b["SUCCEEDED"] + b["FAILED"] + b["EXPIRED"] + b["CANCELLED"] for b in over["buckets"]) == 7


def test_an_empty_input_is_a_report_of_nothing() -> None:
    rep = Aggregator().result()
    assert rep["messages"] == 0 and rep["funnel"] == [] and rep["channels"] == []
    assert rep["timeToSuccessMs"]["p50"] is None and rep["late"]["rate"] is None


def test_the_recent_window_is_bounded() -> None:
    """Memory stays bounded: the window forgets the oldest messages (a repeat after it counts again)."""
    agg = Aggregator(window=2)
    lines = hand_built_lines()
    for line in lines:
        agg.add(parse(line))
    assert len(agg.recent) == 2


def test_a_repeated_late_status_is_counted_once_regression() -> None:
    """at_least_once may publish a LateStatus twice (the input replayed after a crash): the repeat,
    identical to the first, is the same late status and must not count again in the channel's figures."""
    lines = hand_built_lines()
    late = [line for line in lines if b'"late-status"' in line and b'"m4"' in line]
    agg = Aggregator()
    for line in [*lines, *late]:  # m4's late DELIVERED and READ, each published a second time
        agg.add(parse(line))
    rep = agg.result()
    wa = channel(rep, "WHATSAPP")
    assert (wa["lateStatuses"], wa["doubleDeliveries"]) == (2, 1)
    assert rep["late"]["messages"] == 1 and rep["late"]["doubleDeliveries"] == 1
    assert rep["read"]["lateStatuses"] == 5  # every record read is still counted as read
