"""``stream-app report`` reading the outcomes topic of a real broker (the session's Tansu), with filters."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts import AttemptEnd, Result, Status, encode, from_ms
from tests.support.kafka import create_topics, produce, unique_prefix
from tests.support.outcomes import WA, attempt, hand_built, outcome


@pytest.fixture
def env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    prefix = unique_prefix()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", prefix)
    settings = Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)
    asyncio.run(create_topics(kafka_bootstrap, settings))
    yield settings


def publish(settings: Settings, values: list[tuple[str, bytes]]) -> None:
    async def go() -> None:
        for key, value in values:
            await produce(settings.bootstrap_servers, settings.topics.outcomes, key, value)

    asyncio.run(go())


def report_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[dict[str, Any], str]:
    code = main(["report", "--json", *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    data: dict[str, Any] = orjson.loads(out)
    return data, err


def test_report_reads_the_topic_with_tenant_and_since_filters(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(env, [(r.message_id, encode(r)) for r in hand_built()] + [("bad", b"{not json")])

    rep, err = report_json(capsys)
    assert rep["source"] == f"{env.topics.outcomes} on {env.bootstrap_servers}"
    assert (rep["messages"], rep["read"]["records"], rep["read"]["bad"]) == (7, 12, 1)
    assert rep["results"] == {"SUCCEEDED": 4, "FAILED": 1, "EXPIRED": 1, "CANCELLED": 1}
    assert rep["late"]["doubleDeliveryMessages"] == 1  # m4's late statuses found their outcome
    assert "stream-app report: partition " in err and ": not JSON" in err
    assert f"read 12 records of {env.topics.outcomes}" in err

    rep, _ = report_json(capsys, "--tenant", "other")
    assert (rep["messages"], rep["results"]["EXPIRED"], rep["read"]["filteredOut"]) == (1, 1, 6)

    # --since starts each partition at that time (the broker's time index), then filters by completedAt
    since_ms = int(time.time() * 1000)
    done = from_ms(since_ms + 5_000)
    fresh = [
        outcome("n1", Result.SUCCEEDED, [attempt(0, WA, 0, Status.DELIVERED, AttemptEnd.SUCCEEDED)], 1),
        outcome("n2", Result.FAILED, [attempt(0, WA, 0, Status.ERROR, AttemptEnd.FAILED)], 1),
    ]
    publish(env, [(o.message_id, encode(o.model_copy(update={"completed_at": done}))) for o in fresh])
    rep, _ = report_json(capsys, "--since", from_ms(since_ms).isoformat())
    assert rep["messages"] == 2
    assert rep["results"]["SUCCEEDED"] == rep["results"]["FAILED"] == 1
    # Apache Kafka reads exactly the 2. Tansu answers a time with no record at or after it by the last
    # record (or offset 0) instead of "none", so there a partition may start earlier: never later.
    assert 2 <= rep["read"]["records"] < 14, rep["read"]

    rep, _ = report_json(capsys, "--since", "1h", "--tenant", "other")
    assert rep["messages"] == 0


def test_an_empty_topic_is_a_report_of_nothing(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 0
    out, err = capsys.readouterr()
    assert "0 messages" in out and "no outcomes to report" in out
    assert f"read 0 records of {env.topics.outcomes}" in err


def test_a_missing_topic_is_one_line(kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "--bootstrap-servers", kafka_bootstrap, "--topic-prefix", unique_prefix()])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("stream-app: error: missing topic") and err.count("\n") == 1
