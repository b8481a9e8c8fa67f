"""The HTML report opened in headless Chromium: every chart drawn, no error of any kind, no network.

Skips, saying why, only where Debian's ``chromium`` is not installed (``.ci/run`` installs it). The
screenshot is saved as an artifact (``artifacts/report-screenshot.png``, path printed) for a person
to look at; docs/report-screenshot.png in the README was taken by the same check
(``tests.support.chromium.check_page``) on the page of the README's example.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.cli import main
from tests.support.chromium import check_page, find_chromium
from tests.support.outcomes import hand_built_lines

ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="chromium is not installed (apt-get install -y chromium; .ci/run does)"
)


def test_the_html_report_draws_its_charts_without_errors_or_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "outcomes.jsonl"
    export.write_bytes(b"\n".join([*hand_built_lines(), b"{broken"]) + b"\n")
    page = tmp_path / "report.html"
    assert main(["report", "--from-file", str(export), "--html", str(page), "--quiet"]) == 0
    capsys.readouterr()

    shot = ARTIFACTS / "report-screenshot.png"
    check = check_page(page, shot)
    print(f"screenshot of the HTML report: {shot}")

    assert check.page_errors is None
    assert check.ready == "4"  # funnel, latency, outcomes over time, what-if: all four drawn
    assert check.chart_svgs >= 4
    assert check.exceptions == [] and check.console_errors == [] and check.log_errors == []
    # self-contained: the page itself is the only thing loaded (no CDN, no font, no image)
    assert [u for u in check.requests if not u.startswith(("file:", "data:", "about:"))] == []
    assert shot.stat().st_size > 20_000


def test_a_broken_page_is_caught(tmp_path: Path) -> None:
    """The check can fail: a page whose script throws is reported, not passed."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>console.error('bad'); undefinedThing();</script></body></html>")
    check = check_page(page, tmp_path / "broken.png", timeout=5)
    assert check.ready is None
    assert check.console_errors == ["bad"]
    assert any("undefinedThing" in e for e in check.exceptions)
