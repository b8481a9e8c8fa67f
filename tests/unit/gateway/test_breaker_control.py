"""What the breakers publish on channel-control, and their probes: no broker, a fake gateway, a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from stream_app.contracts import Channel, ChannelControl, decode_control, encode
from stream_app.contracts.models import ChannelState, InFlight
from stream_app.gateway.breaker import Cause, Circuit, Transition
from stream_app.gateway.client import Accepted, RateLimited, Rejected, SendResult, Transient
from stream_app.gateway.control import BREAKER_REASON, Breakers, ControlView, record_for
from stream_app.gateway.metrics import DispatcherMetrics
from stream_app.gateway.settings import BreakerConfig

T0 = 1_775_000_000.0  # 2026-03-31T...Z: any wall-clock second
WA = Channel.WHATSAPP


def trip(at: float = T0, until: float = T0 + 60) -> Transition:
    return Transition(WA, Circuit.CLOSED, Circuit.OPEN, Cause.TRIPPED, at, until, 20, 15)


def probe_failed(at: float = T0 + 60, until: float = T0 + 180) -> Transition:
    return Transition(WA, Circuit.HALF_OPEN, Circuit.OPEN, Cause.PROBE_FAILED, at, until)


def recovered(at: float = T0 + 60) -> Transition:
    return Transition(WA, Circuit.HALF_OPEN, Circuit.CLOSED, Cause.PROBE_SUCCEEDED, at, None)


def control(state: str, reason: str | None = None, until: float | None = None) -> ChannelControl:
    body: dict[str, Any] = {"channel": "WHATSAPP", "state": state, "reason": reason}
    if until is not None:
        body["until"] = _iso(until)
    return ChannelControl.model_validate(body)


def _iso(seconds: float) -> str:
    from stream_app.contracts import from_ms

    return from_ms(int(seconds * 1000)).isoformat().replace("+00:00", "Z")


OPERATOR = "provider outage announced"
BREAKER = f"{BREAKER_REASON}: 15 of 20 gateway calls failed"


# ------------------------------------------------------------------------------ record_for (pure)


def test_a_trip_publishes_closed_with_until_wait_and_the_contract_key() -> None:
    record = record_for(trip(), None)
    assert record is not None
    wire = orjson.loads(encode(record))
    assert wire == {
        "schemaVersion": 1,
        "type": "channel-control",
        "channel": "WHATSAPP",
        "state": "CLOSED",
        "reason": "circuit breaker: 15 of 20 gateway calls failed",
        "until": _iso(T0 + 60),
        "inFlight": "WAIT",
        "at": _iso(T0),
    }
    assert record.key == "WHATSAPP"  # tenant null: the gateway is every tenant's
    assert decode_control(encode(record), b"WHATSAPP") == record  # what the processor will read


@pytest.mark.parametrize(
    ("current", "publishes"),
    [
        (None, True),
        (control("OPEN", "operator reopened"), True),
        (control("OPEN", f"{BREAKER_REASON}: probe succeeded"), True),
        (control("CLOSED", OPERATOR), False),  # closed with no until: nothing to add
        (control("CLOSED", OPERATOR, until=T0 + 3600), False),  # closed longer already
        (control("CLOSED", OPERATOR, until=T0 + 60), False),  # exactly as long
        (control("CLOSED", OPERATOR, until=T0 + 10), True),  # ours is longer: extend it
        (control("CLOSED", BREAKER, until=T0 + 56), False),  # another dispatcher tripped 4 s before
        (control("CLOSED", BREAKER, until=T0 + 54), True),  # 6 s shorter: extended
        (control("CLOSED", BREAKER, until=T0 + 120), False),  # another dispatcher tripped first
        (control("CLOSED", BREAKER, until=T0 - 1), True),  # an expired close is an open channel
    ],
)
def test_a_trip_publishes_only_what_the_topic_does_not_say_already(
    current: ChannelControl | None, publishes: bool
) -> None:
    assert (record_for(trip(), current) is not None) is publishes


def test_a_failed_probe_closes_again_with_the_later_until() -> None:
    record = record_for(probe_failed(), control("CLOSED", BREAKER, until=T0 + 60))
    assert record is not None
    assert (record.state, record.reason, record.in_flight) == (
        ChannelState.CLOSED,
        "circuit breaker: probe failed",
        InFlight.WAIT,
    )
    assert record.until is not None and record.until.timestamp() == T0 + 180
    # over an OPEN another dispatcher published: the failed probe is the newer evidence
    assert record_for(probe_failed(), control("OPEN", f"{BREAKER_REASON}: probe succeeded")) is not None
    # never shortens a longer close, an operator's or another dispatcher's
    assert record_for(probe_failed(), control("CLOSED", OPERATOR)) is None
    assert record_for(probe_failed(), control("CLOSED", BREAKER, until=T0 + 900)) is None


@pytest.mark.parametrize(
    ("current", "publishes"),
    [
        (control("CLOSED", BREAKER, until=T0 + 60), True),  # ours, or another dispatcher's
        (control("CLOSED", BREAKER, until=T0 - 5), True),  # expired: saying OPEN is still true
        (control("CLOSED", OPERATOR), False),  # an operator's close is never lifted by a probe
        (control("CLOSED", None, until=T0 + 60), False),  # no reason: not a breaker's
        (control("OPEN"), False),  # someone reopened it already
        (None, False),
    ],
)
def test_recovery_reopens_only_a_breakers_close(current: ChannelControl | None, publishes: bool) -> None:
    record = record_for(recovered(), current)
    assert (record is not None) is publishes
    if record is not None:
        assert (record.state, record.until, record.key) == (ChannelState.OPEN, None, "WHATSAPP")


def test_going_half_open_publishes_nothing() -> None:
    t = Transition(WA, Circuit.OPEN, Circuit.HALF_OPEN, Cause.PROBE_DUE, T0, None)
    assert record_for(t, None) is None


# ------------------------------------------------------------------------------ the view


def test_the_view_keeps_the_last_global_record_and_skips_the_rest() -> None:
    view = ControlView()
    closed = encode(control("CLOSED", OPERATOR))
    view.apply(b"WHATSAPP", closed)
    assert view.current[WA].state is ChannelState.CLOSED
    view.apply(b"acme/WHATSAPP", b'{"channel": "WHATSAPP", "tenant": "acme", "state": "OPEN"}')  # a tenant's
    view.apply(b"RCS", closed)  # under another channel's key: refused, as the processor refuses it
    view.apply(b"WHATSAPP", b"{not json")
    view.apply(b"WHATSAPP", b'{"channel": "WHATSAPP", "state": "AJAR"}')
    view.apply(None, closed)
    assert view.current == {WA: control("CLOSED", OPERATOR)}
    view.apply(b"WHATSAPP", None)  # a tombstone
    assert view.current == {}


# ------------------------------------------------------------------------------ Breakers, driven


class FakeGateway:
    def __init__(self) -> None:
        self.answers: list[SendResult] = []
        self.bodies: list[dict[str, Any]] = []

    async def send(self, channel: Channel, body: dict[str, Any]) -> SendResult:
        self.bodies.append(body)
        return self.answers.pop(0) if self.answers else Accepted("probe")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


FAILED = Transient("HTTP 503: down", maybe_sent=False)
BODY = {"destination": "+393401234500", "phoneNumberId": 5, "template": {"id": 42}, "messageId": "m:0"}


async def wait_for(predicate: Any, what: str) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what} not reached")


#: Trips on 4 calls with half of them failed; closed 5 s, then longer after each failed probe.
TRIP_ON_4 = BreakerConfig(
    failure_ratio=0.5, window_seconds=10, min_calls=4, open_seconds=5, max_open_seconds=60
)


@contextlib.asynccontextmanager
async def running_breakers(
    gateway: FakeGateway, clock: Clock, metrics: DispatcherMetrics
) -> AsyncIterator[tuple[Breakers, list[tuple[bytes, bytes]]]]:
    """Breakers (TRIP_ON_4) running in the background on a read view; yields them and what they publish."""
    sent: list[tuple[bytes, bytes]] = []

    async def publish(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    breakers = Breakers(TRIP_ON_4, gateway, publish, clock=clock, metrics=metrics)  # type: ignore[arg-type]
    breakers.view.ready.set()
    stop = asyncio.Event()
    runner = asyncio.create_task(breakers.run(stop))
    try:
        yield breakers, sent
    finally:
        stop.set()
        await runner


async def test_trip_probe_fail_probe_succeed_publishes_closed_closed_open() -> None:
    gateway, clock, metrics = FakeGateway(), Clock(), DispatcherMetrics()
    async with running_breakers(gateway, clock, metrics) as (breakers, sent):
        for _ in range(3):
            breakers.observe(WA, FAILED, BODY)
        breakers.observe(WA, Rejected(("NO",), http_status=422), BODY)  # about one message: a success
        breakers.observe(WA, RateLimited(1.0), BODY)  # not counted
        assert breakers.circuits[WA].state is Circuit.CLOSED
        breakers.observe(WA, FAILED, BODY)  # 4 of 5 failed
        await wait_for(lambda: len(sent) == 1, "CLOSED published")
        key, value = sent[0]
        first = decode_control(value, key)
        assert (key, first.state, first.until.timestamp() if first.until else None) == (
            b"WHATSAPP",
            ChannelState.CLOSED,
            T0 + 5,
        )
        assert metrics.breaker_state.labels("WHATSAPP")._value.get() == 2
        # until passes: a probe (a simulation send of the last body) that fails: CLOSED again, 10 s
        gateway.answers = [FAILED]
        clock.now = T0 + 5
        await wait_for(lambda: len(sent) == 2, "second CLOSED published")
        probe = gateway.bodies[0]
        assert probe["simulation"] is True and probe["messageId"].startswith("breaker-probe:WHATSAPP:")
        assert probe["destination"] == BODY["destination"] and BODY["messageId"] == "m:0"  # not changed
        second = decode_control(sent[1][1], sent[1][0])
        assert second.until is not None and second.until.timestamp() == T0 + 15
        assert second.reason == "circuit breaker: probe failed"
        # the next probe is accepted: OPEN
        clock.now = T0 + 15
        gateway.answers = [Accepted("sim")]
        await wait_for(lambda: len(sent) == 3, "OPEN published")
        third = decode_control(sent[2][1], sent[2][0])
        assert (third.state, third.until) == (ChannelState.OPEN, None)
        assert breakers.circuits[WA].state is Circuit.CLOSED
        assert metrics.breaker_state.labels("WHATSAPP")._value.get() == 0
    causes = [t.cause for t in breakers.transitions]
    assert causes == [
        Cause.TRIPPED,
        Cause.PROBE_DUE,
        Cause.PROBE_FAILED,
        Cause.PROBE_DUE,
        Cause.PROBE_SUCCEEDED,
    ]
    for cause, n in (("tripped", 1), ("probe_due", 2), ("probe_failed", 1), ("probe_succeeded", 1)):
        assert metrics.breaker_transitions.labels("WHATSAPP", cause)._value.get() == n
    assert metrics.breaker_probes.labels("WHATSAPP", "failed")._value.get() == 1
    assert metrics.breaker_probes.labels("WHATSAPP", "ok")._value.get() == 1
    assert metrics.channel_control.labels("WHATSAPP", "CLOSED")._value.get() == 2
    assert metrics.channel_control.labels("WHATSAPP", "OPEN")._value.get() == 1
    # other channels never moved
    assert all(b.state is Circuit.CLOSED for ch, b in breakers.circuits.items() if ch is not WA)


async def test_an_operators_close_is_left_alone_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    config = BreakerConfig(failure_ratio=0.5, window_seconds=10, min_calls=2, open_seconds=5)
    clock = Clock()
    sent: list[bytes] = []

    async def publish(key: bytes, value: bytes) -> None:
        sent.append(value)

    breakers = Breakers(config, FakeGateway(), publish, clock=clock, metrics=DispatcherMetrics())  # type: ignore[arg-type]
    breakers.view.apply(b"WHATSAPP", encode(control("CLOSED", OPERATOR)))
    breakers.view.ready.set()
    stop = asyncio.Event()
    runner = asyncio.create_task(breakers.run(stop))
    caplog.set_level("INFO", logger="stream_app.gateway.control")
    try:
        breakers.observe(WA, FAILED, BODY)
        breakers.observe(WA, FAILED, BODY)
        nothing = (
            "event=breaker_nothing_to_publish channel=WHATSAPP current=CLOSED "
            'reason="provider outage announced"'
        )
        await wait_for(lambda: nothing in caplog.text, "log line")
        clock.now = T0 + 5  # the probe succeeds, but the operator's close stays
        await wait_for(lambda: breakers.circuits[WA].state is Circuit.CLOSED, "recovered")
        await wait_for(lambda: caplog.text.count(nothing) == 2, "second log line")
    finally:
        stop.set()
        await runner
    assert sent == []
    assert (
        "event=breaker_tripped channel=WHATSAPP failures=2 calls=2 ratio=1.0 threshold=0.5 window_s=10"
        in caplog.text
    )
    assert "event=breaker_half_open channel=WHATSAPP" in caplog.text
    assert 'event=breaker_recovered channel=WHATSAPP action="channel open again"' in caplog.text


async def test_two_dispatchers_on_one_outage_publish_one_closed_and_one_open() -> None:
    """Two dispatchers of one group share the topic (each view sees every record at once here):
    the second to trip and the second to recover add nothing."""
    config = BreakerConfig(
        failure_ratio=0.5, window_seconds=10, min_calls=2, open_seconds=5, max_open_seconds=60
    )
    clock = Clock()
    topic: list[ChannelControl] = []
    views = [ControlView(), ControlView()]

    async def publish(key: bytes, value: bytes) -> None:
        topic.append(decode_control(value, key))
        for view in views:
            view.apply(key, value)

    a, b = (
        Breakers(config, FakeGateway(), publish, clock=clock, metrics=DispatcherMetrics(), view=v)  # type: ignore[arg-type]
        for v in views
    )
    for view in views:
        view.ready.set()
    stop = asyncio.Event()
    runners = [asyncio.create_task(x.run(stop)) for x in (a, b)]
    try:
        a.observe(WA, FAILED, BODY)
        a.observe(WA, FAILED, BODY)
        await wait_for(lambda: len(topic) == 1, "A's CLOSED")
        clock.now = T0 + 1  # B trips a second later: A's close (until T0+5) covers its T0+6
        b.observe(WA, FAILED, BODY)
        b.observe(WA, FAILED, BODY)
        await wait_for(lambda: b.circuits[WA].state is Circuit.OPEN, "B tripped")
        clock.now = T0 + 6  # both probes are due and succeed: A's OPEN, then B sees it
        await wait_for(lambda: all(x.circuits[WA].state is Circuit.CLOSED for x in (a, b)), "both recovered")
        await wait_for(lambda: len(topic) >= 2, "OPEN")
    finally:
        stop.set()
        await asyncio.gather(*runners)
    assert [(r.state.value, r.reason) for r in topic] == [
        ("CLOSED", "circuit breaker: 2 of 2 gateway calls failed"),
        ("OPEN", "circuit breaker: probe succeeded"),
    ]
    assert len(a.published) + len(b.published) == 2
    assert [t.cause for t in b.transitions] == [Cause.TRIPPED, Cause.PROBE_DUE, Cause.PROBE_SUCCEEDED]


async def test_a_probe_that_raises_is_retried_not_lost_regression(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe's send that raised ended the probe's task silently: the breaker stayed HALF_OPEN with
    no probe, and no OPEN was ever published for it. The probe now logs the error and tries again."""
    from stream_app.gateway import control

    monkeypatch.setattr(control, "PROBE_RETRY_S", 0.01)
    gateway, clock = FakeGateway(), Clock()
    raised: list[int] = []

    async def send(channel: Channel, body: dict[str, Any]) -> SendResult:
        if not raised:
            raised.append(1)
            raise RuntimeError("a bug in a send")
        return Accepted("sim")

    gateway.send = send  # type: ignore[method-assign]
    async with running_breakers(gateway, clock, DispatcherMetrics()) as (breakers, sent):
        for _ in range(4):
            breakers.observe(WA, FAILED, BODY)
        await wait_for(lambda: len(sent) == 1, "CLOSED published")
        clock.now = T0 + 5  # until passes: the first probe raises, the second is accepted
        await wait_for(lambda: len(sent) == 2, "OPEN published after the probe that raised")
        assert decode_control(sent[1][1], sent[1][0]).state is ChannelState.OPEN
        assert raised == [1] and "breaker_probe_error" in caplog.text and "a bug in a send" in caplog.text


