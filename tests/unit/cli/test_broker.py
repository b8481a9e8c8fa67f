"""``stream-app broker``: its options are checked before any broker is started."""

from __future__ import annotations

import pytest

from stream_app.cli import main


@pytest.mark.parametrize("port", ["70000", "-1", "0"])
def test_broker_port_out_of_range_overflowed_at_bind_regression(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--port", port]) == 2
    err = capsys.readouterr().err
    assert err == f"stream-app: error: --port: must be between 1 and 65535, got {port}\n"
