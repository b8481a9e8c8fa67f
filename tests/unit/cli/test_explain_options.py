"""``stream-app explain``'s options: bad ones are refused in one line before anything is read."""

from __future__ import annotations

import contextlib
import io

import pytest

from stream_app.cli import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", "m-1", "--bootstrap-servers", "127.0.0.1:1", *argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (
            ["--since", "yesterday"],
            "--since: 'yesterday' is neither an RFC 3339 time nor an age like 30m, 2h, 7d",
        ),
        (["--until", "2026-04-09T10:00:00"], "--until: '2026-04-09T10:00:00' needs an offset (Z or +02:00)"),
        (
            ["--offsets", "send-requests:5"],
            "--offsets: 'send-requests:5' is not TOPIC=FROM:TO with TOPIC one of",
        ),
        (["--offsets", "nope=1:2"], "--offsets: 'nope=1:2' is not TOPIC=FROM:TO"),
        (["--offsets", "outcomes=a:"], "--offsets: 'outcomes=a:': FROM and TO must be whole numbers"),
        (["--tolerance", "-1"], "--tolerance: must be >= 0"),
        (
            ["--from-file", "x.jsonl", "--export", "y.jsonl"],
            "--from-file reads no topic: --export and --offsets",
        ),
    ],
)
def test_bad_options_are_one_line_and_exit_2(argv: list[str], complaint: str) -> None:
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err.startswith(f"stream-app: error: {complaint}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--since", "1h", "--until", "2h"], "--until must be later than --since"),
        (["--offsets", "send-requests=5:1"], "--offsets: 'send-requests=5:1': FROM must be below TO"),
        (["--offsets", "outcomes=7:7"], "--offsets: 'outcomes=7:7': FROM must be below TO"),
        (["--offsets", "outcomes=-3:"], "--offsets: 'outcomes=-3:': offsets are 0 or more"),
    ],
)
def test_a_range_that_holds_nothing_is_refused_not_scanned_regression(
    argv: list[str], complaint: str
) -> None:
    """``--since 1h --until 2h`` (the wrong way round) scanned nothing and said "no record of
    messageId", exit 1; ``--offsets send-requests=5:1`` replayed without the request and reported
    the published command as a difference, exit 3. ``report`` already refused such a range."""
    code, out, err = run(*argv)
    assert (code, out) == (2, "")
    assert err == f"stream-app: error: {complaint}\n"


@pytest.mark.parametrize("message_id", [""])
def test_an_empty_message_id_is_refused_regression(message_id: str) -> None:
    """``explain ''`` scanned the topics for the empty key and answered "no record", exit 1."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["explain", message_id, "--bootstrap-servers", "127.0.0.1:1"])
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue() == "stream-app: error: MESSAGE_ID: must not be empty\n"


def test_help_teaches_the_timeline_the_export_format_and_the_exit_statuses() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["explain", "--help"])
    text = out.getvalue()
    for needle in (
        "WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s -> SMS, reason TIMEOUT",
        "--from-file",
        '"topic": "send-requests"',
        "3 the replay and the published records differ",
        "1 no record of that messageId",
    ):
        assert needle in text


def test_a_long_scan_reports_its_progress_on_stderr_once_a_second() -> None:
    from stream_app.cli.explain import _Progress
    from stream_app.explain import Progress

    err = io.StringIO()
    show = _Progress()
    with contextlib.redirect_stderr(err):
        show(Progress(read=5_000, total=120_000, elapsed=0.4))  # a short scan says nothing
        show(Progress(read=30_000, total=120_000, elapsed=1.1))
        show(Progress(read=31_000, total=120_000, elapsed=1.5))  # not a second since the last line
        show(Progress(read=90_000, total=120_000, elapsed=2.2))
    assert err.getvalue().splitlines() == [
        "scanning: 30,000 of 120,000 records (25%), 1 s",
        "scanning: 90,000 of 120,000 records (75%), 2 s",
    ]


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-inf"])
def test_tolerance_nan_or_inf_was_a_traceback_regression(tolerance: str) -> None:
    """``nan`` passed the ``< 0`` check and ``round()`` raised ValueError (OverflowError for inf)."""
    code, out, err = run(f"--tolerance={tolerance}", "--from-file", "/dev/null")
    assert (code, out) == (2, "")
    assert err.startswith("stream-app: error: --tolerance: must be >= 0 and finite (seconds), got ")
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [["--since", "9" * 400 + "d"], ["--until", "9999-12-31T00:00:00Z"]])
def test_time_outside_the_contract_range_overflowed_regression(argv: list[str]) -> None:
    """A few hundred digits of age made round() raise OverflowError; year 9999 is past any record."""
    code, out, err = run(*argv, "--from-file", "/dev/null")
    assert (code, out) == (2, "")
    assert err == (
        f"stream-app: error: {argv[0]}: {argv[1]!r} is outside the times from 0001-01-01T00:00:00Z "
        "to before 9000-01-01T00:00:00Z\n"
    )
