"""Gateway settings from the environment and the CLI's one-line refusals of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_app.cli import main
from stream_app.contracts import Channel
from stream_app.gateway.errors import GatewayConfigError
from stream_app.gateway.settings import GatewaySettings, gateway_from_env, parse_per_channel
from stream_app.gateway.testing import free_port


def test_per_channel_values() -> None:
    assert parse_per_channel("16", "X", 1) == dict.fromkeys(Channel, 16.0)
    mixed = parse_per_channel("4, SMS=32,whatsapp=8", "X", 1)
    assert (mixed[Channel.SMS], mixed[Channel.WHATSAPP], mixed[Channel.RCS]) == (32.0, 8.0, 4.0)
    assert parse_per_channel("", "X", 2) == dict.fromkeys(Channel, 2.0)


@pytest.mark.parametrize(
    ("raw", "message"), [("FAX=3", "unknown channel"), ("lots", "not NUMBER"), ("-1", ">= 0")]
)
def test_bad_per_channel_values_name_the_variable(raw: str, message: str) -> None:
    with pytest.raises(GatewayConfigError, match=f"STREAM_APP_DISPATCH_RATE: .*{message}"):
        gateway_from_env({"STREAM_APP_DISPATCH_RATE": raw})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAM_APP_GATEWAY_URL": "ftp://gw"}, "STREAM_APP_GATEWAY_URL: must start with http"),
        ({"STREAM_APP_GATEWAY_TIMEOUT_SECONDS": "soon"}, "not a number"),
        ({"STREAM_APP_GATEWAY_TIMEOUT_SECONDS": "0"}, "must be > 0"),
        ({"STREAM_APP_GATEWAY_TIMEOUT_SECONDS": "inf"}, "must be > 0 and finite"),
        ({"STREAM_APP_DISPATCH_CONCURRENCY": "SMS=0"}, "at least 1"),
    ],
)
def test_bad_gateway_settings(env: dict[str, str], message: str) -> None:
    with pytest.raises(GatewayConfigError, match=message):
        gateway_from_env(env)


def test_metrics_ports_default_beside_the_processors_and_off_in_process() -> None:
    s = gateway_from_env({})
    assert (s.dispatcher_metrics_port, s.poller_metrics_port) == (9465, 9466)  # the processor: 9464
    env = {"STREAM_APP_DISPATCHER_METRICS_PORT": "0", "STREAM_APP_POLLER_METRICS_PORT": " 19466 "}
    assert (gateway_from_env(env).dispatcher_metrics_port, gateway_from_env(env).poller_metrics_port) == (
        0,
        19466,
    )
    # built in-process (tests, the demo): no fixed port unless asked for
    assert (GatewaySettings().dispatcher_metrics_port, GatewaySettings().poller_metrics_port) == (0, 0)


@pytest.mark.parametrize("raw", ["nine", "-1", "65536", "9465.5", "0x10"])
@pytest.mark.parametrize("var", ["STREAM_APP_DISPATCHER_METRICS_PORT", "STREAM_APP_POLLER_METRICS_PORT"])
def test_bad_metrics_ports_name_the_variable(var: str, raw: str) -> None:
    with pytest.raises(GatewayConfigError, match=f"{var}: must be a port number 0-65535"):
        gateway_from_env({var: raw})


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("dispatcher", ["--metrics-port", "STREAM_APP_DISPATCHER_METRICS_PORT", "9465"]),
        ("poller", ["--metrics-port", "STREAM_APP_POLLER_METRICS_PORT", "9466"]),
        ("webhook", []),
    ],
)
def test_help_tells_where_metrics_are(
    command: str, names: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    assert "/metrics" in out and "/healthz" in out
    for name in names:
        assert name in out


def test_api_key_and_secret_never_in_repr() -> None:
    s = gateway_from_env({"STREAM_APP_GATEWAY_API_KEY": "k-123-secret", "STREAM_APP_WEBHOOK_SECRET": "hm4c"})
    assert s.api_key == "k-123-secret" and s.webhook_secret == b"hm4c"
    assert "k-123-secret" not in repr(s) and "hm4c" not in repr(s)


@pytest.mark.parametrize("command", ["gateway-sim", "dispatcher", "webhook", "poller"])
def test_help_teaches(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and len(out.splitlines()) > 10


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Metrics endpoints off unless a test asks: their fixed default ports may be taken on a shared host.
    off = {"STREAM_APP_DISPATCHER_METRICS_PORT": "0", "STREAM_APP_POLLER_METRICS_PORT": "0"}
    full = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_APP_")} | off | env
    return subprocess.run(
        [sys.executable, "-m", "stream_app", *args], env=full, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["webhook", "--port", "0"], {}, "STREAM_APP_WEBHOOK_SECRET: required"),
        (
            ["webhook", "--port", "0"],
            {"STREAM_APP_WEBHOOK_AUTH": "maybe"},
            "STREAM_APP_WEBHOOK_AUTH: must be one of hmac, token, none, got 'maybe'",
        ),
        (
            ["webhook", "--port", "0"],
            {"STREAM_APP_WEBHOOK_AUTH": "token"},
            "STREAM_APP_WEBHOOK_SECRET: required with STREAM_APP_WEBHOOK_AUTH=token",
        ),
        (
            ["gateway-sim", "--webhook-url", "http://127.0.0.1:1/dlr", "--webhook-auth", "token"],
            {},
            "--webhook-auth token needs STREAM_APP_WEBHOOK_SECRET",
        ),
        (["gateway-sim", "--rules", "/nonexistent/rules.json"], {}, "cannot read"),
        (["gateway-sim", "--webhook-url", "http://127.0.0.1:1/dlr"], {}, "needs STREAM_APP_WEBHOOK_SECRET"),
        (["gateway-sim", "--time-scale", "0"], {}, "--time-scale: must be > 0"),
        (["dispatcher"], {"STREAM_APP_GATEWAY_URL": "gw.local"}, "must start with http"),
        (["poller", "--min-interval", "0"], {}, "--min-interval"),
        (["dispatcher", "--metrics-port", "nope"], {}, "--metrics-port: must be a port"),
        (
            ["poller"],
            {"STREAM_APP_POLLER_METRICS_PORT": "99999"},
            "STREAM_APP_POLLER_METRICS_PORT: must be a port",
        ),
    ],
)
def test_bad_input_is_one_line(args: list[str], env: dict[str, str], message: str) -> None:
    done = _run(args, env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


def test_taken_port_and_unreachable_broker_are_one_line(tmp_path: Path) -> None:
    port = free_port()
    refused = f"127.0.0.1:{free_port(port + 1)}"
    env = {"KAFKA_BOOTSTRAP_SERVERS": refused, "STREAM_APP_STATE_DIR": str(tmp_path)}
    for args in (["dispatcher"], ["webhook", "--port", str(port)], ["poller"], ["processor"]):
        done = _run(args, env | {"STREAM_APP_WEBHOOK_SECRET": "s", "STREAM_APP_METRICS_PORT": "0"})
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "cannot reach Kafka" in done.stderr, done.stderr
        assert "AddressFamily" not in done.stderr, done.stderr  # regression: the processor said it in 3 lines
    import socket

    # A port the OS hands this socket: nobody else can hold it (re-binding the port the webhook was
    # given above raced with other processes of a busy machine).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        done = _run(["gateway-sim", "--port", str(busy)], {})
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{busy}" in done.stderr, done.stderr
    assert "choose another --port" in done.stderr and "--host" not in done.stderr, done.stderr


@pytest.mark.parametrize("host", ["256.1.1.1", "nope.invalid", "192.0.2.1"])
def test_a_bad_host_is_named_not_the_port_regression(host: str) -> None:
    """``gateway-sim --host 256.1.1.1`` said "choose another --port": the port was fine, the host is
    no address (256.1.1.1, nope.invalid) or none of this machine's (192.0.2.1, TEST-NET-1)."""
    done = _run(["gateway-sim", "--host", host, "--port", "0"], {})
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"--host {host} is not an address of this machine" in done.stderr, done.stderr
    assert "--port" not in done.stderr, done.stderr


