"""Every service refuses to start, in one line, when its topics are missing (issue 13, item 4).

Run as a user would, in real processes: a mistyped ``--topic-prefix`` used to run happily, and the
first record produced had the broker auto-create a topic with its own partition count.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support.kafka import unique_prefix

CLI = [sys.executable, "-m", "stream_app"]


def topics_under(bootstrap: str, prefix: str) -> list[str]:
    async def go() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            return sorted(name for name in await admin.list_topics() if name.startswith(prefix))
        finally:
            await admin.close()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("service", "extra"),
    [
        ("webhook", ["--port", "0"]),
        ("poller", ["--metrics-port", "0"]),
        ("dispatcher", ["--metrics-port", "0"]),
        ("processor", ["--metrics-port", "0"]),
    ],
)
def test_a_service_with_a_mistyped_prefix_refuses_in_one_line_and_creates_nothing(
    kafka_bootstrap: str, tmp_path: Path, service: str, extra: list[str]
) -> None:
    typo = f"{unique_prefix()}typo."
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_APP_GATEWAY_API_KEY": "k",
        "STREAM_APP_WEBHOOK_SECRET": "s",
        "STREAM_APP_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [*CLI, service, "--topic-prefix", typo, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"stream-app: error: missing topic(s) {typo}"), done.stderr
    assert "Traceback" not in done.stderr
    assert topics_under(kafka_bootstrap, typo) == []
