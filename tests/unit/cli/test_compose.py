"""docker-compose.yml: valid Compose, and state and broker lifetimes that match.

What is checked, and what is not:
- validity, by Compose itself (`config`, no Docker engine needed), with the Compose v2 plugin
  (`docker compose`) or the v1 `docker-compose` that `.ci/run` installs from Debian; those tests skip,
  saying so, where neither exists;
- the file's structure, read as YAML everywhere: a named volume for every piece of state (Kafka's log
  directory included), a healthcheck on every long-running service, and the start order;
- NOT checked: starting the stack. It needs the `apache/kafka` and `python` images, and this project's
  CI has no registry access; `docker compose up` was not run by any test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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
needs_compose = pytest.mark.skipif(
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


@needs_compose
def test_compose_file_is_valid() -> None:
    done = _config(COMPOSE_FILE, "-q")
    assert done.returncode == 0, done.stderr


@needs_compose
def test_compose_file_runs_every_service() -> None:
    done = _config(COMPOSE_FILE, "--services")
    assert done.returncode == 0, done.stderr
    assert set(done.stdout.split()) == SERVICES


@needs_compose
def test_compose_validation_catches_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: the same file with one misspelt key is refused."""
    broken = COMPOSE_FILE.read_text().replace("    depends_on:\n", "    depends_onn:\n", 1)
    assert broken != COMPOSE_FILE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    done = _config(tmp_path / "docker-compose.yml", "-q")
    assert done.returncode != 0
    assert "depends_onn" in done.stderr


#: Where the image keeps local state (Dockerfile: STREAM_APP_STATE_DIR).
STATE_DIR = "/var/lib/stream-app"
#: The services that keep local state there; the dispatcher keeps none (its sent log is a topic).
STATEFUL = {"processor", "webhook"}
#: The services that run until stopped (topics runs once, gateway-sim is a stand-in).
LONG_RUNNING = {"kafka", "processor", "dispatcher", "webhook"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def named_volumes(service: dict[str, Any]) -> dict[str, str]:
    """``{container path: volume name}`` of a service's named volumes."""
    found = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        found[target] = source
    return found


def test_kafka_keeps_its_log_directory_in_a_named_volume() -> None:
    """Before: no volume, so `down` then `up` gave an empty Kafka beside old flow state."""
    kafka = compose()["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert named_volumes(kafka).get(log_dirs) in compose()["volumes"]


def test_every_stateful_service_keeps_its_state_in_a_named_volume() -> None:
    services = compose()["services"]
    for name in STATEFUL:
        assert named_volumes(services[name]).get(STATE_DIR) in compose()["volumes"], name
    assert not named_volumes(services["dispatcher"]), "the dispatcher keeps no local state"


def test_every_declared_volume_is_used_and_no_two_services_share_one() -> None:
    services = compose()["services"]
    used = [v for s in services.values() for v in named_volumes(s).values()]
    assert sorted(used) == sorted(compose()["volumes"])


def test_every_long_running_service_has_a_healthcheck_on_its_own_port() -> None:
    services = compose()["services"]
    for name in LONG_RUNNING:
        test = " ".join(services[name]["healthcheck"]["test"])
        if name != "kafka":
            port = test.split("127.0.0.1:")[1].split("/")[0]
            assert any(p.split(":")[1] == port for p in services[name]["ports"]), (name, port)


def test_start_order_waits_for_what_each_service_needs() -> None:
    services = compose()["services"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("processor", "dispatcher", "webhook"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # The simulator calls the webhook back from its first send.
    assert services["gateway-sim"]["depends_on"]["webhook"]["condition"] == "service_healthy"
