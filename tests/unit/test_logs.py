"""One log format for every service: ``key=value`` lines, or JSON objects with the same keys."""

from __future__ import annotations

import argparse
import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from stream_app.cli import build_parser
from stream_app.cli._logs import configure_logging
from stream_app.errors import ConfigError
from stream_app.logs import JsonFormatter, KeyValueFormatter, configure, event, kv, mask

#: The commands that run until SIGTERM: each must take the logging options.
SERVICES = ("processor", "dispatcher", "webhook", "poller", "gateway-sim")


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _capture(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    logger = logging.getLogger(f"stream_app.test.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_kv_quotes_values_with_spaces_quotes_and_equals() -> None:
    assert (
        kv("x", a=1, b="two words", c='q"', d="k=v", e=None) == 'event=x a=1 b="two words" c="q\\"" d="k=v"'
    )


def test_mask_keeps_prefix_and_last_two_digits() -> None:
    assert mask("+393401234567") == "+39340*****67"
    assert mask("12345") == "*****"


def test_an_event_reads_the_same_in_both_formats() -> None:
    kv_logger, kv_out = _capture("kv")
    json_logger, json_out = _capture("json")
    for logger in (kv_logger, json_logger):
        event(logger, logging.INFO, "partitions_assigned", partitions="0,1", count=2, skipped=None)
    line = kv_out.getvalue().strip()
    assert (
        line.startswith("ts=") and " level=info logger=stream_app.test.kv event=partitions_assigned " in line
    )
    assert line.endswith("partitions=0,1 count=2")
    obj = orjson.loads(json_out.getvalue())
    assert obj["event"] == "partitions_assigned" and obj["level"] == "info"
    assert obj["partitions"] == "0,1" and obj["count"] == 2 and "skipped" not in obj
    assert obj["ts"].endswith("Z") and obj["logger"] == "stream_app.test.json"


def test_a_plain_message_becomes_a_log_event_in_both_formats() -> None:
    kv_logger, kv_out = _capture("kv")
    json_logger, json_out = _capture("json")
    for logger in (kv_logger, json_logger):
        logger.warning("dispatcher assigned partitions %s", "retry-commands[0]")
    assert (
        kv_out.getvalue().strip().endswith('event=log msg="dispatcher assigned partitions retry-commands[0]"')
    )
    obj = orjson.loads(json_out.getvalue())
    assert obj["event"] == "log" and obj["msg"] == "dispatcher assigned partitions retry-commands[0]"


def test_an_exception_is_one_line_in_both_formats() -> None:
    kv_logger, kv_out = _capture("kv")
    json_logger, json_out = _capture("json")
    for logger in (kv_logger, json_logger):
        try:
            raise ValueError("bad thing")
        except ValueError:
            logger.exception("failed")
    assert len(kv_out.getvalue().splitlines()) == 1
    assert kv_out.getvalue().strip().endswith('exc="ValueError: bad thing"')
    lines = json_out.getvalue().splitlines()
    assert len(lines) == 1 and orjson.loads(lines[0])["exc"] == "ValueError: bad thing"


def test_json_keeps_the_record_keys_when_a_field_has_the_same_name() -> None:
    logger, out = _capture("json")
    event(logger, logging.INFO, "x", level="spoofed", ts="spoofed")
    obj = orjson.loads(out.getvalue())
    assert obj["level"] == "info" and obj["ts"] != "spoofed"


def test_configure_refuses_an_unknown_format(restore_root: None) -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml'"):
        configure("info", "xml")


def _args(level: str | None = None, fmt: str | None = None) -> argparse.Namespace:
    return argparse.Namespace(log_level=level, log_format=fmt)


def test_the_option_wins_over_the_environment(restore_root: None) -> None:
    configure_logging(
        _args("warning", "json"), {"STREAM_APP_LOG_LEVEL": "debug", "STREAM_APP_LOG_FORMAT": "kv"}
    )
    root = logging.getLogger()
    assert root.level == logging.WARNING
    assert isinstance(root.handlers[0].formatter, JsonFormatter)


def test_the_environment_gives_the_defaults(restore_root: None) -> None:
    configure_logging(_args(), {"STREAM_APP_LOG_LEVEL": "DEBUG", "STREAM_APP_LOG_FORMAT": "json"})
    root = logging.getLogger()
    assert root.level == logging.DEBUG
    assert isinstance(root.handlers[0].formatter, JsonFormatter)
    configure_logging(_args(), {})
    assert root.level == logging.INFO
    assert isinstance(root.handlers[0].formatter, KeyValueFormatter)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STREAM_APP_LOG_FORMAT": "xml"}, "STREAM_APP_LOG_FORMAT"),
        ({"STREAM_APP_LOG_LEVEL": "loud"}, "STREAM_APP_LOG_LEVEL"),
    ],
)
def test_a_bad_environment_value_is_a_one_line_config_error(
    env: dict[str, str], named: str, restore_root: None
) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        configure_logging(_args(), env)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("command", SERVICES)
def test_every_service_takes_the_same_logging_options(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {opt for action in sub.choices[command]._actions for opt in action.option_strings}
    assert {"--log-level", "--log-format"} <= options
    parsed = parser.parse_args([command, "--log-format", "json", "--log-level", "debug"])
    assert (parsed.log_format, parsed.log_level) == ("json", "debug")
