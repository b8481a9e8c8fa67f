"""``decide()``: the pure, deterministic fallback state machine of CONTRACT.md.

No Kafka, no HTTP, no asyncio, no clock reads, no randomness: the same state, event, ``now_ms`` and
limits always give the same new state and byte-identical effects, so a partition can be replayed
offline to explain any decision.

Time handling: before an event is applied, every timer of the message that is already due at
``now_ms`` is fired (in order), and again after it. So whether the runtime wakes the core with a
``TimerEvent`` just before or just after a status that arrives at the same moment, the decision is the
same: what was due first happened first. A timer never fires before its deadline.

Choices where CONTRACT.md is silent (each pinned by a test in ``tests/unit/fallback/test_rules.py``):

- Durations are whole milliseconds rounded up (``fallbackAfter: 0.3`` is 300 ms); ``ttl`` and the max
  flow time count from ``requestedAt``, else from when the request was received.
- An attempt's status order is ACCEPTED < SENT < failure < DELIVERED < READ (see :data:`ORDER`):
  nothing lowers it, so a SENT after an ERROR changes nothing, while a DELIVERED after an ERROR is
  taken as the stronger evidence and counts as a success.
- A failure of an attempt the chain has already left behind (it timed out) only records its
  ``lastStatus``; it never skips a step. A success of such an attempt ends the message SUCCEEDED on
  its channel, and the open attempt ends SUPERSEDED.
- Held orphan statuses are applied right after the request's first attempt, in arrival order; one
  naming an attempt that is still not issued is dropped. Beyond :data:`MAX_HELD` per message, a
  status is dead-lettered with a reason instead of held.
- After the outcome, the state shrinks (no destination, content or metadata) and is kept for
  ``max(dedup, late-status)`` from the moment of the outcome; then it is deleted and the messageId
  is new again. Within the late-status window a success status that moves an attempt forward is
  reported once as a LateStatus (a READ after the winning DELIVERED too, with
  ``doubleDelivery: false``); repeats and non-success statuses are not reported. ``doubleDelivery``
  is about the person: another attempt that succeeded or reached DELIVERED makes it true, and a
  DELIVERED below its own step's ``successStatus`` is then reported too (the person got it twice).
- A cancel's ``reason`` is copied to the CANCELLED outcome's ``reason``.
- Each outcome attempt's ``statusTimes`` holds the ``occurredAt`` of the FIRST report (in arrival
  order) of each progress status, also of one that arrives out of order and moves nothing (a SENT
  after the DELIVERED still says when it was sent); a report without ``occurredAt`` counts at the
  moment it is applied (as a LateStatus does). ``reasons`` are those of the attempt's first failure
  report that gave any, at most :data:`MAX_REASONS` of at most :data:`MAX_REASON_CHARS` characters
  each. Both are gathered only while the flow runs and dropped from the state with the outcome.
- A record whose messageId differs from the stored state's (a producer keyed it wrongly) is
  dead-lettered; the flow is untouched.

v1.1, quiet hours and channel control (``tests/unit/fallback/test_quiet_hours.py`` and
``test_channel_control.py``):

- Whether a step's channel is closed is decided when the step falls due, before its send window is
  looked at: a closed step is skipped at once (its attempt's ``issuedAt`` is that moment), and the
  next step is the one that waits for the window. A step held for the window is checked again at
  the opening, so a channel closed meanwhile is skipped then.
- A held step keeps the reason it fell due with (TIMEOUT, FAILED, SKIPPED or INITIAL) and the
  moment (``deferredFrom``: after a TIMEOUT, the fallbackAfter's deadline, however late its timer
  fired); a wake that finds the window shut again (a processor down past it) waits for the next
  opening, keeping both. A fallbackAfter timer that fires late inside the window for a deadline
  outside it issues the step at once, with that deadline as ``deferredFrom``.
- ``CHANNELS_CLOSED`` is the reason of a FAILED outcome whose last step was skipped or cut short by
  an ``inFlight: FALLBACK`` closure; a last step that failed or timed out on its own gives none.
- The expiry beats the window: an opening at or after it ends the message at once, EXPIRED with
  ``OUTSIDE_SEND_WINDOW``; the expiry also beats a closure (no attempt is skipped after it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from stream_app.contracts import (
    FAILURE_STATUSES,
    MAX_STEPS,
    PROGRESS_RANK,
    STATUS_ORDER,
    AttemptEnd,
    CancelRequest,
    Channel,
    ChannelState,
    ChannelStep,
    CommandReason,
    DeliveryStatus,
    EndReason,
    InFlight,
    LateStatus,
    PreviousAttempt,
    Result,
    SendRequest,
    Status,
    SuccessStatus,
    exactjson,
    from_ms,
    to_ms,
    trusted,
)
from stream_app.fallback.control import NO_CONTROLS, ControlView
from stream_app.fallback.state import (
    NO_TIMES,
    Attempt,
    CancelEvent,
    ControlEvent,
    DeadLetter,
    Decision,
    Deferred,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Held,
    Limits,
    Phase,
    RequestEvent,
    SendCommand,
    Signal,
    StatusEvent,
    Step,
    seconds_to_ms,
)
from stream_app.fallback.window import window_of

#: How far a status moves an attempt on (the one table, in contracts; Status is a str enum).
ORDER: dict[str, int] = STATUS_ORDER

#: At most this many statuses are held for a message whose request has not arrived. One attempt
#: reports at most about four statuses (ACCEPTED, SENT, DELIVERED, READ or a failure), so 16 covers
#: every status of several attempts racing ahead of their request; the bound keeps a flood of
#: statuses for a never-requested messageId from growing one state without limit (the excess is
#: dead-lettered with a reason rather than silently dropped).
MAX_HELD = 16

#: Timers fired within one decision. Each firing either ends the flow, deletes the state, drops
#: expired holds, or issues an attempt whose own timer lies strictly after ``now`` (fallbackAfter is
#: at least 1 ms), so a handful suffice; the bound turns a logic error into an error, not a hang.
_MAX_FIRES = 2 * MAX_STEPS + 4

#: Bounds on the failure reasons kept per attempt (and per held status). The gateway's text is not
#: ours: without a bound one chatty DLR could grow a stored state, and the outcome, without limit.
#: Gateways give one or two short codes or sentences; four of up to 200 characters keep all of those.
MAX_REASONS = 4
MAX_REASON_CHARS = 200

#: The progress statuses in PROGRESS_RANK order: ``Attempt.status_times[i]`` is ``_PROGRESS[i]``'s.
_PROGRESS: tuple[SuccessStatus, ...] = tuple(
    SuccessStatus(name) for name in sorted(PROGRESS_RANK, key=PROGRESS_RANK.__getitem__)
)

#: First byte of a FlowState.opaque holding an integer beyond 64 bits: a space (the bytes stay JSON),
#: where orjson's own output starts with ``[``. Such bytes are read with :func:`exactjson.loads`.
_WIDE_MARK = 0x20

_CONFLICT = "conflict: messageId already used by a different request; the first request's flow is kept"
_KEY_MISMATCH = "messageId does not match the stored flow of this key"
_HELD_FULL = f"orphan status dropped: already {MAX_HELD} statuses held for a messageId with no request yet"


class _Ctx:
    """One decision's clock, limits and collected effects."""

    __slots__ = ("any_closed", "controls", "effects", "limits", "now", "opaque")

    def __init__(self, now: int, limits: Limits, controls: ControlView) -> None:
        self.now = now
        self.limits = limits
        self.controls = controls
        self.any_closed = bool(controls.closures)  # nothing closed: the usual case, one test a step
        self.effects: list[Effect] = []
        self.opaque: list[Any] | None = None  # parsed FlowState.opaque, parsed at most once

    def parts(self, st: FlowState) -> list[Any]:
        if self.opaque is None:
            parsed: list[Any]
            if not st.opaque:
                parsed = []
            elif st.opaque[0] == _WIDE_MARK:
                parsed = exactjson.loads(st.opaque)  # an integer beyond 64 bits: read exactly
            else:
                parsed = orjson.loads(st.opaque)
            self.opaque = parsed
        return self.opaque


