"""``stream-app topics|send|outcomes`` against a real broker (the session's ``kafka_bootstrap``).

The CLI runs in-process through ``stream_app.cli.main`` (its ``run`` functions own their event loop,
so these tests are synchronous) or as a real subprocess where a process boundary matters (follow,
SIGTERM, the processor). Each test names its topics under its own prefix.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from stream_app.cli import main
from stream_app.config import Settings
from stream_app.contracts import (
    AttemptEnd,
    AttemptSummary,
    CancelRequest,
    Channel,
    LateStatus,
    Outcome,
    Result,
    SendRequest,
    Status,
    decode_request,
    encode,
    from_ms,
)
from stream_app.kafka.partitioner import partition_of
from tests.support.kafka import consume_until, create_topics, produce, produce_batch, unique_prefix

DEST = "+393401234567"
CLI = [sys.executable, "-m", "stream_app"]


@pytest.fixture
def env(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A unique prefix in the environment, as a user would export it; the matching settings."""
    prefix = unique_prefix()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", prefix)
    yield Settings(bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, partitions=3)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def topic_partitions(bootstrap: str, names: list[str]) -> dict[str, int]:
    async def go() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            present = set(await admin.list_topics())
            wanted = [n for n in names if n in present]
            described = await admin.describe_topics(wanted) if wanted else []
            return {d["topic"]: len(d["partitions"]) for d in described}
        finally:
            await admin.close()

    return asyncio.run(go())


def topic_config(bootstrap: str, name: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            return {entry[0]: entry[1] for entry in response.resources[0][4]}
        finally:
            await admin.close()

    return asyncio.run(go())


def all_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [
        t.send_requests,
        t.delivery_status,
        t.retry_commands,
        t.outcomes,
        t.dead_letters,
        t.changelog,
        t.sentlog,
        t.channel_control,
    ]


# ---------------------------------------------------------------------------------------- topics


def test_topics_create_makes_every_topic_under_the_prefix_and_is_idempotent(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "topics", "create", "--partitions", "3")
    assert (code, err) == (0, "")
    names = all_names(env)
    assert all(n.startswith(env.topic_prefix) for n in names)
    assert env.topics.changelog == f"{env.topic_prefix}fallback-processor-flows-changelog"
    for name in names:
        assert f"created  {name} (3 partitions, replication 1)" in out
    assert out.rstrip().endswith(f"8 created, 0 already there on {env.bootstrap_servers}")
    assert topic_partitions(env.bootstrap_servers, names) == dict.fromkeys(names, 3)
    changelog = topic_config(env.bootstrap_servers, env.topics.changelog)
    assert (changelog["cleanup.policy"], changelog["delete.retention.ms"]) == ("compact", "86400000")
    assert topic_config(env.bootstrap_servers, env.topics.outcomes)["retention.ms"] == str(
        30 * 24 * 3600 * 1000
    )

    code, out, err = cli(capsys, "topics", "create", "--partitions", "3")
    assert (code, err) == (0, "")
    assert "created " not in out
    for name in names:
        assert f"exists   {name} (3 partitions)" in out
    assert out.rstrip().endswith("0 created, 8 already there on " + env.bootstrap_servers)


def test_topics_create_takes_partitions_from_the_environment(
    env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_APP_PARTITIONS", "2")
    assert cli(capsys, "topics", "create")[0] == 0
    assert set(topic_partitions(env.bootstrap_servers, all_names(env)).values()) == {2}


def test_topics_create_follows_existing_co_partitioned_topics(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.send_requests], partitions=2))
    code, out, err = cli(capsys, "topics", "create", "--partitions", "4")
    assert code == 0
    assert err.startswith(
        "stream-app: warning: existing co-partitioned topics have 2 partitions, not 4: creating "
    )
    assert err.count("\n") == 1
    assert f"exists   {env.topics.send_requests} (2 partitions)" in out
    assert set(topic_partitions(env.bootstrap_servers, all_names(env)).values()) == {2}


