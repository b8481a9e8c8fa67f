"""OutageFilter: an outage's flood of aiokafka errors becomes a first line, reminders and an end."""

from __future__ import annotations

import logging

import pytest

from stream_app.kafka.outage import QUIET_S, REMINDER_S, OutageFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(
    name: str = "aiokafka.consumer.fetcher", level: int = logging.ERROR, msg: str = "Unable connect"
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (), None)


def test_first_error_passes_the_rest_are_held_and_reminded() -> None:
    clock = Clock()
    f = OutageFilter(clock)
    first = _record()
    assert f.filter(first) and first.getMessage().startswith("kafka unreachable")
    shown = 0
    for _ in range(int(REMINDER_S * 10)):  # aiokafka's pace: one error every 100 ms
        clock.now += 0.1
        rec = _record()
        if f.filter(rec):
            shown += 1
            assert "still unreachable after 30 s" in rec.getMessage()
            assert "aiokafka errors not shown" in rec.getMessage()
    assert shown == 1


def test_the_end_is_said_once_after_a_quiet_spell(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    f = OutageFilter(clock)
    f.filter(_record())
    clock.now += 1
    assert not f.filter(_record())
    f.tick()
    assert not caplog.records  # not quiet long enough yet
    clock.now += QUIET_S + 1
    with caplog.at_level(logging.WARNING, logger="stream_app.kafka"):
        f.tick()
        f.tick()
    assert [r.getMessage() for r in caplog.records] == [
        "kafka reachable again after 1 s (1 aiokafka errors not shown)"
    ]
    # The next error starts a new outage, shown again.
    assert f.filter(_record())


def test_other_loggers_and_lines_below_error_pass_untouched() -> None:
    f = OutageFilter(Clock())
    rebalancing = _record(
        name="aiokafka.consumer.group_coordinator",
        level=logging.WARNING,
        msg="Heartbeat failed for group g because it is rebalancing",
    )
    assert f.filter(rebalancing) and "unreachable" not in rebalancing.getMessage()  # a rebalance: no outage
    assert f.since is None
    f.filter(_record())
    ours = _record(name="stream_app.runtime", msg="event=turn_failed_retrying")
    info = _record(level=logging.INFO, msg="Updating subscribed topics")
    assert f.filter(ours) and ours.getMessage() == "event=turn_failed_retrying"
    assert f.filter(info)