def decide(
    state: FlowState | None,
    event: Event,
    now_ms: int,
    limits: Limits,
    controls: ControlView = NO_CONTROLS,
) -> Decision:
    """The new state of one message and the effects to produce, given an input at ``now_ms``.

    ``controls`` is the channel-control view at that moment (for a ControlEvent: including it);
    a step on a channel it says is closed is skipped. ``state`` is never modified.
    ``Decision.state is None`` means: delete the stored state. When nothing changes the very same
    ``state`` object comes back with no effects.
    """
    if state is not None:
        event_id = _event_message_id(event)
        if event_id is not None and event_id != state.message_id:
            return Decision(state, (DeadLetter(_KEY_MISMATCH),))
    ctx = _Ctx(now_ms, limits, controls)
    st = _advance(ctx, state.copy() if state is not None else None)
    if isinstance(event, RequestEvent):
        st = _on_request(ctx, st, event.request)
    elif isinstance(event, CancelEvent):
        st = _on_cancel(ctx, st, event.cancel)
    elif isinstance(event, StatusEvent):
        st = _on_status(ctx, st, event.status)
    elif isinstance(event, ControlEvent):
        st = _on_control(ctx, st, event)
    # A TimerEvent needs nothing more: _advance fires whatever is due at now_ms.
    st = _advance(ctx, st)

    # An unchanged state comes back as the very same object, so the runtime can skip the write.
    return Decision(state if st == state else st, tuple(ctx.effects))


