"""Pending timers survive a clean stop (SIGTERM's path): from the local store, and from the changelog alone.

Also checks the observability endpoint while a processor runs: ``/metrics`` and ``/healthz``.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import httpx

from tests.integration.runtime.helpers import (
    Reader,
    publish,
    running,
    send_request,
    settings_for,
    setup_topics,
)

#: Runtime port range (19500-19599): the metrics endpoint of the test processor.
METRICS_PORT = 19511
FLOWS = 200


def _metric(text: str, name: str) -> float:
    """Sum of every sample of ``name`` (all label sets) in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _restart_case(kafka_bootstrap: str, tmp_path: Path, *, wipe_local_store: bool) -> str:
    s = settings_for(kafka_bootstrap, tmp_path / "state", metrics_port=METRICS_PORT)
    await setup_topics(s)
    t = s.topics
    ids = [f"r{i}" for i in range(FLOWS)]
    # 3 s: long enough that every timer is still pending when the first instance stops.
    requests = [(m.encode(), send_request(m, [("WHATSAPP", 3.0), ("SMS", None)])) for m in ids]
    reader = Reader(kafka_bootstrap, [t.retry_commands, t.outcomes])
    async with reader:
        async with running(s):
            await publish(s, t.send_requests, requests)
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= FLOWS, "every attempt 0")
            async with httpx.AsyncClient() as http:
                health = await http.get(f"http://127.0.0.1:{METRICS_PORT}/healthz")
                assert health.status_code == 200
                text = (await http.get(f"http://127.0.0.1:{METRICS_PORT}/metrics")).text
            assert _metric(text, "stream_app_records_in_total") >= FLOWS
            assert _metric(text, "stream_app_pending_timers") >= 0
        assert not any(c["attempt"] == 1 for c in reader.values(t.retry_commands))
        if wipe_local_store:
            shutil.rmtree(tmp_path / "state")
        async with running(replace(s, state_dir=tmp_path / "state")):
            await reader.wait(lambda: len(reader.records[t.retry_commands]) >= 2 * FLOWS, "every SMS attempt")
            async with httpx.AsyncClient() as http:
                text = (await http.get(f"http://127.0.0.1:{METRICS_PORT}/metrics")).text
    sms = sorted(c["messageId"] for c in reader.values(t.retry_commands) if c["attempt"] == 1)
    assert sms == sorted(ids)
    return text


async def test_pending_timers_survive_a_clean_stop(kafka_bootstrap: str, tmp_path: Path) -> None:
    text = await _restart_case(kafka_bootstrap, tmp_path, wipe_local_store=False)
    assert _metric(text, "stream_app_timers_fired_total") >= FLOWS
    assert _metric(text, "stream_app_timer_lateness_seconds_count") >= FLOWS
    # The local store was complete: nothing (or only a short tail) had to come from the changelog.
    assert _metric(text, "stream_app_restore_records_total") < FLOWS


async def test_a_fresh_instance_restores_from_the_changelog(kafka_bootstrap: str, tmp_path: Path) -> None:
    text = await _restart_case(kafka_bootstrap, tmp_path, wipe_local_store=True)
    assert _metric(text, "stream_app_restore_records_total") >= FLOWS
    assert _metric(text, "stream_app_restore_remaining") == 0
