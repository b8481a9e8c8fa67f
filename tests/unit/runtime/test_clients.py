"""The processor's Kafka clients' settings (built, never started: no broker needed)."""

from __future__ import annotations

from pathlib import Path

from stream_app.config import Settings
from stream_app.runtime.clients import DYNAMIC_SESSION_TIMEOUT_MS, STATIC_SESSION_TIMEOUT_MS, group_consumer


async def test_a_static_member_gets_a_session_long_enough_for_a_restart_regression(tmp_path: Path) -> None:
    """Regression: with STREAM_APP_INSTANCE_ID the session timeout stayed aiokafka's 10 s, shorter
    than most pod restarts, so the rebalance static membership exists to avoid happened anyway."""
    static = group_consumer(Settings(state_dir=tmp_path, instance_id="pod-0"), exactly_once=False)
    dynamic = group_consumer(Settings(state_dir=tmp_path), exactly_once=False)
    try:
        assert static._session_timeout_ms == STATIC_SESSION_TIMEOUT_MS == 45_000  # Java's (KIP-735)
        assert static._group_instance_id == "pod-0"
        assert dynamic._session_timeout_ms == DYNAMIC_SESSION_TIMEOUT_MS == 10_000  # aiokafka's, as before
        assert dynamic._group_instance_id is None
    finally:
        await static.stop()  # never started: this only closes them
        await dynamic.stop()
