"""``stream-app demo``: --help tells the truth about where the demo's broker comes from, and bad
options are refused before anything starts."""

from __future__ import annotations

import pytest

from stream_app.cli import main


def test_demo_help_shows_no_bootstrap_default_the_demo_never_uses(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression (issue 13): it showed `default localhost:9092`, but without the option the demo
    starts its own broker on a free port."""
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "localhost:9092;" not in text and "default localhost:9092" not in text
    assert (
        "default: start a local Tansu broker on a free port, plaintext: KAFKA_BOOTSTRAP_SERVERS is not read"
        in text
    )


@pytest.mark.parametrize("speed", ["nan", "inf", "0", "-1"])
def test_speed_nan_or_inf_passed_the_check_regression(
    speed: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nan passed ``speed <= 0`` (and inf made every timeout 0): the demo started with them. A bad
    speed also ended with exit 1 (SystemExit with a text), not the exit 2 of every other bad option."""
    import stream_app.demo.run

    async def play(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started")

    monkeypatch.setattr(stream_app.demo.run, "play", play)
    assert main(["demo", f"--speed={speed}", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert (
        capsys.readouterr().err == f"stream-app: error: --speed: must be a number > 0, got {float(speed)}\n"
    )


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-5"])
def test_timeout_nan_never_timed_out_regression(
    timeout: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--timeout nan`` passed (no comparison with nan is true: the demo would never give up);
    0 or less gave up at once. A one-line error now, exit 2, before anything starts."""
    import stream_app.demo.run

    async def play(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo started")

    monkeypatch.setattr(stream_app.demo.run, "play", play)
    assert main(["demo", f"--timeout={timeout}", "--bootstrap-servers", "127.0.0.1:1"]) == 2
    expected = f"stream-app: error: --timeout: must be a number of seconds > 0, got {float(timeout)}\n"
    assert capsys.readouterr().err == expected


def test_the_local_broker_demo_left_the_environments_security_settings_on_regression(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --bootstrap-servers the demo starts a plaintext Tansu, but its clients kept the
    environment's KAFKA_SECURITY_PROTOCOL and KAFKA_SASL_*: every handshake with it failed. They are
    left out for the local broker, saying so; other variables stay."""
    import stream_app.broker
    import stream_app.demo.run

    played: list[object] = []

    class Broker:
        bootstrap_servers = "127.0.0.1:1"

        def __init__(self, port: int) -> None:
            pass

        async def __aenter__(self) -> Broker:
            return self

        async def __aexit__(self, *exc: object) -> None:
            pass

    async def play(settings: object, **kwargs: object) -> list[object]:
        played.append(settings)
        return []

    monkeypatch.setattr(stream_app.broker, "LocalBroker", Broker)
    monkeypatch.setattr(stream_app.demo.run, "play", play)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("STREAM_APP_TOPIC_PREFIX", "kept.")
    assert main(["demo"]) == 0
    [settings] = played
    assert settings.security == {}  # type: ignore[attr-defined]
    assert settings.topic_prefix == "kept."  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert (
        "the local broker is plaintext: KAFKA_SASL_USERNAME, KAFKA_SECURITY_PROTOCOL left out "
        "(give --bootstrap-servers to play against your secured cluster)\n" in out
    )


def test_a_demo_against_a_named_broker_keeps_the_environments_security_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import stream_app.demo.run

    played: list[object] = []

    async def play(settings: object, **kwargs: object) -> list[object]:
        played.append(settings)
        return []

    monkeypatch.setattr(stream_app.demo.run, "play", play)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "alice")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "secret")
    assert main(["demo", "--bootstrap-servers", "127.0.0.1:1"]) == 0
    [settings] = played
    assert settings.security["security_protocol"] == "SASL_PLAINTEXT"  # type: ignore[attr-defined]
