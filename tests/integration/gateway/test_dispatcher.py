"""The dispatcher end to end: commands on a real broker, sends to the simulator over real HTTP."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.contracts import Channel, Status
from stream_app.gateway import dispatcher as dispatcher_module
from stream_app.gateway.client import GatewayClient
from stream_app.gateway.sentlog import PartitionLog, SendState, SentLog
from stream_app.gateway.settings import GatewaySettings
from stream_app.gateway.simulator import parse_rules
from stream_app.gateway.testing import running_simulator
from tests.integration.gateway.helpers import (
    as_record,
    command,
    eventually,
    make_settings,
    produce_all,
    read_statuses,
    running_dispatcher,
    seed_sentlog,
)
from tests.support.kafka import consume_until


def _gateway(url: str, **over: object) -> GatewaySettings:
    values: dict[str, object] = {"url": url, "api_key": "test-key", "backoff_base": 0.02, "backoff_max": 0.2}
    values.update(over)
    return GatewaySettings(**values)  # type: ignore[arg-type]


async def test_commands_become_accepted_and_rejected_statuses(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    rules = parse_rules(
        b'{"rules": [{"destinationSuffix": "01", "channel": "WHATSAPP", "reject": ["NO_WHATSAPP"]},'
        b' {"destinationSuffix": "02", "unapprovedTemplate": true}]}'
    )
    cmds = [
        command("ok-sms"),
        command("no-wa", channel="WHATSAPP", destination="+393401234501"),
        command("tmpl", channel="WHATSAPP", destination="+393401234502"),
        command("bad-body", content={"text": "no sender"}),
        command("late", notAfter="2020-01-01T00:00:00Z"),
        command("rcs", attempt=1, channel="RCS"),
    ]
    async with running_simulator(rules) as (sim, url), running_dispatcher(settings, _gateway(url)):
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in cmds])
        statuses = {s.message_id: s for s in await read_statuses(kafka_bootstrap, settings, len(cmds))}
    ok = statuses["ok-sms"]
    assert (ok.status, ok.attempt, ok.channel, ok.provider_message_id) == (
        Status.ACCEPTED,
        0,
        Channel.SMS,
        "ok-sms:0",
    )
    assert ok.occurred_at is not None
    assert (statuses["no-wa"].status, statuses["no-wa"].reasons) == (Status.REJECTED, ["NO_WHATSAPP"])
    assert statuses["tmpl"].reasons == ["Template not approved or not found"]
    assert statuses["bad-body"].status is Status.REJECTED
    assert statuses["bad-body"].reasons[0].startswith("HTTP_400: sender")
    assert statuses["late"].reasons == ["NOT_SENT_BEFORE_NOT_AFTER"]
    assert (statuses["rcs"].status, statuses["rcs"].attempt) == (Status.ACCEPTED, 1)
    # every command that reached the gateway was sent exactly once; the late one never was
    assert sim.state.sends == {"ok-sms:0": 1, "no-wa:0": 1, "rcs:1": 1}
    assert "late:0" not in sim.state.calls


async def test_repeats_are_dropped_within_a_run_and_after_a_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    topic = settings.topics.retry_commands
    cmds = [as_record(command(f"m{i}")) for i in range(20)]
    async with running_simulator() as (sim, url):
        async with running_dispatcher(settings, _gateway(url)) as disp:
            await produce_all(kafka_bootstrap, topic, cmds + cmds[:5])
            await read_statuses(kafka_bootstrap, settings, 20)
            await eventually(lambda: disp.counts["repeats"] >= 5, what="5 repeats dropped")
        # a new run, on another machine (nothing local is kept: its sent-log is restored from the
        # topic), meets the same commands again, as after a processor replay
        elsewhere = replace(settings, state_dir=tmp_path / "another-machine")
        async with running_dispatcher(elsewhere, _gateway(url)) as disp:
            await produce_all(kafka_bootstrap, topic, cmds)
            await eventually(lambda: disp.counts["repeats"] >= 20, what="20 repeats dropped")
        assert set(sim.state.sends.values()) == {1} and len(sim.state.sends) == 20
    everything = await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=20, timeout=5)
    assert len(everything) == 20
    try:
        await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=21, timeout=1.5)
        raise AssertionError("a repeat command produced a second status")
    except AssertionError as exc:
        assert "20 of 21" in str(exc)


async def test_a_command_found_sending_is_resolved_by_the_status_endpoint(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The crash case: SENDING was recorded, then the process died around the call."""
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_simulator() as (sim, url):
        # "reached-gw" did reach the gateway before the crash; "lost" never left the process
        async with GatewayClient(url, "test-key") as gw:
            body = {"destination": "+393401234500", "messageId": "reached-gw:0", "sender": "S", "text": "t"}
            await gw.send(Channel.SMS, body)
        await seed_sentlog(
            kafka_bootstrap,
            settings,
            [("reached-gw", 0, SendState.SENDING, 1, b""), ("lost", 0, SendState.SENDING, 1, b"")],
        )
        async with running_dispatcher(settings, _gateway(url)) as disp:
            records = [as_record(command("reached-gw")), as_record(command("lost"))]
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)
            statuses = await read_statuses(kafka_bootstrap, settings, 2)
            assert disp.counts["resolved_by_status"] == 1
    assert {s.message_id: s.status for s in statuses} == {"reached-gw": "ACCEPTED", "lost": "ACCEPTED"}
    assert sim.state.sends == {"reached-gw:0": 1, "lost:0": 1}