def test_entry_points_importable_from_the_package() -> None:
    import stream_app.gateway as gateway

    for name in ("run_dispatcher", "run_poller", "run_simulator", "run_webhook"):
        assert callable(getattr(gateway, name))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        gateway.nope  # noqa: B018


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({"STREAM_APP_WEBHOOK_SECRET": "s"}, "hmac"),  # v1's default stays the default
        ({"STREAM_APP_WEBHOOK_SECRET": "s", "STREAM_APP_WEBHOOK_AUTH": "TOKEN"}, "token"),
        ({"STREAM_APP_WEBHOOK_AUTH": "none"}, "none"),  # no secret needed: an explicit opt-in
        ({"STREAM_APP_WEBHOOK_SECRET": "s", "STREAM_APP_WEBHOOK_AUTH": "none"}, "none"),
    ],
)
def test_webhook_auth_modes(env: dict[str, str], mode: str) -> None:
    assert gateway_from_env(env).webhook_auth_mode() == mode


def test_no_secret_and_no_explicit_none_is_refused() -> None:
    with pytest.raises(GatewayConfigError, match="STREAM_APP_WEBHOOK_AUTH=token with a secret, or none"):
        gateway_from_env({}).webhook_auth_mode()


@pytest.mark.parametrize(
    "var",
    [
        "STREAM_APP_GATEWAY_MAX_CONNECTIONS",
        "STREAM_APP_DISPATCH_MAX_IN_FLIGHT",
        "STREAM_APP_DISPATCH_CONCURRENCY",
    ],
)
@pytest.mark.parametrize("raw", ["inf", "1e999", "nan", "0.5", "2.5", "-inf"])
def test_counts_that_are_not_whole_numbers_regression(var: str, raw: str) -> None:
    """``inf``/``1e999`` raised OverflowError tracebacks (or were accepted, to crash the dispatcher's
    construction later) and ``0.5`` became 0: a count is a finite whole number of at least 1, and
    anything else is a one-line error naming the variable."""
    with pytest.raises(GatewayConfigError, match=f"^{var}: ") as caught:
        gateway_from_env({var: raw})
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("command", ["webhook", "gateway-sim"])
@pytest.mark.parametrize("port", ["70000", "-1", "x"])
def test_a_listen_port_out_of_range_was_an_overflow_traceback_regression(
    command: str, port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--port 70000`` got past argparse's ``int`` and bind() raised OverflowError: a traceback
    (for the webhook receiver only once it had reached Kafka). Now argparse's one-line error, exit 2."""
    with pytest.raises(SystemExit) as done:
        main([command, "--port", port])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        f"stream-app {command}: error: argument --port: must be a port number 0-65535, got {port!r}"
    )


@pytest.mark.parametrize("var", ["STREAM_APP_DISPATCHER_METRICS_PORT", "STREAM_APP_POLLER_METRICS_PORT"])
def test_a_non_ascii_digit_port_was_a_value_error_regression(var: str) -> None:
    """``'²'.isdigit()`` is true, so ``'²'`` passed the check and ``int()`` raised ValueError (a
    traceback); the ports now go through config.port_in_range, ASCII digits only."""
    with pytest.raises(GatewayConfigError, match=f"{var}: must be a port number 0-65535"):
        gateway_from_env({var: "²"})


@pytest.mark.parametrize("scale", ["nan", "inf"])
def test_gateway_sim_time_scale_nan_or_inf_is_one_line_regression(
    scale: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--time-scale nan`` passed the ``<= 0`` check (a NaN compares false) and ``inf`` too: the
    simulator started with timelines that never arrive (every ``after`` became NaN or infinite).
    Both are refused like 0, in one line, before anything starts."""
    from stream_app.gateway import simulator

    async def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the simulator started")

    monkeypatch.setattr(simulator, "run_simulator", never)
    assert main(["gateway-sim", "--port", "0", "--time-scale", scale]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--time-scale: must be > 0" in err, err
