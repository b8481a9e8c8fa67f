"""``explain`` through the broker when the topics do not tell the processor's story: tampered records,
undecodable records, a bounded scan, an unknown messageId, missing topics, no broker.

A played demo message is copied, record by record with its timestamp, onto fresh topics of the test's
own, where a record can be changed or added without touching the other tests' demo topics.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.config import Settings
from stream_app.contracts import format_ms, to_ms
from stream_app.contracts.catalogue import CATALOGUE
from stream_app.demo.run import DEMO_PARTITIONS
from stream_app.explain import Progress, explain_kafka
from tests.integration.explain.helpers import Played, explain_json, run_cli
from tests.support.kafka import create_topics, unique_prefix

Line = dict[str, Any]


async def copy_message(
    played: Played, key: str, tmp_path: Path, change: Callable[[list[Line]], list[Line]] = lambda x: x
) -> tuple[Settings, str]:
    """Export scenario ``key``'s message, ``change`` its lines, and produce them onto fresh topics."""
    message_id = played.rows[key].message_id
    export = tmp_path / "export.jsonl"
    code, _ = explain_json(played, message_id, "--export", str(export))
    assert code == 0
    lines = change([orjson.loads(raw) for raw in export.read_bytes().splitlines()])
    settings = replace(played.settings, topic_prefix=unique_prefix(), partitions=DEMO_PARTITIONS)
    await create_topics(settings.bootstrap_servers, settings)
    stems = sorted((s.stem for s in CATALOGUE), key=len, reverse=True)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for line in lines:
            stem = next(s for s in stems if line["topic"].endswith(s))
            await producer.send_and_wait(
                settings.topic_prefix + stem,
                line["value"].encode() if line["value"] is not None else None,
                key=line["key"].encode(),
                timestamp_ms=line["timestamp"],
                headers=[(k, v.encode()) for k, v in line["headers"]] or None,
            )
    finally:
        await producer.stop()
    return settings, message_id


def explain_on(settings: Settings, message_id: str, *extra: str) -> tuple[int, str, str]:
    return run_cli(
        "explain",
        message_id,
        "--bootstrap-servers",
        settings.bootstrap_servers,
        "--topic-prefix",
        settings.topic_prefix,
        *extra,
    )


def _edit(lines: list[Line], stem: str, match: Callable[[dict[str, Any]], bool], **fields: Any) -> list[Line]:
    out = []
    for line in lines:
        value = orjson.loads(line["value"]) if line["topic"].endswith(stem) else None
        if value is not None and match(value):
            value.update(fields)
            line = {**line, "value": orjson.dumps(value).decode()}
        out.append(line)
    return out


async def test_a_faithful_copy_on_other_topics_agrees(played: Played, tmp_path: Path) -> None:
    # The control for the tests below: copying the records (timestamps kept) changes nothing.
    settings, message_id = await copy_message(played, "14", tmp_path)
    code, out, _ = explain_on(settings, message_id)
    assert code == 0, out
    assert "result: the replay agrees with everything published (3 command(s), 1 outcome(s)" in out


async def test_a_command_on_another_channel_and_an_outcome_with_another_result_are_flagged(
    played: Played, tmp_path: Path
) -> None:
    def tamper(lines: list[Line]) -> list[Line]:
        lines = _edit(lines, "retry-commands", lambda v: v["attempt"] == 1, channel="SMS")
        return _edit(lines, "outcomes", lambda v: v.get("type") == "outcome", result="FAILED")

    settings, message_id = await copy_message(played, "14", tmp_path, tamper)
    code, out, _ = explain_on(settings, message_id)
    assert code == 3, out
    assert "!!! 2 DIFFERENCE(S) between the replay and what was published" in out
    assert f'!!!   command {message_id}:1: channel: replay "RCS", published "SMS"' in out
    assert '!!!   outcome: result: replay "SUCCEEDED", published "FAILED"' in out
    assert f"=> command {message_id}:1 RCS reason FAILED   !!! DIFFERS from published" in out


async def test_a_published_command_the_replay_never_issues_and_a_differing_repeat_are_flagged(
    played: Played, tmp_path: Path
) -> None:
    def tamper(lines: list[Line]) -> list[Line]:
        commands = [ln for ln in lines if ln["topic"].endswith("retry-commands")]
        extra = orjson.loads(commands[-1]["value"])
        repeat = {
            **commands[0],
            "value": orjson.dumps({**orjson.loads(commands[0]["value"]), "reason": "TIMEOUT"}).decode(),
        }
        extra.update(attempt=2, commandId=f"{extra['messageId']}:2", channel="SMS")
        return [*lines, repeat, {**commands[-1], "value": orjson.dumps(extra).decode()}]

    settings, message_id = await copy_message(played, "13", tmp_path, tamper)  # WHATSAPP ERROR -> SMS
    code, out, _ = explain_on(settings, message_id)
    assert code == 3, out
    repeat = f'command {message_id}:0: reason: replay "INITIAL", published "TIMEOUT"'
    assert f"{repeat} (in repeat 1 of the published record)" in out
    assert f"command {message_id}:2: published, but the replay does not produce it" in out