def _event_message_id(event: Event) -> str | None:
    if isinstance(event, RequestEvent):
        return event.request.message_id
    if isinstance(event, CancelEvent):
        return event.cancel.message_id
    if isinstance(event, StatusEvent):
        return event.status.message_id
    return None


def _signal(status: DeliveryStatus) -> Signal:
    return Signal(
        attempt=status.attempt,
        channel=status.channel,
        status=status.status,
        provider_message_id=status.provider_message_id,
        occurred_ms=to_ms(status.occurred_at) if status.occurred_at is not None else None,
        reasons=_reasons(status.reasons) if status.reasons and status.status in FAILURE_STATUSES else (),
    )


def _reasons(values: list[str]) -> tuple[str, ...]:
    """The gateway's reasons, bounded (blank ones say nothing and are left out)."""
    kept = [r for r in values if r.strip()][:MAX_REASONS]
    return tuple(r if len(r) <= MAX_REASON_CHARS else r[: MAX_REASON_CHARS - 1] + "\u2026" for r in kept)


# ------------------------------------------------------------------------------------------- timers


def _open_attempt(st: FlowState) -> int | None:
    """The index of the attempt still running (only ever the latest one), if any."""
    if st.attempts and st.attempts[-1].ended_by is None:
        return len(st.attempts) - 1
    return None


def _deadline(st: FlowState, limits: Limits) -> int | None:
    if st.phase is Phase.HOLDING:
        return min((h.until_ms for h in st.held), default=None)
    if st.phase is Phase.ENDED:
        return st.completed_ms + max(limits.dedup_ms, limits.late_status_ms)
    due = st.end_ms
    if st.deferred is not None:
        return min(due, st.deferred.wake_ms)
    idx = _open_attempt(st)
    if idx is not None:
        after = st.steps[idx].fallback_after_ms
        if after is not None:
            due = min(due, st.attempts[idx].issued_ms + after)
    return due


