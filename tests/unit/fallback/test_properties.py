"""Property tests: random chains, random interleavings of records, random clocks and limits.

Each example drives one message through ``decide()`` behind the processor's own partition step (the
test driver: input records decoded, the state read from and staged in a RocksDB store, timers fired
from its due index, and every published record checked against the effects), then fires timers until
the state is gone, and checks:

- every accepted request ends in exactly one outcome, and no command follows an outcome;
- commandIds are ``<messageId>:<attempt>``, unique and consecutive within each accepted flow;
- no timer outlives its message: the state is eventually deleted;
- replaying the same inputs gives byte-identical effects, whether every turn is committed (the next
  reads state and timer from RocksDB) or all stay staged in the store's memory (``roundtrip``);
- (v1.1) no command goes out outside its send window, nor on a channel the control view says is
  closed at that moment; a skipped attempt has no command, and its number is not reused;
- an outcome attempt's ``statusTimes`` name only progress statuses, in progress order, and its
  ``reasons`` come only from failure reports (statuses here carry ``occurredAt`` and ``reasons`` now
  and then, so the per-attempt facts go through the store round trip too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as s

from stream_app.contracts import (
    AttemptEnd,
    Channel,
    ChannelControl,
    Result,
    SendRequest,
    Status,
    control_key,
    format_ms,
    to_ms,
)
from stream_app.fallback import (
    MAX_REASONS,
    CancelEvent,
    ControlEvent,
    EmitLateStatus,
    EmitOutcome,
    Event,
    Limits,
    Phase,
    RequestEvent,
    SendCommand,
    StatusEvent,
    TimerEvent,
    window_of,
)
from tests.unit.fallback.driver import T0, Driver, cancel, effect_bytes, request, status

CHANNELS = ["WHATSAPP", "RCS", "SMS", "VIBER"]
STATUSES = ["ACCEPTED", "SENT", "DELIVERED", "READ", "REJECTED", "ERROR", "EXPIRED"]
SUCCESS = ["ACCEPTED", "SENT", "DELIVERED", "READ"]
#: Last statuses that say the person has the message (a double delivery if another attempt does too).
REACHED = {Status.DELIVERED, Status.READ}
MID = "msg-1"
#: Statuses dominate, as on the real topics; the rest appear often enough to interleave with them.
KINDS = ["request", "request", "conflict", "cancel", "timer", "control", *["status"] * 7]

steps = s.fixed_dictionaries(
    {"channel": s.sampled_from(CHANNELS), "content": s.dictionaries(s.sampled_from("abc"), s.integers(0, 9))},
    optional={
        "fallbackAfter": s.one_of(s.integers(1, 300), s.floats(0.001, 300.0)),
        "successStatus": s.sampled_from(SUCCESS),
    },
)


@s.composite
def requests(draw: s.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"channels": draw(s.lists(steps, min_size=1, max_size=8))}
    if draw(s.booleans()):
        body["ttl"] = draw(s.integers(1, 30_000))
    if draw(s.booleans()):
        body["requestedAt"] = format_ms(T0 - draw(s.integers(0, 600_000)))
    if draw(s.integers(0, 4)) == 0:
        body["initialAttempt"] = {"sentAt": format_ms(T0 - draw(s.integers(0, 400_000)))}
    if draw(s.integers(0, 2)) == 0:
        # short windows, so that minutes-long scripts cross their edges
        start = draw(s.integers(0, 1439))
        stop = draw(s.integers(0, 1439).filter(lambda m: m != start))
        body["sendWindow"] = {
            "timezone": draw(s.sampled_from(["Europe/Rome", "UTC", "Asia/Kolkata"])),
            "from": f"{start // 60:02d}:{start % 60:02d}",
            "to": f"{stop // 60:02d}:{stop % 60:02d}",
            "appliesTo": draw(s.sampled_from(["FALLBACK", "ALL"])),
        }
    return body


@s.composite
def controls(draw: s.DrawFn) -> ControlEvent:
    channel = Channel(draw(s.sampled_from(CHANNELS)))
    tenant = draw(s.sampled_from([None, None, "acme", "globex"]))
    if draw(s.integers(0, 5)) == 0:
        return ControlEvent(control_key(channel, tenant), None)
    body: dict[str, Any] = {
        "channel": channel,
        "tenant": tenant,
        "state": draw(s.sampled_from(["CLOSED", "CLOSED", "OPEN"])),
        "inFlight": draw(s.sampled_from(["WAIT", "FALLBACK"])),
    }
    if draw(s.booleans()):
        body["until"] = format_ms(T0 + draw(s.integers(-60_000, 1_000_000)))
    record = ChannelControl.model_validate(body)
    return ControlEvent(record.key, record)


@dataclass(frozen=True)
class Step:
    delay_ms: int
    event: Event
    fire_due_first: bool  # a prompt runtime fires due timers before the next record; a slow one not


@s.composite
def scripts(draw: s.DrawFn) -> tuple[Limits, list[Step]]:
    limits = Limits(
        max_flow_ms=draw(s.integers(1, 10_000_000)),
        orphan_status_ms=draw(s.integers(0, 300_000)),
        late_status_ms=draw(s.integers(0, 1_000_000)),
        dedup_ms=draw(s.integers(1, 1_000_000)),  # config requires dedup > 0
    )
    body = draw(requests())
    if draw(s.booleans()):
        body["tenant"] = draw(s.sampled_from(["acme", "globex"]))
    original = request(MID, **body)
    conflict = request(MID, **{**body, "destination": "+391111111111"})

    chain = [step["channel"] for step in body["channels"]]

    def status_event(draw_: s.DrawFn) -> Event:
        if draw_(s.integers(0, 3)):  # mostly a status of a real step, so flows do succeed and supersede
            index = draw_(s.integers(0, len(chain) - 1))
            channel = chain[index]
            attempt = draw_(s.sampled_from([index, None]))
        else:  # now and then anything: unknown attempts, wrong channels
            channel = draw_(s.sampled_from(CHANNELS))
            attempt = draw_(s.one_of(s.none(), s.integers(0, 7)))
        extra: dict[str, Any] = {}
        if draw_(s.booleans()):
            extra["providerMessageId"] = draw_(s.sampled_from(["p1", "p2"]))
        if draw_(s.booleans()):  # any moment around the request, before it and far after included
            extra["occurredAt"] = format_ms(T0 + draw_(s.integers(-(10**6), 10**9)))
        if draw_(s.integers(0, 3)) == 0:
            extra["reasons"] = draw_(s.lists(s.sampled_from(["", "why", "é" * 300]), max_size=6))
        return StatusEvent(status(channel, draw_(s.sampled_from(STATUSES)), attempt, MID, **extra))

    events: list[Step] = []
    for _ in range(draw(s.integers(1, 30))):
        kind = draw(s.sampled_from(KINDS))
        event: Event
        if kind == "request":
            again = original
            if draw(s.booleans()):  # same request apart from requestedAt: still a repeat
                again = request(MID, **{**body, "requestedAt": format_ms(T0 + draw(s.integers(0, 10**6)))})
            event = RequestEvent(again)
        elif kind == "conflict":
            event = RequestEvent(conflict)
        elif kind == "cancel":
            event = CancelEvent(cancel(MID, reason=draw(s.sampled_from([None, "paid"]))))
        elif kind == "status":
            event = status_event(draw)
        elif kind == "control":
            event = draw(controls())
        else:
            event = TimerEvent()
        # mostly forwards; now and then a step back, as after a rebalance onto a host whose clock lags
        delay = draw(s.one_of(s.just(0), s.integers(0, 120_000), s.integers(-5_000, 0)))
        events.append(Step(delay, event, draw(s.booleans())))
    return limits, events


def run(limits: Limits, script: list[Step], *, roundtrip: bool) -> tuple[Driver, list[bytes]]:
    """Play a script, checking the per-flow invariants as effects appear; return every effect."""
    d = Driver(limits, roundtrip=roundtrip)
    seen: list[bytes] = []
    flow_open = False
    accepted = 0
    outcomes = 0
    next_attempt = 0
    ids: set[str] = set()
    succeeded: set[int] = set()  # attempts of the current flow known to have succeeded
    request_of: SendRequest | None = None  # the accepted request of the current flow

    def feed(event: Event) -> None:
        nonlocal flow_open, accepted, outcomes, next_attempt, ids, succeeded, request_of
        before = d.state
        is_new = isinstance(event, RequestEvent) and (
            before is None
            or before.phase is Phase.HOLDING
            # an ended state whose retention is over is forgotten before the record is applied
            or (
                before.phase is Phase.ENDED and before.deadline_ms is not None and before.deadline_ms <= d.now
            )
        )
        effects = d.feed(event)
        if is_new:
            assert isinstance(event, RequestEvent)
            assert not flow_open
            flow_open = True
            accepted += 1
            next_attempt = 1 if event.request.initial_attempt is not None else 0
            request_of = event.request
            ids = set()
            succeeded = set()
        for effect in effects:
            seen.append(effect_bytes(effect))
            if isinstance(effect, SendCommand):
                cmd = effect.command
                assert flow_open, "a command after the end"
                assert cmd.attempt >= next_attempt, "attempt numbers only grow (skipped ones leave gaps)"
                issued = to_ms(cmd.issued_at)
                assert issued == d.now
                assert not d.controls.closed(cmd.channel, cmd.tenant, issued), "a command on a closed channel"
                assert request_of is not None
                window = request_of.send_window
                if window is not None and (cmd.attempt > 0 or window.applies_to == "ALL"):
                    assert window_of(window).is_open(issued), "a command outside its send window"
                if cmd.deferred_from is not None:
                    assert to_ms(cmd.deferred_from) < issued
                assert cmd.command_id == f"{MID}:{cmd.attempt}" and cmd.command_id not in ids
                assert cmd.not_after is not None and to_ms(cmd.issued_at) < to_ms(cmd.not_after), (
                    "no attempt is issued at or after the flow's end"
                )
                ids.add(cmd.command_id)
                next_attempt = cmd.attempt + 1
            elif isinstance(effect, EmitOutcome):
                assert flow_open, "an outcome without an open flow"
                flow_open = False
                outcomes += 1
                won = [a.attempt for a in effect.outcome.attempts if a.ended_by == AttemptEnd.SUCCEEDED]
                skipped = {a.attempt for a in effect.outcome.attempts if a.ended_by == AttemptEnd.SKIPPED}
                assert not skipped & {int(i.rsplit(":", 1)[1]) for i in ids}, (
                    "a skipped attempt had a command"
                )
                for a in effect.outcome.attempts:
                    if a.status_times is not None:
                        assert list(a.status_times) == [x for x in SUCCESS if x in a.status_times]
                    assert a.reasons is None or 0 < len(a.reasons) <= MAX_REASONS
                assert len(won) == (effect.outcome.result == Result.SUCCEEDED)
                succeeded.update(won)
                # the handset has it, whatever the step's successStatus (a READ step DELIVERED)
                succeeded.update(a.attempt for a in effect.outcome.attempts if a.last_status in REACHED)
            elif isinstance(effect, EmitLateStatus):
                late = effect.late
                assert not flow_open, "a late status only after the end"
                # doubleDelivery: another attempt succeeded or reached the person (core._ended_status)
                assert late.double_delivery == bool(succeeded - {late.attempt})
                succeeded.add(late.attempt)

    for step in script:
        target = d.now + step.delay_ms
        if step.fire_due_first:
            while d.state is not None and d.state.deadline_ms is not None and d.state.deadline_ms <= target:
                d.now = max(d.now, d.state.deadline_ms)
                feed(TimerEvent())
        d.now = target
        feed(step.event)
    for _ in range(100):  # drive timers until the state is gone
        if d.state is None:
            break
        assert d.state.deadline_ms is not None
        d.now = max(d.now, d.state.deadline_ms)
        feed(TimerEvent())
    assert d.state is None, "a timer outlived its message"
    assert not flow_open and outcomes == accepted, "every accepted request ends in exactly one outcome"
    return d, seen


@settings(max_examples=200, deadline=None)
@given(scripts())
def test_random_interleavings_keep_every_guarantee(script: tuple[Limits, list[Step]]) -> None:
    limits, steps_ = script
    _, first = run(limits, steps_, roundtrip=True)
    _, second = run(limits, steps_, roundtrip=False)
    assert first == second, "replay must give byte-identical effects"


@settings(max_examples=100, deadline=None)
@given(s.lists(steps, min_size=1, max_size=8))
def test_a_chain_with_no_reports_tries_every_step_then_ends(chain: list[dict[str, Any]]) -> None:
    limits = Limits(max_flow_ms=10**9, orphan_status_ms=1000, late_status_ms=1000, dedup_ms=1000)
    d = Driver(limits)
    d.send(request(MID, channels=chain))
    d.drain()
    timed = 0
    for step in chain:
        timed += 1
        if "fallbackAfter" not in step:
            break
    assert [c.attempt for c in d.commands] == list(range(timed))
    assert len(d.outcomes) == 1 and d.state is None
    expected = "FAILED" if "fallbackAfter" in chain[timed - 1] else "EXPIRED"
    assert d.outcome.result.value == expected
    # the same chain where every attempt is rejected at once walks it to FAILED with FAILED reasons
    d2 = Driver(limits)
    d2.send(request(MID, channels=chain))
    for i, step in enumerate(chain):
        d2.report(status(step["channel"], "REJECTED", i, MID))
    assert [c.reason.value for c in d2.commands[1:]] == ["FAILED"] * (len(chain) - 1)
    assert d2.outcome.result.value == "FAILED"
