"""The demo's scenarios are valid requests and valid simulator rules, and --speed scales timeouts."""

from __future__ import annotations

import orjson
import pytest

from stream_app.contracts import decode_request
from stream_app.demo.scenarios import MIN_FALLBACK_SECONDS, MIN_TTL_SECONDS, SCENARIOS, simulator_rules
from stream_app.demo.table import render
from stream_app.gateway.simulator import parse_rules


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.key)
def test_each_scenario_is_a_valid_send_request(scenario) -> None:  # type: ignore[no-untyped-def]
    req = decode_request(orjson.dumps(scenario.request(f"m-{scenario.key}", 1.0)))
    assert req.destination.endswith(scenario.key)


def test_speed_divides_every_timeout() -> None:
    s = SCENARIOS[0]
    slow, fast = s.request("m", 1.0), s.request("m", 1200.0)
    assert slow["channels"][0]["fallbackAfter"] == 7200
    assert fast["channels"][0]["fallbackAfter"] == 6.0


def test_scenario_keys_are_unique_so_rules_never_overlap() -> None:
    keys = [s.key for s in SCENARIOS]
    assert len(keys) == len(set(keys))


def test_simulator_accepts_the_rules() -> None:
    rules = parse_rules(orjson.dumps(simulator_rules()))
    assert rules.rules[-1].destination_suffix == ""


def test_table_shows_pending_rows() -> None:
    text = render([("FashionOutlet", "m-1", None, "NO")])
    assert "(pending)" in text and "m-1" in text


def test_scaled_ttl_never_drops_below_the_gateway_timeline() -> None:
    """Regression: at speed 3600 Banca Adriatica's 1 h ttl became 1 s and expired a working chain."""
    adriatica = next(s for s in SCENARIOS if s.key == "14")
    assert adriatica.request("m", 3600.0)["ttl"] == MIN_TTL_SECONDS
    assert adriatica.request("m", 1.0)["ttl"] == 3600


def test_scaled_fallback_after_leaves_time_for_a_refusal_to_land() -> None:
    """Regression: RCS's 300 s at speed 1200 was 0.25 s, so it timed out before AGENT_NOT_REACHABLE."""
    adriatica = next(s for s in SCENARIOS if s.key == "14")
    steps = adriatica.request("m", 1200.0)["channels"]
    assert steps[1]["fallbackAfter"] == MIN_FALLBACK_SECONDS
    assert adriatica.request("m", 1.0)["channels"][1]["fallbackAfter"] == 300


def test_the_outage_act_is_valid_requests_and_rules_of_its_own() -> None:
    from stream_app.demo.outage import OUTAGE_SCENARIOS, TTL_MARGIN_S, outage_request
    from stream_app.demo.outage import simulator_rules as outage_rules

    keys = [s.key for s in (*SCENARIOS, *OUTAGE_SCENARIOS)]
    assert len(keys) == len(set(keys))
    for scenario in OUTAGE_SCENARIOS:
        body = outage_request(scenario, f"m-{scenario.key}", 1200.0)
        req = decode_request(orjson.dumps(body))
        assert req.destination.endswith(scenario.key)
        # just past the scaled WhatsApp wait, so a caught message's retries end soon after its SMS
        assert body["ttl"] == body["channels"][0]["fallbackAfter"] + TTL_MARGIN_S
    parse_rules(orjson.dumps({"rules": outage_rules()}))


def test_a_row_checks_how_each_attempt_ended_when_the_story_says() -> None:
    from stream_app.contracts import Outcome
    from stream_app.demo.outage import SKIPPING
    from stream_app.demo.run import Row

    def outcome(first_end: str) -> Outcome:
        return Outcome.model_validate(
            {
                "messageId": "m",
                "result": "SUCCEEDED",
                "channel": "SMS",
                "status": "DELIVERED",
                "attemptCount": 2,
                "attempts": [
                    {
                        "attempt": 0,
                        "channel": "WHATSAPP",
                        "issuedAt": "2026-04-09T08:00:00Z",
                        "endedBy": first_end,
                    },
                    {
                        "attempt": 1,
                        "channel": "SMS",
                        "issuedAt": "2026-04-09T08:00:00Z",
                        "endedBy": "SUCCEEDED",
                    },
                ],
                "requestedAt": "2026-04-09T08:00:00Z",
                "completedAt": "2026-04-09T08:00:01Z",
                "durationMs": 1000,
            }
        )

    assert Row(SKIPPING, "m", outcome("SKIPPED")).ok
    assert not Row(SKIPPING, "m", outcome("TIMEOUT")).ok  # SMS all the same, but WhatsApp was not skipped