async def test_an_undecodable_record_of_the_message_shows_as_dead_lettered_and_the_rest_replays(
    played: Played, tmp_path: Path
) -> None:
    def garbage(lines: list[Line]) -> list[Line]:
        first_status = next(ln for ln in lines if ln["topic"].endswith("delivery-status"))
        return [*lines, {**first_status, "value": "{not json", "headers": []}]

    settings, message_id = await copy_message(played, "16", tmp_path, garbage)
    code, out, _ = explain_on(settings, message_id, "--json")
    doc = orjson.loads(out)
    bad = [e for e in doc["timeline"] if e["summary"].startswith("undecodable")]
    assert len(bad) == 1, doc["timeline"]
    assert [r["rule"] for r in bad[0]["rules"]] == ["DEAD_LETTER"]
    assert bad[0]["outputs"][0]["type"] == "dead-letter"
    assert "not valid JSON" in bad[0]["outputs"][0]["reason"] or "JSON" in bad[0]["outputs"][0]["reason"]
    # a dead letter is not held against the published records: the rest agrees
    assert (code, doc["agrees"]) == (0, True), doc["differences"]


def test_a_time_range_bounds_the_scan_and_the_timers(played: Played) -> None:
    # Scenario 11 times out on WhatsApp after 6 s; up to 1 s after its request there is only the
    # request, its first command and WhatsApp's first statuses: no timer fired yet, nothing differs.
    message_id = played.rows["11"].message_id
    _, whole = explain_json(played, message_id)
    requested = whole["timeline"][0]["at"]
    code, doc = explain_json(played, message_id, "--since", requested, "--until", _plus(requested, 1000))
    assert (code, doc["agrees"]) == (0, True), doc["differences"]
    rules = [r["rule"] for e in doc["timeline"] for r in e["rules"]]
    assert "TIMEOUT" not in rules and rules[:2] == ["ACCEPTED", "INITIAL"]
    assert doc["records"] < whole["records"]  # (what is READ depends on the broker's offsets_for_times)
    until = to_ms(datetime.fromisoformat(requested)) + 1000
    assert all(to_ms(datetime.fromisoformat(e["at"])) <= until for e in doc["timeline"])
    assert doc["pendingTimer"] is not None  # the fallback timer, still to come at the range's end


def test_an_unknown_message_id_is_one_line_and_exit_1(played: Played) -> None:
    s = played.settings
    code, out, err = explain_on(s, "no-such-message")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no record of messageId 'no-such-message'" in err


def test_missing_topics_and_no_broker_are_one_line_and_exit_2(played: Played) -> None:
    code, out, err = explain_on(replace(played.settings, topic_prefix="typo."), "x")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "missing topic(s)" in err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = explain_on(replace(played.settings, bootstrap_servers=f"127.0.0.1:{port}"), "x")
    assert (code, out) == (2, "") and err.count("\n") == 1 and "cannot reach Kafka" in err


def _plus(rfc3339: str, ms: int) -> str:
    return format_ms(to_ms(datetime.fromisoformat(rfc3339)) + ms)


async def test_the_scan_reports_its_progress_up_to_every_record_it_read(played: Played) -> None:
    seen: list[Progress] = []
    ex = await explain_kafka(played.settings, played.rows["17"].message_id, progress=seen.append)
    assert seen and seen[-1].read == ex.scanned and ex.scanned <= seen[-1].total + len(ex.records)
    assert [p.read for p in seen] == sorted(p.read for p in seen)


def test_offsets_bound_the_scan_and_a_partial_replay_is_not_taken_for_the_truth(played: Played) -> None:
    # Scenario 16 without WhatsApp's ACCEPTED and SENT (read from the DELIVERED on): the decisions are
    # the same, but the outcome knows when it was accepted and sent, and the replay cannot.
    message_id = played.rows["16"].message_id
    _, whole = explain_json(played, message_id)
    statuses = [
        e for e in whole["timeline"] if e["record"] and e["record"]["topic"].endswith("delivery-status")
    ]
    delivered = next(e["record"]["offset"] for e in statuses if e["value"]["status"] == "DELIVERED")
    code, doc = explain_json(played, message_id, "--offsets", f"delivery-status={delivered}:")
    read = [
        e["record"]["offset"]
        for e in doc["timeline"]
        if e["record"] and "delivery-status" in e["record"]["topic"]
    ]
    assert read and min(read) == delivered and len(read) < len(statuses)
    assert code == 3
    # (the provider's message id came with the dispatcher's ACCEPTED, left out too)
    assert sorted(d["detail"].split(":")[0] for d in doc["differences"]) == [
        "attempts[0].providerMessageId",
        "attempts[0].statusTimes.ACCEPTED",
        "attempts[0].statusTimes.SENT",
    ], doc["differences"]
