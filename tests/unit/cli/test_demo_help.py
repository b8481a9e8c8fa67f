"""``stream-app demo --help`` tells the truth about where the demo's broker comes from."""

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