def test_topics_create_without_a_count_follows_existing_topics_loudly(
    env: Settings, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 13): a delivery-status auto-created with the broker's count was followed
    silently, so every topic got that count and nobody was told how to repair it."""
    monkeypatch.delenv("STREAM_APP_PARTITIONS", raising=False)
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.delivery_status], partitions=2))
    code, out, err = cli(capsys, "topics", "create")
    assert code == 0
    assert "7 created, 1 already there" in out
    assert err.count("\n") == 1
    assert err.startswith("stream-app: warning: existing co-partitioned topics have 2 partitions, not 12: ")
    assert f"If {env.topics.delivery_status} were created by accident" in err
    assert "delete them (their records are lost) and run `stream-app topics create` again" in err
    assert err.rstrip().endswith("run it with --partitions 2")
    assert set(topic_partitions(env.bootstrap_servers, all_names(env)).values()) == {2}


def test_topics_create_warns_about_an_existing_changelog_that_is_not_compacted(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.changelog], partitions=3))  # plain: delete
    code, out, err = cli(capsys, "topics", "create", "--partitions", "3")
    assert code == 0
    assert err == (
        f"stream-app: warning: {env.topics.changelog} has cleanup.policy=delete, the catalogue says compact; "
        "existing topics are left as they are: change it with kafka-configs.sh --alter --entity-type topics "
        f"--entity-name {env.topics.changelog} --add-config cleanup.policy=compact\n"
    )
    assert "7 created, 1 already there" in out
    # the topics it created itself have the catalogue's policy, so a second run is quiet about them
    assert cli(capsys, "topics", "create")[2].count("warning") == 1


def test_topics_create_refuses_when_co_partitioned_topics_disagree(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.send_requests], partitions=2))
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.delivery_status], partitions=3))
    code, out, err = cli(capsys, "topics", "create")
    assert (code, out) == (2, "")
    assert err == (
        "stream-app: error: co-partitioned topics need one partition count, got "
        f"{env.topics.send_requests}=2, {env.topics.delivery_status}=3; partition p of each must hold the "
        "same messageIds: delete and re-create the odd ones with the others' count (their records are "
        "lost) or use a new STREAM_APP_TOPIC_PREFIX\n"
    )
    assert set(topic_partitions(env.bootstrap_servers, all_names(env))) == {
        env.topics.send_requests,
        env.topics.delivery_status,
    }  # nothing else was created


def test_topics_list_reports_missing_then_present(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "topics", "list")
    assert code == 1
    assert f"{env.topics.outcomes}  " in out and "missing" in out
    assert err.startswith("missing: ")
    cli(capsys, "topics", "create", "--partitions", "3")
    code, out, err = cli(capsys, "topics", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["TOPIC", "PARTITIONS", "KEY", "VALUES"]
    assert lines[1].split()[:3] == [env.topics.send_requests, "3", "messageId"]
    assert len(lines) == 1 + len(all_names(env))  # a header, then every topic


# ------------------------------------------------------------------------------------------ send


def test_send_from_flags_is_keyed_by_message_id_and_murmur2_partitioned(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    code, out, err = cli(
        capsys,
        "send",
        "--message-id", "order-42",
        "--destination", DEST,
        "--chain", "WhatsApp:600:delivered,RCS:300,sms",
        "--content-json", 'SMS={"sender": "Shop", "text": "hi"}',
        "--ttl", "3600",
        "--traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    assert (code, err) == (0, "")
    [record] = asyncio.run(consume_until(env.bootstrap_servers, env.topics.send_requests, count=1))
    assert (
        out == f"sent request order-42 to {env.topics.send_requests} partition {record.partition} offset 0\n"
    )
    assert record.key == b"order-42"
    # the Java client's partitioner: toPositive(murmur2(key)) % N
    assert record.partition == (murmur2(b"order-42") & 0x7FFFFFFF) % 3
    assert dict(record.headers)["traceparent"] == b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    request = decode_request(record.value)
    assert isinstance(request, SendRequest)
    assert [s.channel for s in request.channels] == [Channel.WHATSAPP, Channel.RCS, Channel.SMS]
    assert request.channels[2].content == {"sender": "Shop", "text": "hi"}
    assert request.ttl == 3600 and request.requested_at is not None
    assert orjson.loads(record.value)["schemaVersion"] == 1


def test_send_from_a_file_and_from_stdin(
    env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    path = tmp_path / "request.json"
    as_written = {
        "messageId": "f-1",
        "destination": DEST,
        "channels": [{"channel": "sms"}],
        "futureField": [1],
    }
    path.write_bytes(orjson.dumps(as_written, option=orjson.OPT_INDENT_2))
    assert cli(capsys, "send", "--file", str(path))[0] == 0

    lines = b"\n".join(
        orjson.dumps({"messageId": f"s-{i}", "destination": DEST, "channels": [{"channel": "sms"}]})
        for i in range(3)
    )
    monkeypatch.setattr(sys, "stdin", _Stdin(lines))
    code, out, _ = cli(capsys, "send", "--file", "-")
    assert code == 0 and out.count("sent request s-") == 3

    code, out, _ = cli(capsys, "send", "--cancel", "s-1", "--reason", "paid", "--wait", "0")
    assert code == 0 and out.startswith("sent cancel s-1 to ")

    records = asyncio.run(consume_until(env.bootstrap_servers, env.topics.send_requests, count=5))
    decoded = {(r.key, type(decode_request(r.value)).__name__) for r in records}
    assert decoded == {
        (b"f-1", "SendRequest"),
        (b"s-0", "SendRequest"),
        (b"s-1", "SendRequest"),
        (b"s-2", "SendRequest"),
        (b"s-1", "CancelRequest"),
    }
    # a file's request is published as written (compacted): unknown fields survive for newer readers
    assert next(r.value for r in records if r.key == b"f-1") == orjson.dumps(as_written)
    cancel = next(decode_request(r.value) for r in records if b'"cancel"' in r.value)
    assert cancel == CancelRequest(type="cancel", message_id="s-1", reason="paid")


class _Stdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["--destination", "3401234567", "--chain", "SMS"],
            "request: destination: must be E.164, '+' then 8 to 15 digits",
        ),
        (
            ["--destination", DEST, "--chain", "SMS,FAX"],
            "request: channels.1.channel: Input should be 'WHATSAPP', 'RCS', 'SMS' or 'VIBER'",
        ),
        (["--destination", DEST], "--chain required (or give the request with --file)"),
        (["--cancel", "m", "--ttl", "5"], "--cancel takes only --reason, not --ttl"),
        (["--cancel", "m", "--wait", "-1"], "--wait must be >= 0 seconds, got -1"),
        (["--destination", DEST, "--chain", "SMS", "--wait", "5"], "--wait goes with --cancel"),
    ],
    ids=["e164", "channel", "no-chain", "cancel-flags", "negative-wait", "wait-without-cancel"],
)
def test_send_refuses_a_bad_request_with_one_line_and_sends_nothing(
    env: Settings, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    code, out, err = cli(capsys, "send", *argv)
    assert (code, out, err) == (2, "", f"stream-app: error: {expected}\n")
    with pytest.raises(AssertionError, match="0 of 1 matching records"):
        asyncio.run(consume_until(env.bootstrap_servers, env.topics.send_requests, count=1, timeout=1.5))


def test_send_to_a_missing_topic_is_refused_and_does_not_create_it(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "send", "--destination", DEST, "--chain", "SMS")
    assert (code, out) == (2, "")
    assert err == (
        f"stream-app: error: missing topic(s) {env.topics.send_requests} on {env.bootstrap_servers}; "
        "run `stream-app topics create` with the same KAFKA_BOOTSTRAP_SERVERS, STREAM_APP_TOPIC_PREFIX "
        "and STREAM_APP_APP_ID (a mistyped prefix names topics that do not exist)\n"
    )
    assert topic_partitions(env.bootstrap_servers, [env.topics.send_requests]) == {}


# -------------------------------------------------------------------------------------- outcomes


T0 = from_ms(1_775_722_500_000)


def outcome_for(message_id: str, result: Result = Result.SUCCEEDED) -> Outcome:
    return Outcome(
        message_id=message_id,
        result=result,
        channel=Channel.SMS if result is Result.SUCCEEDED else None,
        status=Status.DELIVERED if result is Result.SUCCEEDED else None,
        attempt_count=1,
        attempts=[
            AttemptSummary(
                attempt=0,
                channel=Channel.SMS,
                issued_at=T0,
                last_status=Status.DELIVERED if result is Result.SUCCEEDED else Status.ERROR,
                ended_by=AttemptEnd.SUCCEEDED if result is Result.SUCCEEDED else AttemptEnd.FAILED,
            )
        ],
        requested_at=T0,
        completed_at=from_ms(1_775_722_504_210),
        duration_ms=4_210,
    )


def publish_outcomes(settings: Settings, records: list[Outcome | LateStatus]) -> None:
    for record in records:
        asyncio.run(
            produce(settings.bootstrap_servers, settings.topics.outcomes, record.message_id, encode(record))
        )


def test_a_cancel_names_every_missing_topic_regression(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """``send --cancel`` watches outcomes and publishes on send-requests: with neither there it named
    only outcomes, so a user who created that one met a second error for the other."""
    code, out, err = cli(capsys, "send", "--cancel", "m-1")
    assert (code, out) == (2, "")
    assert err.startswith(
        f"stream-app: error: missing topic(s) {env.topics.outcomes}, {env.topics.send_requests} on "
    )
    assert err.count("\n") == 1
    assert topic_partitions(env.bootstrap_servers, all_names(env)) == {}  # and none was created
    # one missing, either one: that one is named
    asyncio.run(create_topics(env.bootstrap_servers, [env.topics.outcomes], partitions=3))
    code, out, err = cli(capsys, "send", "--cancel", "m-1", "--wait", "1")
    assert (code, out) == (2, "")
    assert err.startswith(f"stream-app: error: missing topic(s) {env.topics.send_requests} on ")


def test_a_cancel_that_changes_nothing_says_so_and_exits_1(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression (issue 13): a cancel of an unknown or ended message printed "sent" like one that
    worked, and nothing ever followed."""
    cli(capsys, "topics", "create", "--partitions", "3")
    publish_outcomes(env, [outcome_for("done")])
    code, out, err = cli(capsys, "send", "--cancel", "done", "--wait", "5")
    assert (code, err) == (1, "")
    sent, said = out.splitlines()
    assert sent.startswith("sent cancel done to ")
    assert said.startswith("done had already ended SUCCEEDED on SMS DELIVERED at 2026-04-09T")
    assert said.endswith(": a cancel changes nothing for an ended message")

    code, out, err = cli(capsys, "send", "--cancel", "nobody", "--wait", "0.5")
    assert (code, err) == (1, "")
    assert out.splitlines()[1] == (
        "no outcome for nobody within 0.5 s: no message nobody is running (a cancel for an unknown "
        "messageId changes nothing), or the processor is stopped or behind; look again with "
        "`stream-app outcomes --message-id nobody`"
    )


