"""The dispatcher against a rate-limiting simulator: the wait after a 429 is never shorter than asked."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from stream_app.contracts import Status
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import running_simulator
from tests.integration.gateway.helpers import (
    as_record,
    command,
    make_settings,
    produce_all,
    read_statuses,
    running_dispatcher,
)


async def test_the_wait_after_a_429_is_never_shorter_than_the_header_or_the_body(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Issue 9: a 429 whose wait was in the body's retryAfter was retried on our own (shorter) backoff."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "71", "rateLimit": 2, "retryAfter": 0.1, "retryAfterBody": 1.2},'
        b' {"destinationSuffix": "72", "rateLimit": 1, "retryAfter": 1.0}]}'
    )
    # our own backoff is far shorter than the gateway's waits: only the gateway's can explain the gaps
    async with running_simulator(rules) as (sim, url):
        gw = GatewaySettings(url=url, api_key="test-key", backoff_base=0.01, backoff_max=0.05)
        async with running_dispatcher(settings, gw):
            records = [
                as_record(command("body", destination="+393401234571")),
                as_record(command("header", destination="+393401234572")),
            ]
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)
            statuses = await read_statuses(kafka_bootstrap, settings, 2)
    assert {(s.message_id, s.status) for s in statuses} == {
        ("body", Status.ACCEPTED),
        ("header", Status.ACCEPTED),
    }
    body_calls = sim.state.call_times["body:0"]
    header_calls = sim.state.call_times["header:0"]
    assert len(body_calls) == 3 and len(header_calls) == 2
    assert all(later - earlier >= 1.2 for earlier, later in pairwise(body_calls))
    assert header_calls[1] - header_calls[0] >= 1.0