def _advance(ctx: _Ctx, st: FlowState | None) -> FlowState | None:
    """Fire every timer due at ``ctx.now``; return the state with its next deadline set."""
    for _ in range(_MAX_FIRES):
        if st is None:
            return None
        if st.phase is Phase.HOLDING and not st.held:
            return None
        st.deadline_ms = _deadline(st, ctx.limits)
        if st.deadline_ms is None or st.deadline_ms > ctx.now:
            return st
        st = _fire(ctx, st)
    raise AssertionError(f"timers of {st!r} kept firing at {ctx.now}")  # pragma: no cover


def _fire(ctx: _Ctx, st: FlowState) -> FlowState | None:
    if st.phase is Phase.HOLDING:
        # A held status whose request never came: dropped, with no outcome (nothing was accepted).
        st.held = [h for h in st.held if h.until_ms > ctx.now]
        return st if st.held else None
    if st.phase is Phase.ENDED:
        return None  # dedup and late-status windows are over
    if ctx.now >= st.end_ms:
        # The flow's end beats a fallback due at the same moment: no attempt after the end.
        _end(ctx, st, Result.EXPIRED, open_end=AttemptEnd.EXPIRED)
        return st
    deferred = st.deferred
    if deferred is not None:
        # The window opened for the step it held back: issue it (or skip, or defer it again).
        st.deferred = None
        _next_step(ctx, st, deferred.reason, due_ms=deferred.due_ms)
        return st
    idx = _open_attempt(st)
    assert idx is not None  # the deadline was this attempt's fallbackAfter
    after = st.steps[idx].fallback_after_ms
    assert after is not None
    st.attempts[idx] = st.attempts[idx].ended_as(AttemptEnd.TIMEOUT)
    # The next step fell due at the deadline, not when a late timer (a processor down, a tick)
    # found it: a deferral's deferredFrom says that moment.
    _next_step(ctx, st, CommandReason.TIMEOUT, fell_due_ms=st.attempts[idx].issued_ms + after)
    return st


# ------------------------------------------------------------------------------------------- inputs


def _on_request(ctx: _Ctx, st: FlowState | None, req: SendRequest) -> FlowState | None:
    if st is not None and st.phase is not Phase.HOLDING:
        if req.fingerprint() != st.fingerprint:
            ctx.effects.append(DeadLetter(_CONFLICT))
        return st  # a harmless repeat issues nothing; a conflict leaves the flow untouched
    held = st.held if st is not None else []
    requested_ms = to_ms(req.requested_at) if req.requested_at is not None else ctx.now
    if req.expires_at is not None:
        end_ms = to_ms(req.expires_at)
    elif req.ttl is not None:
        end_ms = requested_ms + seconds_to_ms(req.ttl)
    else:
        end_ms = requested_ms + ctx.limits.max_flow_ms
    flow = FlowState(
        phase=Phase.RUNNING,
        message_id=req.message_id,
        fingerprint=req.fingerprint(),
        destination=req.destination,
        tenant=req.tenant,
        campaign_id=req.campaign_id,
        simulation=req.simulation,
        requested_ms=requested_ms,
        end_ms=end_ms,
        steps=tuple([_step(s) for s in req.channels]),
    )
    if req.send_window is not None:
        flow.window = window_of(req.send_window)
    parts = [req.metadata, *(s.content for s in req.channels)]
    try:
        flow.opaque = orjson.dumps(parts)
    except orjson.JSONEncodeError:
        # An integer beyond 64 bits (JSON has no bound): written exactly and marked, so that it is
        # read back exactly too (orjson would read it as a float).
        flow.opaque = b" " + exactjson.dumps(parts)
    ctx.opaque = parts  # already in hand: no need to parse the bytes just written
    if req.initial_attempt is not None:
        # Upstream sent step 0 itself: no command, its timer runs from sentAt.
        flow.attempts.append(
            Attempt(
                issued_ms=to_ms(req.initial_attempt.sent_at),
                provider_message_id=req.initial_attempt.provider_message_id,
            )
        )
    elif ctx.now < end_ms:
        _next_step(ctx, flow, CommandReason.INITIAL)
    # Statuses that raced ahead of the request apply now, in arrival order.
    for h in held:
        _apply(ctx, flow, h.signal)
    if req.initial_attempt is not None and flow.phase is Phase.RUNNING and ctx.now < end_ms:
        _cut_short_if_closed(ctx, flow)
    return flow