# ------------------------------------------------------------------------------ ControlView.follow


class _TailLessConsumer:
    """channel-control's one partition: records at offsets 0-1, end offset 4. The last offsets hold
    no readable record (a transaction's marker, or a tail tombstone the log cleaner removed after
    its segment rolled): the consumer's position moves to the end, no record is returned there."""

    def __init__(self, topic: str) -> None:
        from aiokafka.structs import ConsumerRecord, TopicPartition

        self.tp = TopicPartition(topic, 0)
        value = encode(control("CLOSED", OPERATOR))
        self.records = [
            ConsumerRecord(topic, 0, i, 0, 0, b"WHATSAPP", value, None, 8, len(value), ()) for i in range(2)
        ]
        self.pos = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, tps: list[Any]) -> None:
        pass

    async def seek_to_beginning(self, *tps: Any) -> None:
        self.pos = 0

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return {self.tp: 4}

    async def getmany(self, timeout_ms: int = 0) -> dict[Any, list[Any]]:
        await asyncio.sleep(0)
        batch, self.records = self.records, []
        self.pos = 4
        return {self.tp: batch} if batch else {}

    async def position(self, tp: Any) -> int:
        return self.pos


async def test_the_view_is_ready_when_the_position_reaches_a_tail_without_records_regression() -> None:
    """Regression: the view counted a partition read only when a returned record reached end - 1,
    so a tail of markers or of records the cleaner removed left it never ready, and every breaker
    publication waited VIEW_WAIT_S for it."""
    from stream_app.config import Settings

    settings = Settings()
    consumer = _TailLessConsumer(settings.topics.channel_control)
    view, stop = ControlView(), asyncio.Event()
    task = asyncio.create_task(view.follow(settings, stop, consumer))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(view.ready.wait(), 10)
        assert view.current[WA].state is ChannelState.CLOSED
    finally:
        stop.set()
        await task
