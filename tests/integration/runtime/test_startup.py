"""The processor refuses to start, with one clear line, when it cannot run correctly."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.broker import LocalBroker
from stream_app.errors import BrokerUnreachable
from stream_app.runtime import MissingTopics, PartitionMismatch, TransactionsUnsupported, run_processor
from tests.integration.runtime.helpers import settings_for, setup_topics
from tests.support.kafka import create_topics

#: Our own Tansu for the exactly_once refusal: the session broker may be a Kafka WITH transactions,
#: and this test must show the refusal on a broker without them (runtime port range 19500-19599).
TANSU_PORT = 19521
#: Nothing listens here (runtime port range): the unreachable-broker case.
DEAD_PORT = 19598


async def test_missing_topics_name_the_fix(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path)
    with pytest.raises(MissingTopics) as err:
        await run_processor(s)
    assert "run `stream-app topics create`" in str(err.value)
    assert s.topics.send_requests in str(err.value)
    assert "\n" not in str(err.value)


async def test_unequal_partition_counts_are_refused(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = settings_for(kafka_bootstrap, tmp_path, partitions=3)
    t = s.topics
    await create_topics(kafka_bootstrap, [t.send_requests, t.changelog], partitions=3)
    await create_topics(kafka_bootstrap, [t.delivery_status], partitions=2)
    others = [t.retry_commands, t.outcomes, t.dead_letters, t.channel_control]
    await create_topics(kafka_bootstrap, others, partitions=3)
    with pytest.raises(PartitionMismatch) as err:
        await run_processor(s)
    assert f"{t.delivery_status}=2" in str(err.value) and f"{t.send_requests}=3" in str(err.value)


async def test_unreachable_broker_is_one_line(tmp_path: Path) -> None:
    s = settings_for(f"127.0.0.1:{DEAD_PORT}", tmp_path)
    with pytest.raises(BrokerUnreachable) as err:
        await run_processor(s)
    assert "cannot reach Kafka at 127.0.0.1:19598" in str(err.value)


async def test_exactly_once_is_refused_on_tansu_never_downgraded(tmp_path: Path) -> None:
    async with LocalBroker(port=TANSU_PORT) as broker:
        s = settings_for(broker.bootstrap_servers, tmp_path, processing_guarantee="exactly_once")
        await setup_topics(s)
        with pytest.raises(TransactionsUnsupported) as err:
            await run_processor(s)
        assert "exactly_once needs Kafka transactions" in str(err.value)

        # The command line says the same in one line, exit status 2, no traceback.
        env = dict(os.environ)
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap_servers,
            STREAM_APP_TOPIC_PREFIX=s.topic_prefix,
            STREAM_APP_APP_ID=s.app_id,
            STREAM_APP_STATE_DIR=str(tmp_path / "cli"),
            STREAM_APP_PROCESSING_GUARANTEE="exactly_once",
            STREAM_APP_METRICS_PORT="0",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stream_app", "processor", env=env, stderr=asyncio.subprocess.PIPE
        )
        _, raw = await asyncio.wait_for(proc.communicate(), 60)
    stderr = raw.decode()
    assert proc.returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("stream-app: error:")]
    assert len(errors) == 1 and "exactly_once needs Kafka transactions" in errors[0]
    assert "Traceback" not in stderr


def test_help_teaches() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "stream_app", "processor", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "STREAM_APP_PROCESSING_GUARANTEE" in proc.stdout