async def test_invalid_command_records_go_to_dead_letters(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    bad = [
        (b"k1", b"{not json"),
        (b"k2", b"[]"),
        (b"k3", orjson.dumps({**command("x"), "channel": "FAX"})),
        (b"k4", orjson.dumps({**command("y"), "commandId": "y:7"})),
        (b"k5", orjson.dumps({k: v for k, v in command("z").items() if k != "destination"})),
    ]
    async with running_simulator() as (sim, url), running_dispatcher(settings, _gateway(url)):
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [*bad, as_record(command("good"))])
        dead = await consume_until(kafka_bootstrap, settings.topics.dead_letters, count=len(bad))
        [good] = await read_statuses(kafka_bootstrap, settings, 1)
    assert good.message_id == "good" and sim.state.sends == {"good:0": 1}
    by_key = {r.key: (r.value, dict(r.headers)) for r in dead}
    assert {k: v[0] for k, v in by_key.items()} == dict(bad)  # original bytes, untouched
    reasons = {k: h["__error.reason"].decode() for k, (_, h) in by_key.items()}
    assert "not valid JSON" in reasons[b"k1"]
    assert "channel" in reasons[b"k3"]
    assert "commandId" in reasons[b"k4"]
    assert "destination: required" in reasons[b"k5"]
    headers = by_key[b"k1"][1]
    assert headers["__error.source.topic"].decode() == settings.topics.retry_commands
    assert headers["__error.class"] == b"InvalidRecord"
    assert int(headers["__error.source.offset"]) >= 0


async def test_traceparent_is_copied_to_the_status(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    trace = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with running_simulator() as (_, url), running_dispatcher(settings, _gateway(url)):
        topic = settings.topics.retry_commands
        await produce_all(kafka_bootstrap, topic, [as_record(command("t"))], [("traceparent", trace)])
        [record] = await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=1)
    assert dict(record.headers)["traceparent"] == trace


