"""``stream-app report --from-file``: the outputs, and bad input (broken lines, wrong types, empty input)."""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.cli.report import parse_when
from stream_app.report import ReportError
from tests.support.outcomes import hand_built_lines


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def export(tmp_path: Path) -> Path:
    path = tmp_path / "outcomes.jsonl"
    path.write_bytes(b"\n".join(hand_built_lines()) + b"\n")
    return path


def test_the_table(export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--from-file", str(export))
    assert code == 0
    assert "7 messages, completed 2026-04-09T08:00:02Z .. 2026-04-09T09:00:00Z" in out
    assert "  time to success p50 / p95 / p99: 10.0s / 10m03s / 10m03s  (4 messages)" in out
    assert re.search(r"\n  WHATSAPP +6 +3 / 2 / 1 +900 s \(15m00s\) +50\.0% +0 \(0\.0%\)\n", out)
    for heading in ("RESULTS", "FALLBACK FUNNEL", "STEPS", "CHANNELS", "FAILURE REASONS", "LATE AND DOUBLE"):
        assert f"\n{heading}" in out
    assert "900 s (15m00s)" in out
    assert err.startswith(f"read 11 records of {export} in ")


def test_json_and_csv_carry_the_same_figures(export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--from-file", str(export), "--json", "--max-double-rate", "20%")
    rep: dict[str, Any] = orjson.loads(out)
    assert code == 0 and rep["source"] == str(export) and rep["messages"] == 7
    [wa] = [c for c in rep["channels"] if c["channel"] == "WHATSAPP"]
    assert wa["whatIf"]["recommendedFallbackAfter"] == 30

    code, out, _ = run(capsys, "--from-file", str(export), "--csv", "-q")
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["section", "subject", "metric", "value"]
    assert ["summary", "all", "messages", "7"] in rows
    assert ["funnel", "step 1", "reached", "3"] in rows
    assert ["whatIf", "WHATSAPP", "recommendedFallbackAfter", "900"] in rows
    assert ["failureReason", "WHATSAPP", "ERROR: expired number", "1"] in rows


def test_broken_lines_are_reported_one_by_one_and_the_rest_still_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = hand_built_lines()
    wrong_type = orjson.loads(lines[0])
    wrong_type["durationMs"] = "ten"
    mixed = [
        lines[0],
        b"{truncated",
        *lines[1:4],
        b"",
        orjson.dumps(wrong_type),
        b'"just a string"',
        *lines[4:],
        b"\xff\xfe not utf-8",
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed))  # no newline at the end: the last line still counts
    code, out, err = run(capsys, "--from-file", str(path), "--json", "-q")
    rep = orjson.loads(out)
    assert code == 0
    assert rep["messages"] == 7 and rep["read"]["bad"] == 4
    assert err.splitlines() == [
        f"stream-app report: {path} line 2: not JSON (unexpected character, expected a string key)",
        f'stream-app report: {path} line 7: durationMs: must be an integer, got "ten"',
        f'stream-app report: {path} line 8: must be a JSON object, got "just a string"',
        f"stream-app report: {path} line 16: not JSON (str is not valid UTF-8)",
    ]
    assert rep["read"]["badExamples"][0] == {
        "where": f"{path} line 2",
        "reason": "not JSON (unexpected character, expected a string key)",
    }


def test_many_broken_lines_show_the_first_twenty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("nope\n" * 30)
    code, out, err = run(capsys, "--from-file", str(path), "-q")
    assert code == 0 and "no outcomes to report" in out
    assert len(err.splitlines()) == 21 and "more unreadable records: counted, not shown" in err
    assert "30 unreadable, " in out


def test_an_empty_file_is_a_report_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    code, out, _ = run(capsys, "--from-file", str(path))
    assert code == 0
    assert out.splitlines()[1:] == [
        "0 messages",
        "read 0 records: 0 outcomes, 0 late statuses, 0 unreadable, 0 repeated outcomes dropped, "
        "0 filtered out",
        "",
        "no outcomes to report",
    ]
    code, out, _ = run(capsys, "--from-file", str(path), "--json", "-q")
    assert orjson.loads(out)["messages"] == 0
    code, out, _ = run(capsys, "--from-file", str(path), "--csv", "-q")
    assert ["summary", "all", "messages", "0"] in list(csv.reader(io.StringIO(out)))


def test_html_page_is_one_file_with_the_charts_data(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "r.html"
    code, _, err = run(capsys, "--from-file", str(export), "--html", str(page), "-q")
    assert code == 0 and f"wrote {page}" in err
    text = page.read_text()
    assert "<script src=" not in text and "<link" not in text  # nothing fetched
    for chart in ('"id":"funnel"', '"id":"latency"', '"id":"over-time"', '"id":"what-if"'):
        assert chart in text


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["--from-file", "/nonexistent/x.jsonl"],
            "stream-app: error: cannot read /nonexistent/x.jsonl: No such file",
        ),
        (
            ["--from-file", "x", "--since", "yesterday"],
            "stream-app: error: --since 'yesterday': give an RFC 3339",
        ),
        (
            ["--from-file", "x", "--since", "2026-04-09T10:00:00"],
            "stream-app: error: --since '2026-04-09T10:00:00'",
        ),
        (["--from-file", "x", "--since", "1h", "--until", "2h"], "stream-app: error: --until must be later"),
        (
            ["--from-file", "x", "--max-double-rate", "3"],
            "stream-app: error: --max-double-rate '3': give a share",
        ),
    ],
)
def test_bad_options_are_one_line(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.startswith(complaint) and err.count("\n") == 1


def test_html_without_plotly_says_how_to_install_it(
    export: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "plotly.offline", None)  # import fails as if not installed
    code, out, err = run(capsys, "--from-file", str(export), "--html", str(tmp_path / "r.html"))
    assert (code, out) == (2, "")
    assert err == (
        "stream-app: error: --html needs the plotly package: "
        "pip install 'stream-app[report]' (or: pip install plotly)\n"
    )


def test_since_takes_a_time_or_a_duration_back() -> None:
    assert parse_when("90s", "--since", now_ms=100_000) == 10_000
    assert parse_when("2d", "--since", now_ms=200_000_000) == 200_000_000 - 172_800_000
    assert parse_when("2026-04-09T10:00:00+02:00", "--since") == 1_775_721_600_000
    with pytest.raises(ReportError):
        parse_when("1712650000", "--since")


def test_stdin_and_progress(
    export: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(export.read_bytes())))
    code, out, err = run(capsys, "--from-file", "-", "--json")
    assert code == 0 and orjson.loads(out)["messages"] == 7
    assert err.startswith("read 11 records of stdin in ")


