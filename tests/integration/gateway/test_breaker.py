"""The circuit breaker through a real broker: the simulator fails WhatsApp, the dispatcher closes the
channel on ``channel-control``, and reopens it once the simulator recovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from stream_app.contracts import Channel, ChannelControl, Status, decode_control, encode
from stream_app.contracts.models import ChannelState, InFlight
from stream_app.gateway.breaker import Circuit
from stream_app.gateway.settings import BreakerConfig, GatewaySettings
from stream_app.gateway.testing import running_simulator
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_all,
    read_statuses,
    running_dispatcher,
)
from tests.support.kafka import consume_until

#: Small numbers so a test trips in a second: 6 calls, more than half failed, in a 30 s window;
#: closed for 1 s before the first probe.
BREAKER = BreakerConfig(failure_ratio=0.5, window_seconds=30, min_calls=6, open_seconds=1, max_open_seconds=2)


def _gateway(url: str) -> GatewaySettings:
    return GatewaySettings(url=url, api_key="test-key", backoff_base=0.02, backoff_max=0.2, breaker=BREAKER)


def _controls(records: list[object]) -> list[ChannelControl]:
    return [decode_control(r.value or b"", r.key) for r in records]  # type: ignore[attr-defined]


async def test_the_breaker_closes_a_failing_channel_and_reopens_it_after_recovery(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    topic = settings.topics.channel_control
    not_after = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    wa = [command(f"wa-{i}", channel="WHATSAPP", notAfter=not_after) for i in range(4)]
    sms = [command(f"sms-{i}") for i in range(4)]
    async with running_simulator() as (sim, url), running_dispatcher(settings, _gateway(url)) as disp:
        sim.fail_channel(Channel.WHATSAPP, status=503)
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in wa + sms])

        # the WhatsApp sends fail and are retried: the breaker trips and closes the channel
        [closed] = _controls(await consume_until(kafka_bootstrap, topic, count=1, timeout=30))
        assert closed.key == "WHATSAPP" and closed.tenant is None
        assert (closed.state, closed.in_flight) == (ChannelState.CLOSED, InFlight.WAIT)
        assert closed.reason is not None and closed.reason.startswith("circuit breaker: ")
        assert closed.until is not None and closed.at is not None
        assert closed.until > closed.at
        assert disp.breakers is not None
        assert disp.breakers.circuits[Channel.WHATSAPP].state is not Circuit.CLOSED
        # SMS kept working meanwhile and its breaker never moved
        assert disp.breakers.circuits[Channel.SMS].state is Circuit.CLOSED
        await eventually(
            lambda: all(f"sms-{i}:0" in sim.state.sends for i in range(4)), what="SMS commands sent"
        )

        # while it is down, probes fail: the channel stays closed (maybe with a later until)
        await eventually(lambda: sim.state.outage_calls[Channel.WHATSAPP] >= 8, what="probes while down")
        sim.recover_channel(Channel.WHATSAPP)

        records = await consume_until(
            kafka_bootstrap, topic, predicate=lambda r: b'"OPEN"' in (r.value or b""), timeout=30
        )
        everything = _controls(await _all(kafka_bootstrap, topic))
        assert records  # an OPEN record came
        states = [c.state for c in everything]
        assert states[0] is ChannelState.CLOSED and states[-1] is ChannelState.OPEN
        assert ChannelState.OPEN not in states[:-1]  # closed (once or more), then open, once
        assert {c.key for c in everything} == {"WHATSAPP"}
        assert disp.breakers.circuits[Channel.WHATSAPP].state is Circuit.CLOSED

        # the WhatsApp commands themselves got through once the gateway was back: nothing was lost
        statuses = await read_statuses(kafka_bootstrap, settings, len(wa) + len(sms), within=60)
    assert {s.message_id: s.status for s in statuses} == dict.fromkeys(
        [c["messageId"] for c in wa + sms], Status.ACCEPTED
    )
    # the probes were simulation sends: no person got anything from them
    assert not any(cid.startswith("breaker-probe") for cid in sim.state.sends)
    assert all(sim.state.sends[f"wa-{i}:0"] == 1 for i in range(4))


async def _all(bootstrap: str, topic: str) -> list[object]:
    """Every record of ``topic`` so far: read until there is one, then 1.5 s more."""
    return list(await read_all(bootstrap, topic, lambda rs: len(rs) > 0))


async def test_an_operators_close_on_the_topic_is_not_lifted_by_the_breaker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Read from the topic at start: the operator closed RCS; the breaker trips and recovers but
    publishes nothing (its CLOSED adds nothing, and an operator's close is not its to lift)."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    topic = settings.topics.channel_control
    operator = ChannelControl(channel=Channel.RCS, state=ChannelState.CLOSED, reason="maintenance")
    await produce_all(kafka_bootstrap, topic, [(b"RCS", encode(operator))])
    not_after = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    rcs = [command(f"rcs-{i}", channel="RCS", notAfter=not_after) for i in range(3)]
    async with running_simulator() as (sim, url), running_dispatcher(settings, _gateway(url)) as disp:
        assert disp.breakers is not None
        breakers = disp.breakers
        await eventually(lambda: breakers.view.ready.is_set(), what="channel-control read")
        assert breakers.view.current[Channel.RCS] == operator
        sim.fail_channel(Channel.RCS, status=500)
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in rcs])
        await eventually(
            lambda: breakers.circuits[Channel.RCS].state is not Circuit.CLOSED, what="RCS tripped"
        )
        sim.recover_channel(Channel.RCS)
        await eventually(
            lambda: any(t.cause.value == "probe_succeeded" for t in breakers.transitions),
            within=30,
            what="RCS recovered",
        )
        await read_statuses(kafka_bootstrap, settings, len(rcs), within=60)
    assert breakers.published == []
    assert _controls(await _all(kafka_bootstrap, topic)) == [operator]
