"""``stream-app webhook`` as a user starts it: what it says when it is ready."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from stream_app.config import Settings
from tests.support.kafka import create_topics, unique_prefix

ROOT = Path(__file__).resolve().parents[3]


def test_webhook_on_port_0_says_the_port_it_listens_on_regression(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """``--port 0`` (documented: 0-65535) printed "listening on http://127.0.0.1:0/dlr": no way to
    find the port the system chose."""
    prefix = unique_prefix()
    asyncio.run(create_topics(kafka_bootstrap, Settings(topic_prefix=prefix, partitions=1)))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_APP_TOPIC_PREFIX": prefix,
        "STREAM_APP_WEBHOOK_SECRET": "s3cret",
    }
    argv = [sys.executable, "-m", "stream_app", "webhook", "--port", "0", "--state-dir", str(tmp_path)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline().decode()  # the announcement is its first line on stdout
            topic = re.escape(f"{prefix}delivery-status")
            pattern = rf"webhook receiver listening on http://127\.0\.0\.1:(\d+)/dlr -> {topic}\n"
            match = re.fullmatch(pattern, line)
            assert match is not None, line
            assert int(match.group(1)) != 0
            with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=5):
                pass  # the receiver answers on the port it named
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.stdout.read()
            proc.stderr.read()
        assert proc.wait(timeout=60) == 0


def test_webhook_with_a_bad_host_names_the_host_regression(kafka_bootstrap: str, tmp_path: Path) -> None:
    """``webhook --host nope.invalid`` said "choose another --port" (once Kafka and its topics were
    found): the host is what to change."""
    prefix = unique_prefix()
    asyncio.run(create_topics(kafka_bootstrap, Settings(topic_prefix=prefix, partitions=1)))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_APP_TOPIC_PREFIX": prefix,
        "STREAM_APP_WEBHOOK_SECRET": "s3cret",
    }
    argv = ["webhook", "--host", "nope.invalid", "--port", "0", "--state-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "stream_app", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("stream-app: error: cannot listen on nope.invalid:0 ("), done.stderr
    assert done.stderr.endswith("; --host nope.invalid is not an address of this machine\n"), done.stderr
