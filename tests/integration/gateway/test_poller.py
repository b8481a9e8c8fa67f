"""The poller against the simulator's status endpoint, learning in-flight attempts from a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from stream_app.config import Settings
from stream_app.contracts import Channel, DeliveryStatus, Status, decode_status, encode
from stream_app.gateway.client import GatewayClient
from stream_app.gateway.poller import Poller, PollOptions, run_poller
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import running_simulator
from stream_app.lifecycle import wait_started
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

FAST = PollOptions(min_interval=0.05, max_interval=0.2, max_age=30)


@contextlib.asynccontextmanager
async def running_poller(settings: Settings, url: str, options: PollOptions = FAST) -> AsyncIterator[Poller]:
    stop, ready = asyncio.Event(), asyncio.Event()
    holder: list[Poller] = []
    gw = GatewaySettings(url=url, api_key="test-key")
    task = asyncio.create_task(
        run_poller(settings, gw, options=options, stop=stop, ready=ready, poller=holder)
    )
    await wait_started(task, ready, "poller")
    try:
        yield holder[0]
    finally:
        stop.set()
        await task


async def _send(url: str, cid: str, channel: Channel, destination: str) -> None:
    body = {"destination": destination, "messageId": cid, "sender": "S", "text": "t", "template": {"id": 1}}
    async with GatewayClient(url, "test-key") as gw:
        await gw.send(channel, body)


def _decode(record: ConsumerRecord[bytes, bytes]) -> DeliveryStatus:
    return decode_status(record.value or b"")


def _accepted(mid: str, channel: Channel = Channel.SMS) -> tuple[bytes, bytes]:
    status = DeliveryStatus(message_id=mid, attempt=0, channel=channel, status=Status.ACCEPTED)
    return mid.encode(), encode(status)


async def test_polls_until_delivered_and_error_then_stops(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_simulator(time_scale=0.2) as (_, url):
        await _send(url, "ok:0", Channel.SMS, "+393401234500")
        await _send(url, "err:0", Channel.WHATSAPP, "+393401234503")  # SENT, then ERROR (code 6)
        topic = settings.topics.delivery_status
        await produce_all(kafka_bootstrap, topic, [_accepted("ok"), _accepted("err", Channel.WHATSAPP)])
        async with running_poller(settings, url) as poller:
            ended = poller.tracker.ended
            await eventually(lambda: {"ok:0", "err:0"} <= set(ended), what="both attempts ended")
            polls = poller.polls
            await asyncio.sleep(0.5)
            assert poller.polls == polls, "polling went on after the attempts ended"
        statuses = [_decode(r) for r in await read_all(kafka_bootstrap, topic, lambda rs: len(rs) >= 4)]
    # a poll sees the status of the moment, so SENT may come and go between two polls unseen; what is
    # published only ever moves forward, once per status, and ends with the final one
    by_message: dict[str, list[tuple[Status, int | None]]] = {}
    for s in statuses:
        by_message.setdefault(s.message_id, []).append((s.status, s.status_code))
    assert by_message["ok"][-1] == (Status.DELIVERED, 3)  # the gateway's code for delivered
    assert by_message["err"][-1] == (Status.ERROR, 6)
    for seq in by_message.values():
        assert seq[0] == (Status.ACCEPTED, None) and len(seq) == len(set(seq)) <= 3
    assert all(s.attempt == 0 for s in statuses)


async def test_a_status_already_on_the_topic_is_not_published_again(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """A webhook already published DELIVERED: the poller must not repeat it."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_simulator(time_scale=0.02) as (_, url):
        await _send(url, "w:0", Channel.SMS, "+393401234500")
        delivered = DeliveryStatus(message_id="w", attempt=0, channel=Channel.SMS, status=Status.DELIVERED)
        # garbage on the topic is the processor's to dead-letter; the poller reads past it
        garbage = [(b"x", b"{not json"), (b"y", b'{"messageId": "y", "attempt": 0, "channel": "FAX"}')]
        records = [*garbage, _accepted("w"), (b"w", encode(delivered)), _accepted("v")]
        await produce_all(kafka_bootstrap, settings.topics.delivery_status, records)
        async with running_poller(settings, url) as poller:
            # w and v sit on different partitions: v's first poll says nothing of w's DELIVERED
            await eventually(lambda: "w:0" in poller.tracker.ended, what="w's DELIVERED read")
            await eventually(lambda: poller.polls >= 1, what="v polled")
            assert set(poller.tracker.attempts) == {"v:0"}  # w ended with its DELIVERED; v in flight
            assert poller.published == 0  # v is unknown to the gateway: nothing to publish


