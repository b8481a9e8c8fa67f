"""The demo in its fast mode, through a real broker: every seed scenario ends as its page says, and
the outage act closes WhatsApp through the dispatcher's breaker, skips it, and reopens it."""

from __future__ import annotations

import io
from dataclasses import replace

from stream_app.config import Settings
from stream_app.contracts import decode_control
from stream_app.demo.outage import OUTAGE_SCENARIOS
from stream_app.demo.run import DEFAULT_SPEED, play, report
from stream_app.demo.scenarios import SCENARIOS
from tests.integration.gateway.helpers import read_all


async def test_demo_plays_every_seed_scenario_and_the_outage_to_their_expected_outcomes(
    kafka_bootstrap: str,
) -> None:
    out = io.StringIO()
    settings = replace(Settings(), bootstrap_servers=kafka_bootstrap)
    rows = await play(settings, speed=DEFAULT_SPEED, timeout=90, out=out)

    table = report(rows)
    assert [r.scenario.key for r in rows] == [s.key for s in (*SCENARIOS, *OUTAGE_SCENARIOS)]
    assert all(r.outcome is not None for r in rows), out.getvalue()
    results = {r.scenario.name: (r.outcome.result.value, r.outcome.channel) for r in rows if r.outcome}
    assert results["All channels fail"] == ("FAILED", None)
    assert results["FarmaExpress order ready"][0] == "SUCCEEDED"
    assert all(r.ok for r in rows), f"{table}\n{out.getvalue()}"

    def path(key: str) -> list[tuple[str, str | None]]:
        outcome = next(r.outcome for r in rows if r.scenario.key == key)
        assert outcome is not None
        return [(a.channel.value, a.ended_by.value if a.ended_by else None) for a in outcome.attempts]

    assert path("14") == [("WHATSAPP", "FAILED"), ("RCS", "FAILED"), ("SMS", "SUCCEEDED")]
    # the outage act: caught on WhatsApp and waited out; skipped while closed; WhatsApp again after
    assert path("21") == path("22") == [("WHATSAPP", "TIMEOUT"), ("SMS", "SUCCEEDED")]
    assert path("23") == [("WHATSAPP", "SKIPPED"), ("SMS", "SUCCEEDED")]
    assert path("24") == [("WHATSAPP", "SUCCEEDED")]
    # The live progress names each message as its outcome lands, and each channel-control record.
    text = out.getvalue()
    for r in rows:
        assert r.message_id in text
    closed, opened = (
        text.index("channel-control: WHATSAPP CLOSED until"),
        text.index("channel-control: WHATSAPP OPEN"),
    )
    assert closed < text.index(rows[-2].message_id + " SUCCEEDED") < opened
    # what the dispatcher's breaker published, as the processor read it: CLOSED first, OPEN last
    prefix = text.split("topics with prefix '", 1)[1].split("'", 1)[0]
    records = await read_all(
        kafka_bootstrap,
        f"{prefix}channel-control",
        lambda rs: any(b'"OPEN"' in (r.value or b"") for r in rs),
        within=10,
        settle=0.5,
    )
    controls = [decode_control(r.value or b"", r.key) for r in records]
    first, last = controls[0], controls[-1]
    assert (first.key, first.state.value, first.in_flight.value) == ("WHATSAPP", "CLOSED", "WAIT")
    assert first.reason is not None and first.reason.startswith("circuit breaker: ")
    assert first.until is not None
    assert (last.key, last.state.value, last.reason) == (
        "WHATSAPP",
        "OPEN",
        "circuit breaker: probe succeeded",
    )
