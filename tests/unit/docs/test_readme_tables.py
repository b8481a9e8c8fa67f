"""README.md's settings and metrics must be the code's: every variable, default and metric, both ways.

``test_contract_doc.py`` keeps docs/contract.md in step; the README has tables of its own (the
processor's settings, the breaker's, the metrics ports, four metrics tables) that operators read
first, and nothing else compared them with the code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from stream_app.admin.errors import InvalidInput
from stream_app.cli import build_parser
from stream_app.config import ENV, Settings
from stream_app.gateway.metrics import DispatcherMetrics, PollerMetrics, WebhookMetrics
from stream_app.gateway.settings import ENV as GATEWAY_ENV
from stream_app.gateway.settings import BreakerConfig, gateway_from_env
from stream_app.logs import FORMAT_ENV, FORMATS, LEVEL_ENV
from stream_app.runtime.metrics import Metrics
from tests.unit.docs.test_contract_doc import ENV_WORD, check_mentions, code_env_vars, commands

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
#: ``KAFKA_SASL_*``: the README names a family of variables by its prefix.
ENV_FAMILY = re.compile(r"`((?:STREAM_APP|KAFKA)_[A-Z0-9_]*_)\*`")
#: A row of a metrics table: name, type, labels.
METRIC_ROW = re.compile(r"^\| `(stream_app_[a-z_]+)` \| (counter|gauge|histogram) \|\s*([^|]*?)\s*\|", re.M)
#: A row of a settings table: the variable, then its default.
SETTING_ROW = re.compile(r"^\| `((?:STREAM_APP|KAFKA)_[A-Z0-9_]+)`[^|]*\| ([^|]+?) \|", re.M)


def readme() -> str:
    return README.read_text(encoding="utf-8")


def build_and_test_env_vars() -> set[str]:
    """Variables read by the build (setup.py, scripts/) and the test harness (tests/, .ci/)."""
    found: set[str] = set()
    paths = [ROOT / "setup.py", *(ROOT / "scripts").glob("*.sh"), ROOT / ".ci" / "run"]
    paths += [p for p in (ROOT / "tests").rglob("*.py") if p.resolve() != Path(__file__).resolve()]
    for path in paths:
        if path.is_file():
            found |= set(ENV_WORD.findall(path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize("var", sorted(code_env_vars()))
def test_every_env_var_of_the_code_is_in_the_readme(var: str) -> None:
    text = readme()
    named = var in ENV_WORD.findall(text) or any(var.startswith(f) for f in ENV_FAMILY.findall(text))
    assert named, f"{var} is read by the code but not named in README.md"


def test_every_env_var_of_the_readme_is_read_somewhere() -> None:
    named = set(ENV_WORD.findall(readme()))
    unknown = named - code_env_vars() - build_and_test_env_vars()
    assert not unknown, f"README.md names variables nothing reads: {sorted(unknown)}"


def readme_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, kind, labels in METRIC_ROW.findall(readme()):
        row = (kind, tuple(label.strip() for label in labels.split(",") if label.strip()))
        assert rows.setdefault(name, row) == row, f"README.md lists {name} twice, differently"
    return rows


def code_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Name (as scraped: counters end in ``_total``), type and labels of every metric exported."""
    found: dict[str, tuple[str, tuple[str, ...]]] = {}
    for service in (Metrics(), DispatcherMetrics(), WebhookMetrics(), PollerMetrics()):
        registry: CollectorRegistry = service.registry
        for collector in list(registry._collector_to_names):
            labels = tuple(getattr(collector, "_labelnames", ()))
            for family in collector.describe():
                name = family.name + ("_total" if family.type == "counter" else "")
                found[name] = (family.type, labels)
    return found


def test_the_metrics_tables_are_the_metrics_exported() -> None:
    documented, exported = readme_metrics(), code_metrics()
    assert documented, "no metrics table found in README.md"
    missing = sorted(set(exported) - set(documented))
    unknown = sorted(set(documented) - set(exported))
    assert not missing, f"exported but not in README.md's metrics tables: {missing}"
    assert not unknown, f"in README.md's metrics tables but not exported: {unknown}"
    differ = {name: (row, exported[name]) for name, row in documented.items() if row != exported[name]}
    assert not differ, f"(type, labels) in README.md vs the code: {differ}"