def test_send_then_outcomes_round_trip(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    """send -> send-requests -> (a stand-in processor answers on outcomes) -> outcomes, text and --json."""
    cli(capsys, "topics", "create", "--partitions", "3")
    assert cli(capsys, "send", "--message-id", "rt-1", "--destination", DEST, "--chain", "SMS")[0] == 0
    [record] = asyncio.run(consume_until(env.bootstrap_servers, env.topics.send_requests, count=1))
    request = decode_request(record.value)
    assert isinstance(request, SendRequest)
    late = LateStatus(
        message_id=request.message_id,
        attempt=0,
        channel=Channel.SMS,
        status=Status.READ,
        occurred_at=T0,
        double_delivery=False,
    )
    publish_outcomes(env, [outcome_for(request.message_id), late, outcome_for("other", Result.FAILED)])

    code, out, err = cli(capsys, "outcomes")
    assert (code, err) == (0, "")
    assert sorted(out.splitlines()) == sorted(
        [
            "08:15:04Z  rt-1  SUCCEEDED on SMS DELIVERED  path SMS(DELIVERED)  in 4.2s",
            "08:15:00Z  rt-1  LATE  attempt 0 SMS READ after the end",
            "08:15:04Z  other  FAILED  path SMS(ERROR)  in 4.2s",
        ]
    )
    code, out, err = cli(capsys, "outcomes", "--json", "--message-id", "rt-1")
    assert (code, err) == (0, "")
    assert [orjson.loads(line) for line in out.splitlines()] == [
        orjson.loads(encode(outcome_for("rt-1"))),
        orjson.loads(encode(late)),
    ]


def test_outcomes_on_an_empty_topic_says_so_and_exits(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    assert cli(capsys, "outcomes") == (0, "", f"no outcomes on {env.topics.outcomes}\n")
    assert cli(capsys, "outcomes", "--json") == (0, "", "")


def _spawn(*argv: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(stream: Any, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return str(line)
        if not line:
            time.sleep(0.05)
    raise AssertionError(f"no line with {needle!r} within {timeout:g} s")


def test_outcomes_follow_shows_new_records_and_stops_at_max(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    publish_outcomes(env, [outcome_for("before")])
    proc = _spawn("outcomes", "--follow", "--max", "2", env=dict(os.environ))
    try:
        _wait_for_line(proc.stderr, f"following {env.topics.outcomes} from now")
        publish_outcomes(env, [outcome_for("after-1"), outcome_for("after-2", Result.FAILED)])
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert sorted(line.split()[1] for line in out.splitlines()) == ["after-1", "after-2"]  # not "before"


def test_outcomes_follow_from_now_skips_the_last_batch_of_old_records_regression(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: ``--follow`` started at ListOffsets(latest), which Tansu answers with the last
    batch's base offset + 1, so all but the first record of each partition's last batch of old
    outcomes were printed again (298 of a demo's outcomes). A batch, as the processor writes them."""
    cli(capsys, "topics", "create", "--partitions", "3")
    old = [f"old-{i}" for i in range(40) if partition_of(f"old-{i}".encode(), 3) == 0][:5]
    records = [(mid.encode(), encode(outcome_for(mid)), None) for mid in old]
    asyncio.run(produce_batch(env.bootstrap_servers, env.topics.outcomes, 0, records))
    proc = _spawn("outcomes", "--follow", "--max", "2", env=dict(os.environ))
    try:
        _wait_for_line(proc.stderr, f"following {env.topics.outcomes} from now")
        publish_outcomes(env, [outcome_for("new-1"), outcome_for("new-2", Result.FAILED)])
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert sorted(line.split()[1] for line in out.splitlines()) == ["new-1", "new-2"]


def test_outcomes_follow_from_the_beginning_still_shows_a_whole_old_batch(
    env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    old = [f"old-{i}" for i in range(40) if partition_of(f"old-{i}".encode(), 3) == 1][:4]
    records = [(mid.encode(), encode(outcome_for(mid)), None) for mid in old]
    asyncio.run(produce_batch(env.bootstrap_servers, env.topics.outcomes, 1, records))
    proc = _spawn("outcomes", "--follow", "--from-beginning", "--max", "5", env=dict(os.environ))
    try:
        _wait_for_line(proc.stderr, "from the beginning")
        publish_outcomes(env, [outcome_for("new")])
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    assert sorted(line.split()[1] for line in out.splitlines()) == sorted([*old, "new"])


def test_outcomes_follow_ends_cleanly_on_sigterm(env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "topics", "create", "--partitions", "3")
    publish_outcomes(env, [outcome_for("old")])
    proc = _spawn("outcomes", "--follow", "--from-beginning", "--json", env=dict(os.environ))
    try:
        _wait_for_line(proc.stderr, "from the beginning")
        first = proc.stdout.readline() if proc.stdout else ""
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill() if proc.poll() is None else None
    assert orjson.loads(first)["messageId"] == "old"
    assert proc.returncode == 0
    assert "Traceback" not in err and out == ""


# ---------------------------------------------------------------------------------- unreachable


@pytest.fixture
def refused() -> Iterator[str]:
    """An address that refuses connections for the whole test: a port bound but not listening.

    Held, so no other process (a broker another test starts) can take it meanwhile; a port merely
    found closed could be taken between the check and the command's connect.
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["topics", "create"],
        ["topics", "list"],
        ["send", "--destination", DEST, "--chain", "SMS"],
        ["outcomes"],
        ["outcomes", "--follow"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_unreachable_broker_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], refused: str
) -> None:
    address = refused
    started = time.monotonic()
    code, out, err = cli(capsys, *argv, "--bootstrap-servers", address)
    assert time.monotonic() - started < 10
    assert (code, out) == (2, "")
    assert err == (
        f"stream-app: error: cannot reach Kafka at {address} (no broker answered); is the broker running? "
        "Set KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers, or start one with `stream-app broker`\n"
    )


def test_unreachable_broker_in_a_real_process_prints_no_traceback(refused: str) -> None:
    address = refused
    environ = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": address}
    result = subprocess.run(
        [*CLI, "send", "--destination", DEST, "--chain", "SMS"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"stream-app: error: cannot reach Kafka at {address} ")
    assert result.stderr.count("\n") == 1, result.stderr  # one line: no aiokafka log noise, no traceback


# ------------------------------------------------------------------------------ with the processor


def test_send_and_cancel_through_the_processor_end_in_a_cancelled_outcome(
    env: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daily loop for real: topics create, processor, send, cancel, outcomes --follow."""
    # its own consumer group, so processors of other tests on the same broker never join it
    monkeypatch.setenv("STREAM_APP_APP_ID", f"cli-{env.topic_prefix.rstrip('.')}")
    cli(capsys, "topics", "create", "--partitions", "2")
    environ = {
        **os.environ,
        "STREAM_APP_STATE_DIR": str(tmp_path / "state"),
        "STREAM_APP_METRICS_PORT": "0",
    }
    processor = _spawn("processor", env=environ)
    follower = _spawn("outcomes", "--follow", "--from-beginning", "--max", "1", env=environ)
    try:
        _wait_for_line(follower.stderr, "following")
        _wait_for_line(processor.stderr, "event=partitions_assigned", timeout=60)
        # a step that waits 5 minutes: only the cancel can end this message within the test
        assert (
            cli(capsys, "send", "--message-id", "e2e-1", "--destination", DEST, "--chain", "SMS:300")[0] == 0
        )
        code, out, _ = cli(capsys, "send", "--cancel", "e2e-1", "--reason", "paid")
        assert (code, out.splitlines()[1]) == (0, "cancelled e2e-1: its outcome is CANCELLED (paid)")
        code, out, _ = cli(capsys, "send", "--cancel", "e2e-1", "--wait", "2")
        assert code == 1 and "e2e-1 had already ended CANCELLED at " in out
        try:
            out, err = follower.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            processor.send_signal(signal.SIGTERM)
            raise AssertionError(
                f"no outcome within 60 s; processor log:\n{processor.communicate(timeout=30)[1][-3000:]}"
            ) from None
    finally:
        for proc in (follower, processor):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        _, processor_err = processor.communicate(timeout=30)
        follower.kill() if follower.poll() is None else None
    assert follower.returncode == 0, err
    [line] = out.splitlines()
    assert line.split()[1:4] == ["e2e-1", "CANCELLED", "(paid)"], line
    assert "path SMS(" in line
    assert processor.returncode == 0, processor_err[-2000:]
