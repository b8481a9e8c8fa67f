"""The poller's in-flight tracker: which attempts are polled, when, and when they end."""

from __future__ import annotations

from stream_app.contracts import Channel, DeliveryStatus, Status
from stream_app.gateway.poller import PollOptions, Tracker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _status(status: Status, attempt: int | None = 0, mid: str = "m") -> DeliveryStatus:
    return DeliveryStatus(message_id=mid, attempt=attempt, channel=Channel.SMS, status=status)


def test_accepted_starts_polling_and_backoff_doubles_to_the_cap() -> None:
    clock = Clock()
    t = Tracker(PollOptions(min_interval=1, max_interval=4), clock)
    t.observe(_status(Status.ACCEPTED))
    assert t.due(10) == []
    clock.now += 1
    [item] = t.due(10)
    assert item.command_id == "m:0"
    waits = []
    for _ in range(4):
        t.reschedule(item)
        waits.append(round(item.due - clock.now))
        clock.now = item.due
        assert t.due(10) == [item]
    assert waits == [2, 4, 4, 4]


def test_terminal_statuses_end_polling_and_late_accepted_does_not_restart_it() -> None:
    clock = Clock()
    t = Tracker(PollOptions(min_interval=1), clock)
    for i, end in enumerate((Status.ERROR, Status.EXPIRED, Status.REJECTED, Status.READ, Status.DELIVERED)):
        t.observe(_status(Status.ACCEPTED, i))
        t.observe(_status(end, i))
        t.observe(_status(Status.ACCEPTED, i))  # a repeat arriving after the end
    clock.now += 10
    assert t.due(10) == [] and t.attempts == {}


def test_until_read_keeps_polling_after_delivered_and_no_attempt_is_ignored() -> None:
    clock = Clock()
    t = Tracker(PollOptions(min_interval=1, until_read=True), clock)
    t.observe(_status(Status.ACCEPTED))
    t.observe(_status(Status.DELIVERED))
    t.observe(_status(Status.ACCEPTED, attempt=None, mid="other"))
    clock.now += 1
    [item] = t.due(10)
    assert item.rank == 3 and set(t.attempts) == {"m:0"}


def test_gives_up_after_max_age() -> None:
    clock = Clock()
    t = Tracker(PollOptions(min_interval=1, max_age=5), clock)
    t.observe(_status(Status.SENT))
    clock.now += 6
    assert t.due(10) == [] and "m:0" in t.ended and t.attempts == {}
    t.forget_ended(clock.now + 1)
    assert t.ended == {}
