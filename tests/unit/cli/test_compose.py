"""docker-compose.yml is valid Compose, checked by Compose itself where it is installed.

Uses the Compose v2 plugin (`docker compose`) or, failing that, the v1 `docker-compose` command;
skips, saying so, when neither exists. `config` validates the file without a Docker engine.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = {"kafka", "topics", "processor", "dispatcher", "gateway-sim", "webhook"}


def _compose() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


COMPOSE = _compose()
pytestmark = pytest.mark.skipif(
    COMPOSE is None, reason="neither the `docker compose` plugin nor `docker-compose` is installed"
)


def _config(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [*COMPOSE, "-f", str(path), "config", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )


def test_compose_file_is_valid() -> None:
    done = _config(COMPOSE_FILE, "-q")
    assert done.returncode == 0, done.stderr


def test_compose_file_runs_every_service() -> None:
    done = _config(COMPOSE_FILE, "--services")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == SERVICES


def test_compose_validation_catches_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: the same file with one misspelt key is refused."""
    broken = COMPOSE_FILE.read_text().replace("    depends_on:\n", "    depends_onn:\n", 1)
    assert broken != COMPOSE_FILE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = _config(tmp_path / "docker-compose.yml", "-q")
    assert done.returncode != 0
    assert "depends_onn" in done.stderr
