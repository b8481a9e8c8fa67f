"""The processor's Kafka clients' settings (built, never started: no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

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


async def test_a_transactional_producer_that_fails_to_start_is_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Left as it was, a producer whose start failed kept its connections and sender: one client
    lost per retry of the turn for as long as the brokers could not start it."""
    from aiokafka.errors import KafkaConnectionError

    from stream_app.runtime import ownership
    from stream_app.runtime.ownership import PartitionOwnership

    stopped: list[int] = []

    class Producer:
        async def start(self) -> None:
            raise KafkaConnectionError("no broker")

        async def stop(self) -> None:
            stopped.append(0)

    monkeypatch.setattr(ownership, "transactional_producer", lambda settings, p: Producer())
    owner = PartitionOwnership.__new__(PartitionOwnership)
    owner.settings = Settings()
    owner.txn_producers = {}
    with pytest.raises(KafkaConnectionError):
        await owner._start_txn_producer(0)
    assert stopped == [0] and owner.txn_producers == {}