def code_defaults() -> dict[str, object]:
    """Environment variable -> the default the code takes without it."""
    settings, gateway, breaker = Settings(), gateway_from_env({}), BreakerConfig()
    defaults: dict[str, object] = {var: getattr(settings, name) for name, var in ENV.items()}
    defaults[LEVEL_ENV], defaults[FORMAT_ENV] = "info", FORMATS[0]
    defaults[GATEWAY_ENV["dispatcher_metrics_port"]] = gateway.dispatcher_metrics_port
    defaults[GATEWAY_ENV["poller_metrics_port"]] = gateway.poller_metrics_port
    defaults[GATEWAY_ENV["breaker_failure_ratio"]] = breaker.failure_ratio
    defaults[GATEWAY_ENV["breaker_window"]] = breaker.window_seconds
    defaults[GATEWAY_ENV["breaker_min_calls"]] = breaker.min_calls
    defaults[GATEWAY_ENV["breaker_open"]] = breaker.open_seconds
    defaults[GATEWAY_ENV["breaker_max_open"]] = breaker.max_open_seconds
    return defaults


def _same(documented: str, default: object) -> bool:
    """A table's default cell (``9464``, ``259200 (72 h)``, ``` `info` ```, ``empty``) against the code's."""
    cell = documented.strip()
    if cell == "empty":
        return default == ""
    if cell.startswith("`"):
        return cell.split("`")[1] == str(default)
    number = re.match(r"[0-9.]+", cell)
    return number is not None and isinstance(default, int | float) and float(number[0]) == default


def test_the_settings_tables_defaults_are_the_code_defaults() -> None:
    rows = SETTING_ROW.findall(readme())
    defaults = code_defaults()
    checked = [var for var, _ in rows if var in defaults]
    assert len(checked) >= 15, f"settings tables not found in README.md (rows: {rows})"
    wrong = {var: cell for var, cell in rows if var in defaults and not _same(cell, defaults[var])}
    code = {var: defaults[var] for var in wrong}
    assert not wrong, f"README.md's defaults {wrong} differ from the code's {code}"


def test_the_checks_find_what_a_drifted_readme_would_hold() -> None:
    assert METRIC_ROW.findall("| `stream_app_x_total` | counter | channel, result | what |\n") == [
        ("stream_app_x_total", "counter", "channel, result")
    ]
    assert METRIC_ROW.findall("| `stream_app_y` | gauge | | what |\n") == [("stream_app_y", "gauge", "")]
    assert SETTING_ROW.findall("| `STREAM_APP_Z` / `--z` | 9464 | what |\n") == [("STREAM_APP_Z", "9464")]
    assert _same("259200 (72 h)", 259200.0) and not _same("259200", 600.0)
    assert _same("`kv`", "kv") and _same("empty", "") and not _same("`kv`", "json")


COMMAND_MENTION = re.compile(r"stream-app ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?([^`\n#]*)")


def test_every_command_and_option_the_readme_shows_exists() -> None:
    mentions = COMMAND_MENTION.findall(readme())
    assert len(mentions) > 20
    check_mentions(mentions, "README.md", "shows")


def test_every_send_of_a_file_the_readme_shows_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``send --file`` takes the request as written and refuses request options beside it (exit 2)."""
    from stream_app.cli.send import _requests

    request = readme().split("<!-- request.json -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    (tmp_path / "request.json").write_text(request, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    shown = re.findall(r"stream-app (send --file [^`\n#]*)", readme())
    assert shown
    for line in shown:
        args = build_parser().parse_args(line.split())
        try:
            _requests(args)
        except InvalidInput as exc:
            pytest.fail(f"README.md shows `stream-app {line.strip()}`, which is refused: {exc}")


def test_the_pages_point_at_no_design_file_outside_the_repository() -> None:
    """DESIGN.md lives beside the shared contract, outside any clone; a reader of a page cannot open it."""
    for page in (README, ROOT / "topics" / "README.md", *(ROOT / "docs").glob("*.md")):
        assert "DESIGN.md" not in page.read_text(encoding="utf-8"), page


def test_the_processor_settings_table_shows_each_option_of_the_processor() -> None:
    """A row of "setting (env / option)" without an option tells a reader there is none."""
    processor = commands()["processor"]
    option_of = {
        var: action.option_strings[0]
        for action in processor._actions
        for var in ENV_WORD.findall(action.help or "")[:1]
        if action.option_strings
    }
    table = readme().split("## Processor: settings and metrics", 1)[1].split("\nMetrics (", 1)[0]
    rows = re.findall(r"^\| `((?:STREAM_APP|KAFKA)_[A-Z0-9_]+)`([^|]*)\|", table, re.M)
    assert len(rows) >= 10
    for var, rest in rows:
        if var in option_of:
            assert f"`{option_of[var]}`" in rest, (
                f"README.md's processor table: {var} without {option_of[var]}"
            )
