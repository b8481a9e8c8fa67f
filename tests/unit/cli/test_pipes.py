"""Every command's output piped to a reader that stops early, and an input that is closed.

``stream-app outcomes | head`` and ``stream-app send --dry-run | head`` are how people look at a
stream; the pipe closing under the writer is the reader's choice, not an error. A closed stdin
(``<&-``, a supervisor that gives none) is bad input: one line, exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stream_app.cli import main

ROOT = Path(__file__).resolve().parents[3]


def _requests(path: Path, n: int) -> Path:
    lines = (
        orjson.dumps(
            {
                "messageId": f"m-{i}",
                "destination": "+393401234567",
                "channels": [{"channel": "SMS", "content": {"sender": "Shop", "text": "x" * 100}}],
            }
        )
        for i in range(n)
    )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _stream_app(*argv: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app", *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )


def test_output_piped_to_a_reader_that_stops_early_is_no_traceback_regression(tmp_path: Path) -> None:
    """``send --dry-run | head -1`` printed a BrokenPipeError traceback and exited 1."""
    requests = _requests(tmp_path / "requests.jsonl", 3000)  # far more than a pipe's buffer holds
    with _stream_app("send", "--file", str(requests), "--dry-run") as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        proc.stdout.close()  # what `head -1` does once it has its line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
    assert first.startswith(b'{"messageId":"m-0"')
    assert err == ""


def test_send_from_a_closed_stdin_is_one_line_regression(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``send --file - <&-``: sys.stdin is None, and ``.buffer`` of it was an AttributeError traceback."""
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["send", "--file", "-", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err == "stream-app: error: --file -: stdin is closed; give a file, or pipe the requests in\n"


def test_report_from_a_closed_stdin_is_one_line_regression(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report --from-file - <&-`` was the same AttributeError traceback."""
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["report", "--from-file", "-", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == "stream-app: error: --from-file -: stdin is closed; give a file, or pipe the export in\n"