def _cut_short_if_closed(ctx: _Ctx, st: FlowState) -> None:
    """An attempt upstream sent itself (``initialAttempt``) on a channel closed with ``inFlight:
    FALLBACK`` ends at once, as the sweep ends any attempt open on it.

    The sweep reaches a flow when the record is read and again whenever an instance gains its
    partition; without this, a request arriving in between kept its attempt open until the next
    rebalance happened to sweep it, so the decision hung on a rebalance and a replay disagreed.
    """
    idx = _open_attempt(st)
    if (
        idx is None
        or not ctx.any_closed
        or ctx.controls.cutting(st.steps[idx].channel, st.tenant, ctx.now) is None
    ):
        return
    _cut_short(ctx, st, idx)


def _cut_short(ctx: _Ctx, st: FlowState, idx: int) -> None:
    """Open attempt ``idx`` ends on a channel closed with ``inFlight: FALLBACK``: as if its
    fallbackAfter had passed (endedBy TIMEOUT), and the next step falls due (reason TIMEOUT)."""
    st.attempts[idx] = st.attempts[idx].ended_as(AttemptEnd.TIMEOUT)
    _next_step(ctx, st, CommandReason.TIMEOUT, closed=True)


#: (channel, fallbackAfter, successStatus) -> its Step. A Step is a frozen value computed from these
#: three alone, and the chains of a stream repeat a few shapes, so equal steps share one instance
#: (as the copies of a FlowState already do) instead of being built per request. Bounded like the
#: timestamp caches of ``contracts.timefmt``; a pure memo, so decisions stay deterministic.
_STEPS: dict[tuple[Channel, float | None, str], Step] = {}
_STEPS_MAX = 1024


def _step(s: ChannelStep) -> Step:
    key = (s.channel, s.fallback_after, s.success_status)
    step = _STEPS.get(key)
    if step is None:
        if len(_STEPS) >= _STEPS_MAX:
            _STEPS.clear()
        step = _STEPS[key] = Step(
            channel=s.channel,
            fallback_after_ms=seconds_to_ms(s.fallback_after) if s.fallback_after is not None else None,
            success_rank=PROGRESS_RANK[s.success_status],
        )
    return step


def _on_cancel(ctx: _Ctx, st: FlowState | None, cancel: CancelRequest) -> FlowState | None:
    if st is None or st.phase is not Phase.RUNNING:
        return st  # unknown or ended message: nothing changes
    _end(ctx, st, Result.CANCELLED, open_end=AttemptEnd.CANCELLED, reason=cancel.reason)
    return st


def _on_status(ctx: _Ctx, st: FlowState | None, status: DeliveryStatus) -> FlowState | None:
    sig = _signal(status)
    until = ctx.now + ctx.limits.orphan_status_ms
    if st is None:
        return FlowState(phase=Phase.HOLDING, message_id=status.message_id, held=[Held(sig, until)])
    if st.phase is Phase.HOLDING:
        if len(st.held) >= MAX_HELD:
            ctx.effects.append(DeadLetter(_HELD_FULL))
        else:
            st.held.append(Held(sig, until))
        return st
    _apply(ctx, st, sig)
    return st


def _apply(ctx: _Ctx, st: FlowState, sig: Signal) -> None:
    if st.phase is Phase.RUNNING:
        _running_status(ctx, st, sig)
    elif st.phase is Phase.ENDED:
        _ended_status(ctx, st, sig)


