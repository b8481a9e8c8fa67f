"""The demo's seven seed scenarios, played once through the session broker for every explain test."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from collections.abc import Iterator
from dataclasses import replace

import pytest

from stream_app.config import Settings
from stream_app.demo.run import DEFAULT_SPEED, play
from tests.integration.explain.helpers import Played


@pytest.fixture(scope="package")
def played(kafka_bootstrap: str) -> Iterator[Played]:
    """The seven scenarios played once through the broker (the demo, in an event loop of its own)."""
    settings = replace(Settings(), bootstrap_servers=kafka_bootstrap)
    out = io.StringIO()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        # outage=False: the seven seed scenarios alone; the outage act's channel-control records would
        # appear in every timeline of the run (test_explain_control.py covers control records).
        job = play(settings, speed=DEFAULT_SPEED, timeout=90, out=out, outage=False)
        rows = pool.submit(asyncio.run, job).result()
    assert all(r.ok for r in rows), out.getvalue()
    run = rows[0].message_id.split("-")[1]  # demo-<run>-<key>; the demo's topics are demo-<run>.*
    yield Played(replace(settings, topic_prefix=f"demo-{run}."), {r.scenario.key: r for r in rows})
