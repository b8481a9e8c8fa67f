"""``stream-app topics``: bad options are refused before the broker is asked anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.cli import main


@pytest.mark.parametrize("factor", ["0", "-1"])
def test_replication_factor_below_one_fell_back_to_the_default_regression(
    factor: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """0 was read as "not given" (``or``) and the default was used without a word."""
    argv = ["topics", "create", f"--replication-factor={factor}", "--bootstrap-servers", "127.0.0.1:1"]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err
        == f"stream-app: error: --replication-factor: must be at least 1, got {factor}\n"
    )


def test_generate_into_a_file_is_one_line_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``topics generate --out FILE`` was a NotADirectoryError traceback from mkdir."""
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    assert main(["topics", "generate", "--out", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"stream-app: error: --out {target}: cannot write there (Not a directory)\n"