def _locate(st: FlowState, sig: Signal) -> int | None:
    """The issued attempt a status belongs to; ``None`` for an unknown, not-yet-issued or skipped one."""
    if sig.attempt is not None:
        if (
            sig.attempt < len(st.attempts)
            and st.steps[sig.attempt].channel == sig.channel
            and st.attempts[sig.attempt].ended_by is not AttemptEnd.SKIPPED
        ):
            return sig.attempt
        return None
    for idx in range(len(st.attempts) - 1, -1, -1):
        if st.steps[idx].channel == sig.channel and st.attempts[idx].ended_by is not AttemptEnd.SKIPPED:
            return idx  # no attempt number: the latest attempt on that channel
    return None


def _succeeded(st: FlowState, idx: int) -> bool:
    last = st.attempts[idx].last_status
    rank = PROGRESS_RANK.get(last) if last is not None else None
    return rank is not None and rank >= st.steps[idx].success_rank


_DELIVERED_RANK = PROGRESS_RANK["DELIVERED"]


def _reached_person(st: FlowState, idx: int) -> bool:
    """The attempt's last status says the handset has it (DELIVERED or READ)."""
    last = st.attempts[idx].last_status
    return last is not None and PROGRESS_RANK.get(last, 0) >= _DELIVERED_RANK


def _progress(st: FlowState, idx: int, sig: Signal, now: int | None = None) -> Attempt | None:
    """The attempt moved on by ``sig``, or ``None`` when ``sig`` does not move it forwards.

    A provider message id is remembered (first one wins) even from a status that moves nothing; so
    are, given ``now`` (while the flow runs), the first time of each progress status and the first
    failure reasons: facts for the outcome, whatever the order the reports arrive in.
    """
    a = st.attempts[idx]
    pid = a.provider_message_id if a.provider_message_id is not None else sig.provider_message_id
    times = a.status_times
    reasons = a.reasons
    if now is not None:
        rank = PROGRESS_RANK.get(sig.status)
        if rank is not None and times[rank - 1] is None:
            when = sig.occurred_ms if sig.occurred_ms is not None else now
            times = (*times[: rank - 1], when, *times[rank:])
        if sig.reasons and not reasons:
            reasons = sig.reasons
    current = ORDER[a.last_status] if a.last_status is not None else 0
    if ORDER[sig.status] <= current:
        if pid != a.provider_message_id or times is not a.status_times or reasons is not a.reasons:
            st.attempts[idx] = a.with_facts(a.last_status, pid, times, reasons)
        return None
    moved = a.with_facts(sig.status, pid, times, reasons)
    st.attempts[idx] = moved
    return moved


def _running_status(ctx: _Ctx, st: FlowState, sig: Signal) -> None:
    idx = _locate(st, sig)
    if idx is None:
        return
    moved = _progress(st, idx, sig, ctx.now)
    if moved is None:
        return
    if _succeeded(st, idx):
        st.attempts[idx] = moved.ended_as(AttemptEnd.SUCCEEDED)
        last = len(st.attempts) - 1
        if last != idx and st.attempts[last].ended_by is None:
            # An earlier attempt succeeded after a later one was issued: that one is superseded.
            st.attempts[last] = st.attempts[last].ended_as(AttemptEnd.SUPERSEDED)
        _end(ctx, st, Result.SUCCEEDED, channel=st.steps[idx].channel, status=sig.status)
    elif sig.status in FAILURE_STATUSES and idx == _open_attempt(st):
        st.attempts[idx] = moved.ended_as(AttemptEnd.FAILED)
        _next_step(ctx, st, CommandReason.FAILED)
    # A failure of an attempt the chain already left behind only updates its lastStatus.


