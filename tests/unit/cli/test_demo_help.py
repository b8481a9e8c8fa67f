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
    assert "default: start a local Tansu broker on a free port; KAFKA_BOOTSTRAP_SERVERS is not read" in text


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
