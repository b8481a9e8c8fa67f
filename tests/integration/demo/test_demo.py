"""The demo in its fast mode, through a real broker: every seed scenario ends as its page says."""

from __future__ import annotations

import io
from dataclasses import replace

from stream_app.config import Settings
from stream_app.demo.run import DEFAULT_SPEED, play, report
from stream_app.demo.scenarios import SCENARIOS


async def test_demo_plays_every_seed_scenario_to_its_expected_outcome(kafka_bootstrap: str) -> None:
    out = io.StringIO()
    rows = await play(
        replace(Settings(), bootstrap_servers=kafka_bootstrap), speed=DEFAULT_SPEED, timeout=90, out=out
    )

    table = report(rows)
    assert [r.scenario.key for r in rows] == [s.key for s in SCENARIOS]
    assert all(r.outcome is not None for r in rows), out.getvalue()
    results = {r.scenario.name: (r.outcome.result.value, r.outcome.channel) for r in rows if r.outcome}
    assert results["All channels fail"] == ("FAILED", None)
    assert results["FarmaExpress order ready"][0] == "SUCCEEDED"
    assert all(r.ok for r in rows), table
    adriatica = next(r.outcome for r in rows if r.scenario.key == "14")
    assert adriatica is not None
    assert [(a.channel.value, a.ended_by.value if a.ended_by else None) for a in adriatica.attempts] == [
        ("WHATSAPP", "FAILED"),
        ("RCS", "FAILED"),
        ("SMS", "SUCCEEDED"),
    ]
    # The live progress names each message as its outcome lands.
    for r in rows:
        assert r.message_id in out.getvalue()