def _ended_status(ctx: _Ctx, st: FlowState, sig: Signal) -> None:
    if ctx.now >= st.completed_ms + ctx.limits.late_status_ms:
        return  # kept only for dedup now; late statuses are no longer reported
    idx = _locate(st, sig)
    if idx is None:
        return
    rank = PROGRESS_RANK.get(sig.status)
    if rank is None:
        return
    # doubleDelivery is about the person: another attempt that succeeded, or that reached the handset
    # (DELIVERED or above) whatever its own successStatus, means they got the message twice.
    double = any(_succeeded(st, j) or _reached_person(st, j) for j in range(len(st.attempts)) if j != idx)
    # Reported: this step's own success, or a status that reached the person while someone else had
    # too (a READ-step DELIVERED after SMS won; issue 9).
    if rank < st.steps[idx].success_rank and not (rank >= _DELIVERED_RANK and double):
        return
    if _progress(st, idx, sig) is None:
        return  # a repeat of what this attempt already reported
    ctx.effects.append(
        EmitLateStatus(
            LateStatus(
                message_id=st.message_id,
                attempt=idx,
                channel=st.steps[idx].channel,
                status=sig.status,
                occurred_at=from_ms(sig.occurred_ms if sig.occurred_ms is not None else ctx.now),
                double_delivery=double,
            )
        )
    )


# ------------------------------------------------------------------------------- attempts and ends


def _on_control(ctx: _Ctx, st: FlowState | None, event: ControlEvent) -> FlowState | None:
    """A channel closed with ``inFlight: FALLBACK`` ends this message's open attempt on it at once.

    As if its fallbackAfter had passed (endedBy TIMEOUT, next reason TIMEOUT). Any other record
    changes nothing here: the view handed to every decision is what skips the steps still to come.
    """
    rec = event.control
    if st is None or st.phase is not Phase.RUNNING or rec is None:
        return st
    if rec.state is not ChannelState.CLOSED or rec.in_flight is not InFlight.FALLBACK:
        return st
    if rec.tenant is not None and rec.tenant != st.tenant:
        return st
    if rec.until is not None and ctx.now >= to_ms(rec.until):
        return st  # reopened already
    idx = _open_attempt(st)
    if idx is None or st.steps[idx].channel != rec.channel:
        return st
    _cut_short(ctx, st, idx)
    return st


def _next_step(
    ctx: _Ctx,
    st: FlowState,
    reason: CommandReason,
    *,
    closed: bool = False,
    due_ms: int | None = None,
    fell_due_ms: int | None = None,
) -> None:
    """Step ``len(st.attempts)`` falls due now: issue it, skip it, hold it for the window, or end.

    ``reason`` is what its command will say; ``due_ms`` is when it first fell due, if a send window
    held it back until now; ``fell_due_ms`` is when it fell due when that was before now (a timer
    fired late), what a deferral then records; ``closed`` says the step before ended because its
    channel was closed.
    A step on a closed channel is skipped (an attempt SKIPPED, no command) and the next one falls due
    at once, with reason SKIPPED; with none left the message ends FAILED, reason CHANNELS_CLOSED.
    A step outside its send window waits for the next opening (a timer), unless that is at or after
    the expiry: then the message ends EXPIRED, reason OUTSIDE_SEND_WINDOW.
    """
    while True:
        n = len(st.attempts)
        if n >= len(st.steps):
            # The last step failed or timed out, or was skipped / cut short by a closed channel.
            _end(ctx, st, Result.FAILED, reason=EndReason.CHANNELS_CLOSED if closed else None)
            return
        if ctx.now >= st.end_ms:
            _end(ctx, st, Result.EXPIRED)  # no attempt is issued after the flow's end
            return
        if ctx.any_closed and ctx.controls.closed(st.steps[n].channel, st.tenant, ctx.now):
            st.attempts.append(Attempt(issued_ms=ctx.now, ended_by=AttemptEnd.SKIPPED))
            reason, closed, due_ms, fell_due_ms = CommandReason.SKIPPED, True, None, None
            continue
        window = st.window
        if window is not None and window.applies(n) and not window.is_open(ctx.now):
            wake = window.next_opening(ctx.now)
            if wake >= st.end_ms:
                _end(ctx, st, Result.EXPIRED, reason=EndReason.OUTSIDE_SEND_WINDOW)
                return
            first = due_ms if due_ms is not None else fell_due_ms if fell_due_ms is not None else ctx.now
            st.deferred = Deferred(first, wake, reason)
            return
        if (
            due_ms is None
            and fell_due_ms is not None
            and window is not None
            and window.applies(n)
            and not window.is_open(fell_due_ms)
        ):
            # A timer fired late, inside the window, for a step that fell due outside it: that step
            # was held for the opening all the same, and its command says so.
            due_ms = fell_due_ms
        _issue(ctx, st, reason, due_ms)
        return