def test_progress_lines_say_how_far_and_how_fast() -> None:
    from stream_app.report.sources import Progress

    out = io.StringIO()
    progress = Progress("outcomes.jsonl", out=out, every=0)
    progress.tick(120_000, 0.43)
    progress.tick(240_000)
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"reading outcomes\.jsonl: 120,000 records \([\d,]+/s\) 43%", lines[0])
    assert re.fullmatch(r"reading outcomes\.jsonl: 240,000 records \([\d,]+/s\)", lines[1])
    quiet = io.StringIO()
    Progress("x", out=quiet, every=0, quiet=True).tick(1)
    assert quiet.getvalue() == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--since", "99999999999999999999d"],
        ["--since", "9" * 400 + "s"],  # a float of inf
        ["--until", "9999-12-31T00:00:00Z"],
    ],
)
def test_time_outside_the_contract_range_overflowed_later_regression(
    argv: list[str], export: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--since 99999999999999999999d`` was taken and failed in the report with an OverflowError."""
    code, out, err = run(capsys, "--from-file", str(export), "-q", *argv)
    assert (code, out) == (2, "")
    assert err == (
        f"stream-app: error: {argv[0]} {argv[1]!r}: is outside the times from 0001-01-01T00:00:00Z "
        "to before 9000-01-01T00:00:00Z\n"
    )