async def test_stuck_in_sent_is_given_up_after_max_age(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    options = PollOptions(min_interval=0.05, max_interval=0.1, max_age=1.0)
    async with running_simulator(time_scale=0.1) as (_, url):
        await _send(url, "stuck:0", Channel.WHATSAPP, "+393401234502")
        await produce_all(
            kafka_bootstrap, settings.topics.delivery_status, [_accepted("stuck", Channel.WHATSAPP)]
        )
        async with running_poller(settings, url, options) as poller:
            [_, sent] = await read_statuses(kafka_bootstrap, settings, 2)
            assert sent.status is Status.SENT
            await eventually(lambda: "stuck:0" in poller.tracker.ended, what="given up")
            assert poller.polls >= 5


async def test_dispatcher_and_poller_end_to_end(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    n = 20
    async with running_simulator(time_scale=0.2) as (sim, url):
        gw = GatewaySettings(url=url, api_key="test-key")
        async with running_dispatcher(settings, gw), running_poller(settings, url):
            records = [as_record(command(f"e{i}")) for i in range(n)]
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)

            def all_delivered(rs: list[ConsumerRecord[bytes, bytes]]) -> bool:
                done = {s.message_id for s in map(_decode, rs) if s.status is Status.DELIVERED}
                return len(done) == n

            found = await read_all(kafka_bootstrap, settings.topics.delivery_status, all_delivered)
    by_message: dict[str, list[Status]] = {}
    for s in map(_decode, found):
        by_message.setdefault(s.message_id, []).append(s.status)
    assert len(by_message) == n
    for statuses in by_message.values():
        assert statuses[0] is Status.ACCEPTED and statuses[-1] is Status.DELIVERED
        assert len(statuses) == len(set(statuses)), "a status was published twice"
    assert set(sim.state.sends.values()) == {1}


async def test_received_is_published_as_sent_and_unknown_is_counted_not_logged_per_poll(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 9: RECEIVED and UNKNOWN were "unknown deliveryStatus" on every poll and never published."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    caplog.set_level(logging.WARNING, logger="stream_app.gateway.poller")
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "10", "statuses": [{"status": "RECEIVED", "after": 0.1},'
        b' {"status": "DELIVERED", "after": 1.0}, {"status": "READ", "after": 1.3}]},'
        b' {"destinationSuffix": "11", "statuses": [{"status": "UNKNOWN", "after": 0}]}]}'
    )
    topic = settings.topics.delivery_status
    options = PollOptions(min_interval=0.02, max_interval=0.05, max_age=30, until_read=True)
    async with running_simulator(rules) as (_, url), running_poller(settings, url, options) as poller:
        # the poller runs before the sends, so it sees RECEIVED (from 0.1 s to 1 s)
        await _send(url, "rcv:0", Channel.WHATSAPP, "+393401234510")
        await _send(url, "unk:0", Channel.SMS, "+393401234511")
        await produce_all(kafka_bootstrap, topic, [_accepted("rcv", Channel.WHATSAPP), _accepted("unk")])
        await eventually(lambda: "rcv:0" in poller.tracker.ended, what="rcv read")
        unknown = poller.metrics.ignored.labels("UNKNOWN")
        await eventually(lambda: unknown._value.get() >= 10, what="UNKNOWN polled ten times")
        assert "unk:0" in poller.tracker.attempts  # UNKNOWN ends nothing: polling goes on

        def rcv_read(rs: list[ConsumerRecord[bytes, bytes]]) -> bool:
            return any(_decode(r).status is Status.READ for r in rs)

        statuses = [_decode(r) for r in await read_all(kafka_bootstrap, topic, rcv_read)]
    rcv = [(s.status, s.gateway_status) for s in statuses if s.message_id == "rcv"]
    assert rcv == [
        (Status.ACCEPTED, None),
        (Status.SENT, "RECEIVED"),
        (Status.DELIVERED, "DELIVERED"),
        (Status.READ, "READ"),
    ]
    assert [s.status for s in statuses if s.message_id == "unk"] == [Status.ACCEPTED]
    unknown_lines = [r for r in caplog.records if "UNKNOWN" in r.getMessage()]
    assert len(unknown_lines) == 1, [r.getMessage() for r in caplog.records]