def _issue(ctx: _Ctx, st: FlowState, reason: CommandReason, due_ms: int | None = None) -> None:
    n = len(st.attempts)
    step = st.steps[n]
    previous = None
    if n > 0:
        prev = st.attempts[n - 1]
        previous = PreviousAttempt(attempt=n - 1, channel=st.steps[n - 1].channel, status=prev.last_status)
    parts = ctx.parts(st)
    # Built without re-validation: every value was validated with its request or is the core's own.
    command = trusted.command(
        message_id=st.message_id,
        attempt=n,
        channel=step.channel,
        destination=st.destination,
        content=parts[1 + n],
        reason=reason,
        previous=previous,
        issued_at=from_ms(ctx.now),
        not_after=from_ms(st.end_ms),
        simulation=st.simulation,
        tenant=st.tenant,
        campaign_id=st.campaign_id,
        deferred_from=None if due_ms is None else from_ms(due_ms),
    )
    st.attempts.append(Attempt(issued_ms=ctx.now))
    ctx.effects.append(SendCommand(command))


def _end(
    ctx: _Ctx,
    st: FlowState,
    result: Result,
    *,
    open_end: AttemptEnd | None = None,
    channel: Channel | None = None,
    status: Status | None = None,
    reason: str | None = None,
) -> None:
    """Emit the one outcome and shrink the state to what repeats and late statuses need."""
    idx = _open_attempt(st)
    if open_end is not None and idx is not None:
        st.attempts[idx] = st.attempts[idx].ended_as(open_end)
    parts = ctx.parts(st)
    outcome = trusted.outcome(
        message_id=st.message_id,
        tenant=st.tenant,
        campaign_id=st.campaign_id,
        result=result,
        channel=channel,
        status=status,
        attempt_count=len(st.attempts),
        attempts=[
            trusted.attempt_summary(
                attempt=i,
                channel=st.steps[i].channel,
                issued_at=from_ms(a.issued_ms),
                last_status=a.last_status,
                ended_by=a.ended_by,
                provider_message_id=a.provider_message_id,
                status_times=_status_times(a),
                reasons=list(a.reasons) if a.reasons else None,
            )
            for i, a in enumerate(st.attempts)
        ],
        reason=reason,
        requested_at=from_ms(st.requested_ms),
        completed_at=from_ms(ctx.now),
        duration_ms=max(0, ctx.now - st.requested_ms),
        metadata=parts[0] if parts else {},
    )
    ctx.effects.append(EmitOutcome(outcome))
    st.phase = Phase.ENDED
    st.completed_ms = ctx.now
    st.destination = ""
    st.tenant = None
    st.campaign_id = None
    st.opaque = b""
    st.held = []
    st.window = None
    st.deferred = None
    # The per-attempt facts were for this outcome only: the ended state keeps what late statuses need.
    st.attempts = [_bare(a) for a in st.attempts]
    ctx.opaque = None


def _status_times(a: Attempt) -> dict[SuccessStatus, datetime] | None:
    """``statusTimes`` of an outcome attempt, in progress order; ``None`` when nothing was reported."""
    if a.status_times == NO_TIMES:
        return None
    return {name: from_ms(ms) for name, ms in zip(_PROGRESS, a.status_times, strict=True) if ms is not None}


def _bare(a: Attempt) -> Attempt:
    if a.status_times == NO_TIMES and not a.reasons:
        return a
    return a.with_facts(a.last_status, a.provider_message_id, NO_TIMES, ())