async def test_per_channel_rate_limit_spaces_sends(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start of each send, as the limiter lets it go. Measured at the simulator instead, the
    # span also held each call's HTTP latency: a first call slower than the rest (its connection)
    # shortened it, and on a busy machine 10 sends spaced 50 ms apart arrived 389 ms apart.
    starts: list[float] = []
    acquire = dispatcher_module._Limiter.acquire

    async def timed(limiter: Any) -> None:
        await acquire(limiter)
        if limiter.interval > 0:
            starts.append(time.monotonic())

    monkeypatch.setattr(dispatcher_module._Limiter, "acquire", timed)
    settings = await make_settings(kafka_bootstrap, tmp_path)
    async with running_simulator() as (_, url):
        gw = _gateway(url, rate={ch: (20.0 if ch is Channel.SMS else 0.0) for ch in Channel})
        async with running_dispatcher(settings, gw):
            records = [as_record(command(f"r{i}")) for i in range(10)]
            await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)
            statuses = await read_statuses(kafka_bootstrap, settings, 10)
    assert len(statuses) == 10 and len(starts) == 10
    # 10 sends at 20/s: the limiter gives send k the slot k * 50 ms after the first (evenly spaced
    # slots, not gaps: one woken late does not push the next), 1 ms allowed for the clock's grain.
    since_first = [round(t - starts[0], 4) for t in starts]
    assert all(at >= k * 0.05 - 0.001 for k, at in enumerate(since_first)), since_first


async def test_result_recorded_but_unconfirmed_is_not_published_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The crash between publishing a status and recording DONE: the restart finds the status on the
    topic and does not publish it again; a status that never made it is published."""
    import time

    from stream_app.contracts import DeliveryStatus, encode
    from stream_app.gateway.reconcile import reconcile_results

    settings = await make_settings(kafka_bootstrap, tmp_path)
    now_ms = int(time.time() * 1000)
    published, lost = (
        encode(DeliveryStatus(message_id=m, attempt=0, channel=Channel.SMS, status=Status.ACCEPTED))
        for m in ("pub", "lost")
    )
    await produce_all(kafka_bootstrap, settings.topics.delivery_status, [(b"pub", published)])
    log = SentLog(_no_write)
    log.partitions = {0: PartitionLog(), 1: PartitionLog()}
    await log.put(0, "pub:0", SendState.RESULT, now_ms, published)
    await log.put(1, "lost:0", SendState.RESULT, now_ms, lost)
    assert await reconcile_results(settings, log) == 1
    states = {cid: e.state for _, cid, e in log.entries()}
    assert states == {"pub:0": SendState.DONE, "lost:0": SendState.RESULT}
    # What a crashed dispatcher left on its sent-log: both answers, neither marked published.
    await seed_sentlog(
        kafka_bootstrap,
        settings,
        [("pub", 0, SendState.RESULT, now_ms, published), ("lost", 0, SendState.RESULT, now_ms, lost)],
    )
    async with running_simulator() as (sim, url), running_dispatcher(settings, _gateway(url)):
        records = [as_record(command("pub")), as_record(command("lost"))]
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, records)
        statuses = await read_statuses(kafka_bootstrap, settings, 2)
        assert sorted(s.message_id for s in statuses) == ["lost", "pub"]
    assert sim.state.sends == {}  # both had been sent before the "crash"
    try:
        await consume_until(kafka_bootstrap, settings.topics.delivery_status, count=3, timeout=1.5)
        raise AssertionError("a status was published twice")
    except AssertionError as exc:
        assert "2 of 3" in str(exc)


async def test_per_channel_concurrency_and_in_flight_limits_hold(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = await make_settings(kafka_bootstrap, tmp_path)
    rules = parse_rules(b'{"rules": [{"delay": 0.15}]}')
    limits = {ch: 3.0 for ch in Channel} | {Channel.RCS: 1.0}
    cmds = [command(f"c{i}", channel=("SMS", "RCS")[i % 2]) for i in range(16)]
    async with (
        running_simulator(rules) as (sim, url),
        # max_in_flight 4: fetching pauses and resumes many times over 16 commands
        running_dispatcher(settings, _gateway(url, concurrency=limits, max_in_flight=4)),
    ):
        await produce_all(kafka_bootstrap, settings.topics.retry_commands, [as_record(c) for c in cmds])
        await read_statuses(kafka_bootstrap, settings, len(cmds))
    assert sim.state.max_in_progress[Channel.SMS] == 3
    assert sim.state.max_in_progress[Channel.RCS] == 1


async def _no_write(p: int, key: bytes, value: bytes | None) -> None:
    """A sent-log write that goes nowhere: reconcile_results alone, without a dispatcher."""
