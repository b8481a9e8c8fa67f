"""The README's "Run it yourself" commands, run as written, each in its own process, reach an outcome.

The commands are read from the README itself, so the section cannot drift from what works. Only what
a shared test machine needs is changed, each for a stated reason: the session's broker stands in for
step 1 (``stream-app broker``) and its address for ``127.0.0.1:9092``; the simulator's and the
webhook's ports become free ones (so ``STREAM_APP_GATEWAY_URL`` names the simulator's, the README
relying on its default); the metrics endpoints are turned off and the topics get a prefix and app id
of their own, by environment (other tests share the broker and the machine); and ``stream-app`` is
this checkout's ``python -m stream_app``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson

from tests.support.kafka import unique_prefix

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"


def block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    after = text.split(marker, 1)[1]
    return after.split("```", 2)[1].split("\n", 1)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_readme_commands_reach_an_outcome(kafka_bootstrap: str, tmp_path: Path) -> None:
    commands = [line.split("#", 1)[0].strip() for line in block_after("<!-- run-it-yourself").splitlines()]
    commands = [c for c in commands if c]
    request = orjson.loads(block_after("<!-- request.json -->"))
    (tmp_path / "request.json").write_bytes(orjson.dumps(request))
    sim, hook = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        # a prefix of its own: the session's broker is shared by every test
        "STREAM_APP_TOPIC_PREFIX": unique_prefix(),
        "STREAM_APP_APP_ID": f"readme-{unique_prefix().rstrip('.')}",
        "STREAM_APP_METRICS_PORT": "0",
        "STREAM_APP_DISPATCHER_METRICS_PORT": "0",
        "STREAM_APP_GATEWAY_URL": f"http://127.0.0.1:{sim}",
    }
    services: list[tuple[str, subprocess.Popen[str]]] = []
    outcome = ""
    try:
        for command in commands:
            command = command.replace("127.0.0.1:9092", kafka_bootstrap)
            command = command.replace("19300", str(sim)).replace("19310", str(hook))
            if command.startswith("export "):
                name, _, value = command.removeprefix("export ").partition("=")
                env[name] = value
                continue
            background = command.endswith("&")
            argv = shlex.split(command.rstrip("&"))
            assert argv[0] == "stream-app", command
            if argv[1] == "broker":
                continue  # the session's broker is already running
            argv = [sys.executable, "-m", "stream_app", *argv[1:]]
            if background:
                proc = subprocess.Popen(
                    argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                )
                services.append((command, proc))
                continue
            done = subprocess.run(
                argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, f"{command}: {done.stderr}"
            outcome = done.stdout
    finally:
        logs = {}
        for _, proc in services:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for command, proc in services:
            try:
                logs[command] = proc.communicate(timeout=30)[1]
            except subprocess.TimeoutExpired:
                proc.kill()
                logs[command] = proc.communicate()[1] + "\n(did not stop within 30 s of SIGTERM)"
    line = outcome.strip()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\dZ  welcome-1  SUCCEEDED on WHATSAPP DELIVERED  path WHATSAPP\(DELIVERED\)  in \S+",
        line,
    ), (line, logs)
    for command, proc in services:
        assert proc.returncode == 0, (
            f"{command} exited {proc.returncode} on SIGTERM:\n{logs[command][-2000:]}"
        )
