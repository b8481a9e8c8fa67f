"""The services' own options (webhook, poller, processor): a bad value is one line and exit 2, at
start, before the broker is asked anything."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.cli import main

UNREACHABLE = ["--bootstrap-servers", "127.0.0.1:1"]
ROOT = Path(__file__).resolve().parents[3]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_webhook_path_without_a_leading_slash_is_refused_regression(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--path dlr`` was starlette's AssertionError traceback ("Routed paths must start with '/'")."""
    monkeypatch.setenv("STREAM_APP_WEBHOOK_SECRET", "s3cret")
    with pytest.raises(SystemExit) as exit_:
        main(["webhook", "--path", "dlr", *UNREACHABLE])
    assert exit_.value.code == 2
    assert "argument --path: must start with /, e.g. /dlr, got 'dlr'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["webhook", "processor"])
def test_a_state_dir_that_is_a_file_is_refused_at_start_regression(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook's was a NotADirectoryError traceback; the processor's came only after it had
    joined its group, as "cannot open state store ...; if it is damaged, delete that directory"."""
    monkeypatch.setenv("STREAM_APP_WEBHOOK_SECRET", "s3cret")
    state = tmp_path / "state"
    state.write_text("a file")
    code, err = run(
        capsys,
        command,
        "--state-dir",
        str(state),
        "--metrics-port" if command == "processor" else "--port",
        "0",
        *UNREACHABLE,
    )
    assert code == 2
    assert err == f"stream-app: error: --state-dir {state}: not a directory\n"


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "1e12"])
def test_poller_max_age_out_of_range_is_refused_regression(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-age inf`` was an OverflowError traceback once Kafka answered; 0 and below were
    accepted, and then nothing was ever polled (every attempt already too old)."""
    code, err = run(capsys, "poller", f"--max-age={value}", "--metrics-port", "0", *UNREACHABLE)
    assert code == 2
    assert err.startswith("stream-app: error: --max-age: must be > 0 and at most 315360000 seconds, got ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("option", "value"), [("--max-interval", "inf"), ("--min-interval", "nan")])
def test_poller_intervals_must_be_finite(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "poller", f"{option}={value}", "--metrics-port", "0", *UNREACHABLE)
    assert code == 2
    assert err == "stream-app: error: --min-interval must be > 0 and <= --max-interval, both finite\n"


def test_gateway_sim_on_port_0_says_the_port_it_listens_on_regression() -> None:
    """``--port 0`` (documented: 0-65535) printed "listening on http://127.0.0.1:0": no way to
    find the port the system chose."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STREAM_APP_GATEWAY_API_KEY": "k"}
    argv = [sys.executable, "-m", "stream_app", "gateway-sim", "--port", "0"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = proc.stdout.readline().decode()  # the announcement is its first line
            match = re.fullmatch(r"gateway simulator listening on http://127\.0\.0\.1:(\d+)\n", line)
            assert match is not None, line
            assert int(match.group(1)) != 0
            with socket.create_connection(("127.0.0.1", int(match.group(1))), timeout=5):
                pass  # the simulator answers on the port it named
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.stdout.read()
            proc.stderr.read()
        assert proc.wait(timeout=60) == 0


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["dispatcher", "--gateway-url", ""], "--gateway-url"),
        (["poller", "--gateway-url", "ftp://gw"], "--gateway-url"),
        (["gateway-sim", "--webhook-url", "nourl"], "--webhook-url"),
    ],
)
def test_a_url_option_that_is_no_http_url_is_refused_regression(
    argv: list[str], option: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty ``--gateway-url`` was taken for the default in silence; the simulator accepted
    ``--webhook-url nourl`` and failed every callback later, in its log only."""
    monkeypatch.setenv("STREAM_APP_WEBHOOK_SECRET", "s3cret")
    with pytest.raises(SystemExit) as exit_:
        main([*argv, *UNREACHABLE] if argv[0] != "gateway-sim" else argv)
    assert exit_.value.code == 2
    assert (
        f"argument {option}: must start with http:// or https://, got {argv[2]!r}" in capsys.readouterr().err
    )


@pytest.mark.parametrize("timeout", ["nan", "0", "-1"])
def test_broker_start_timeout_nan_or_zero_is_refused_regression(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``nan`` never gave up on a broker that did not answer; 0 or less gave up at once."""
    assert main(["broker", "--port", "1", "--start-timeout", timeout]) == 2
    assert capsys.readouterr().err == (
        f"stream-app: error: --start-timeout: must be a number of seconds > 0, got {float(timeout):g}\n"
    )


def test_an_empty_default_is_shown_as_empty_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` printed ``default )`` for the topic prefix and the instance id."""
    with pytest.raises(SystemExit):
        main(["processor", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default )" not in text
    assert "STREAM_APP_TOPIC_PREFIX; default empty)" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dispatcher", "--concurrency", "0"], "--concurrency: every channel needs at least 1"),
        (["dispatcher", "--concurrency", "SMS=2.5"], "--concurrency: must be a whole number of at least 1"),
        (["dispatcher", "--rate", "SMS=-1"], "--rate: 'SMS=-1' must be >= 0 and finite"),
        (["dispatcher", "--metrics-port", "nope"], "--metrics-port: must be a port number 0-65535"),
        (["poller", "--metrics-port", "70000"], "--metrics-port: must be a port number 0-65535"),
    ],
)
def test_dispatcher_and_poller_options_name_the_option_given_regression(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dispatcher --concurrency 0`` said "STREAM_APP_DISPATCH_CONCURRENCY: ...", a variable the user
    never set (the CLI passes its options on through the variables); the processor names the option."""
    monkeypatch.delenv("STREAM_APP_DISPATCH_CONCURRENCY", raising=False)
    code, err = run(capsys, *argv, *UNREACHABLE)
    assert code == 2
    assert err.startswith(f"stream-app: error: {message}"), err
    assert err.count("\n") == 1 and "STREAM_APP_" not in err


@pytest.mark.parametrize(
    ("command", "var", "value", "message"),
    [
        ("dispatcher", "STREAM_APP_DISPATCH_CONCURRENCY", "0", "every channel needs at least 1"),
        ("dispatcher", "STREAM_APP_DISPATCH_RATE", "SMS=-1", "'SMS=-1' must be >= 0 and finite"),
        ("dispatcher", "STREAM_APP_DISPATCHER_METRICS_PORT", "nope", "must be a port number"),
        ("poller", "STREAM_APP_POLLER_METRICS_PORT", "70000", "must be a port number"),
    ],
)
def test_a_bad_value_from_the_environment_still_names_the_variable(
    command: str,
    var: str,
    value: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(var, value)
    code, err = run(capsys, command, *UNREACHABLE)
    assert code == 2
    assert err.startswith(f"stream-app: error: {var}: {message}"), err
