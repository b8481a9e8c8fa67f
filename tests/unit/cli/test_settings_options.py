"""The shared settings given as options (``--topic-prefix``, ``--partitions``, ...): a bad value is
one line naming what the user typed, before the broker is asked anything."""

from __future__ import annotations

import pytest

from stream_app.cli import main

UNREACHABLE = ["--bootstrap-servers", "127.0.0.1:1"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([*argv, *UNREACHABLE])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["topics", "create", "--partitions", "0"], "--partitions: must be between 1 and 10000"),
        (
            ["processor", "--metrics-port", "70000"],
            "--metrics-port: must be between 0 and 65535, got 70000",
        ),
        (["processor", "--max-flow-seconds", "0"], "--max-flow-seconds: must be > 0"),
        (
            ["processor", "--processing-guarantee", "maybe"],
            "--processing-guarantee: must be one of at_least_once, exactly_once, got 'maybe'",
        ),
        (["explain", "m-1", "--max-request-bytes", "10"], "--max-request-bytes: must be at least 1024"),
    ],
)
def test_a_value_out_of_range_names_the_option_given_regression(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--partitions 0`` said "STREAM_APP_PARTITIONS: must be ...", a variable the user never set."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err == f"stream-app: error: {complaint}\n"


def test_out_of_range_in_the_environment_still_names_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_APP_PARTITIONS", "0")
    code, _, err = run(capsys, "topics", "create")
    assert code == 2
    assert err == "stream-app: error: STREAM_APP_PARTITIONS: must be between 1 and 10000\n"


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["topics", "create", "--topic-prefix", "bad prefix."],
            "--topic-prefix: 'bad prefix.' may hold only ASCII letters, digits, '.', '_' and '-' "
            "(it starts every topic name)",
        ),
        (
            ["topics", "create", "--app-id", "team/app"],
            "--app-id: 'team/app' may hold only ASCII letters, digits, '.', '_' and '-' "
            "(it names the changelog and sent-log topics)",
        ),
        (
            ["topics", "list", "--topic-prefix", "p" * 240],
            "--topic-prefix: makes topic names longer than Kafka's 249 characters",
        ),
    ],
)
def test_a_prefix_or_app_id_kafka_refuses_as_a_topic_name_is_refused_regression(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``topics create --topic-prefix 'bad prefix'`` created 'bad prefixsend-requests' on the local
    broker (Apache Kafka refuses such names, one topic at a time, after the command has started)."""
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"stream-app: error: {complaint}") and err.count("\n") == 1
