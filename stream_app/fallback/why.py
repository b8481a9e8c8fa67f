"""Why a decision was taken: the rule behind each step of :func:`decide`, read off its transition.

``stream-app explain`` replays a message's inputs through the runtime's own step and must say, for
each decision, which rule of the core applied ("WHATSAPP attempt 0 still SENT at fallbackAfter 7200 s
-> SMS, reason TIMEOUT"). That is derived here from what the core already returns, never computed a
second way: the state before, the state after and the effects. ``decide()`` itself is untouched, so the
hot path pays nothing, the wire format is the same, and a rule added to the core shows up here as the
attempt end or command reason it produces (an unknown end is named by its value).

Pure like the rest of the room: no clock, no I/O; the same transition always gives the same reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stream_app.contracts import (
    PROGRESS_RANK,
    STATUS_ORDER,
    AttemptEnd,
    ChannelControl,
    ChannelState,
    CommandReason,
    EndReason,
    InFlight,
    Result,
    RetryCommand,
    format_ms,
    to_ms,
)
from stream_app.fallback.control import NO_CONTROLS, Closure, ControlView
from stream_app.fallback.state import (
    Attempt,
    CancelEvent,
    ControlEvent,
    DeadLetter,
    Effect,
    EmitLateStatus,
    EmitOutcome,
    Event,
    FlowState,
    Phase,
    RequestEvent,
    SendCommand,
    StatusEvent,
    Step,
    TimerEvent,
)

_SUCCESS_NAMES = {rank: name for name, rank in PROGRESS_RANK.items()}


class Rule(StrEnum):
    """The rules of the core a decision can apply (CONTRACT.md, docs/semantics.md)."""

    ACCEPTED = "ACCEPTED"  # a new request: its chain starts
    UPSTREAM_SENT = "UPSTREAM_SENT"  # initialAttempt: upstream sent step 0, its timer runs from sentAt
    INITIAL = "INITIAL"  # step 0 issued
    HELD = "HELD"  # a status before its request: held
    HELD_APPLIED = "HELD_APPLIED"  # held statuses applied when the request came
    HELD_DROPPED = "HELD_DROPPED"  # held statuses whose request never came within the orphan time
    REPEAT = "REPEAT"  # the same request again: nothing issued
    PROGRESS = "PROGRESS"  # a status moved an attempt on, nothing else
    NO_CHANGE = "NO_CHANGE"  # a status that moves nothing (older, repeated, unknown attempt)
    SUCCESS = "SUCCESS"  # an attempt reached its step's successStatus
    SUPERSEDED = "SUPERSEDED"  # an earlier attempt succeeded while this one was open
    FAILURE = "FAILURE"  # the open attempt got a failure status: next step
    TIMEOUT = "TIMEOUT"  # fallbackAfter passed without successStatus: next step
    FLOW_END = "FLOW_END"  # ttl / expiresAt / max flow time passed: EXPIRED
    LAST_STEP = "LAST_STEP"  # the last step failed or timed out: FAILED
    CANCELLED = "CANCELLED"  # a cancel stopped the message
    CANCEL_IGNORED = "CANCEL_IGNORED"  # a cancel of an unknown or ended message
    LATE_STATUS = "LATE_STATUS"  # a success after the end, reported
    AFTER_END = "AFTER_END"  # a status after the end, not reported
    FORGOTTEN = "FORGOTTEN"  # dedup and late-status windows over: the messageId is new again
    DEAD_LETTER = "DEAD_LETTER"  # the input is refused (conflict, wrong key, too many held)
    # v1.1 (quiet hours, channel control)
    CHANNEL_CONTROL = "CHANNEL_CONTROL"  # a channel-control record changed the control view
    SKIPPED = "SKIPPED"  # a step on a closed channel is not issued: the chain moves on at once
    CONTROL = "CONTROL"  # a channel-control record (inFlight FALLBACK) ended the open attempt
    CHANNELS_CLOSED = "CHANNELS_CLOSED"  # no step left after a closed channel's: outcome FAILED
    DEFERRED = "DEFERRED"  # a step due outside its send window waits for the next opening
    OUTSIDE_SEND_WINDOW = "OUTSIDE_SEND_WINDOW"  # the window opens at or after the end: EXPIRED
    OTHER = "OTHER"  # an attempt end or change this module does not know yet (named by its value)


@dataclass(frozen=True, slots=True)
class Why:
    """One rule applied by one decision: which, to which attempt (if any), said in one line."""

    rule: Rule
    text: str
    attempt: int | None = None


def explain(
    before: FlowState | None,
    event: Event,
    after: FlowState | None,
    effects: tuple[Effect, ...],
    controls: ControlView = NO_CONTROLS,
) -> tuple[Why, ...]:
    """The rules that turned ``before`` into ``after`` with ``effects``, in the order they applied.

    ``controls`` is the channel-control view the decision was taken with (the one handed to
    :func:`decide`): a step it skipped is named with the record that closed its channel.
    """
    out: list[Why] = []
    dead = [e.reason for e in effects if isinstance(e, DeadLetter)]
    commands = [e.command for e in effects if isinstance(e, SendCommand)]
    outcomes = [e.outcome for e in effects if isinstance(e, EmitOutcome)]
    lates = [e.late for e in effects if isinstance(e, EmitLateStatus)]
    out.extend(Why(Rule.DEAD_LETTER, f"input dead-lettered: {reason}") for reason in dead)
    was = before.phase if before is not None else None
    now_phase = after.phase if after is not None else None

    # The message as a whole: a new request, a held status, a repeat, a cancel, the end of its retention.
    if isinstance(event, RequestEvent) and was in (None, Phase.HOLDING) and after is not None:
        out.append(
            Why(Rule.ACCEPTED, f"request accepted: {_chain(after.steps)}; ends {format_ms(after.end_ms)}")
        )
        if event.request.initial_attempt is not None and after.attempts:
            sent = format_ms(after.attempts[0].issued_ms)
            out.append(
                Why(
                    Rule.UPSTREAM_SENT,
                    f"upstream sent step 0 itself (initialAttempt): no command, timer from {sent}",
                    0,
                )
            )
        held = len(before.held) if before is not None else 0
        if held:
            out.append(Why(Rule.HELD_APPLIED, f"{held} held status(es) applied now, in arrival order"))
    elif isinstance(event, RequestEvent) and was in (Phase.RUNNING, Phase.ENDED) and not dead:
        out.append(Why(Rule.REPEAT, "the same request again (apart from requestedAt): nothing issued"))
    elif (
        isinstance(event, StatusEvent)
        and was in (None, Phase.HOLDING)
        and now_phase is Phase.HOLDING
        and not dead
    ):
        assert after is not None
        until = format_ms(after.held[-1].until_ms)
        out.append(
            Why(
                Rule.HELD, f"status before its request: held until {until} (STREAM_APP_ORPHAN_STATUS_SECONDS)"
            )
        )
    elif isinstance(event, CancelEvent) and not any(o.result is Result.CANCELLED for o in outcomes):
        out.append(Why(Rule.CANCEL_IGNORED, "cancel of an unknown or ended message: nothing changes"))
    if was is Phase.HOLDING and isinstance(event, TimerEvent):
        dropped = (
            len(before.held) - (len(after.held) if after is not None else 0) if before is not None else 0
        )
        out.append(Why(Rule.HELD_DROPPED, f"{dropped} held status(es) dropped: their request never came"))
    if was is Phase.ENDED and after is None:
        out.append(Why(Rule.FORGOTTEN, "dedup and late-status windows over: the messageId is forgotten"))

    # Attempt by attempt: what moved, what ended and why, and the command that followed.
    old = before.attempts if before is not None and was is not Phase.HOLDING else []
    new = after.attempts if after is not None else []
    steps = after.steps if after is not None else ()
    by_attempt = {c.attempt: c for c in commands}
    control = event if isinstance(event, ControlEvent) else None
    tenant = _tenant(before, event, after)
    explained: set[int] = set()  # attempts whose command an attempt end below names
    for i, a in enumerate(new):
        prev = old[i] if i < len(old) else None
        if prev is None:  # issued in this decision (its command, or initialAttempt's none)
            cmd = by_attempt.get(i)
            if cmd is not None and cmd.reason is CommandReason.INITIAL:
                out.append(Why(Rule.INITIAL, f"-> {cmd.channel.value} attempt {i}, reason INITIAL", i))
                explained.add(i)
            prev = Attempt(issued_ms=a.issued_ms)
        if a.ended_by != prev.ended_by and a.ended_by is not None:
            nxt = by_attempt.get(i + 1)
            if nxt is not None:
                explained.add(i + 1)
            closure = (
                controls.closing(steps[i].channel, tenant, a.issued_ms)
                if a.ended_by is AttemptEnd.SKIPPED and i < len(steps)
                else None
            )
            if (
                closure is None
                and a.ended_by is AttemptEnd.TIMEOUT
                and isinstance(event, RequestEvent)
                and i < len(steps)
            ):
                # an initialAttempt on a channel closed with inFlight FALLBACK: cut short on arrival,
                # at the moment of the next command (or of the outcome, when none is left)
                at = nxt.issued_at if nxt is not None else outcomes[0].completed_at if outcomes else None
                closure = None if at is None else controls.cutting(steps[i].channel, tenant, to_ms(at))
            # the send window holds the step after the last attempt of this decision, not any other
            deferred = after is not None and after.deferred is not None and i == len(new) - 1
            out.append(_ended(i, a, steps, nxt, control=control, closure=closure, deferred=deferred))
        elif a.last_status != prev.last_status and a.last_status is not None and not lates:
            rule = Rule.PROGRESS if now_phase is not Phase.ENDED else Rule.AFTER_END
            text = f"{_name(steps, i)}: {_status(prev)} -> {a.last_status.value}"
            if a.ended_by is not None and rule is Rule.PROGRESS:
                text += f" (it already ended {a.ended_by.value}: only its lastStatus changes)"
            out.append(Why(rule, text, i))
    deferral = _deferral(before, after)
    if deferral is not None:
        out.append(deferral)
    for cmd in commands:  # a command no attempt end above explained: a deferred step, or a new rule
        if cmd.attempt not in explained:
            text = f"-> {cmd.channel.value} attempt {cmd.attempt}, reason {cmd.reason.value}"
            if cmd.deferred_from is not None:
                due = format_ms(to_ms(cmd.deferred_from))
                text += f": the send window is open (deferredFrom {due}, when the step fell due)"
                out.append(Why(Rule.DEFERRED, text, cmd.attempt))
            else:
                out.append(Why(Rule.OTHER, text, cmd.attempt))

    for late in lates:
        twice = "the person got it twice (doubleDelivery)" if late.double_delivery else "doubleDelivery false"
        out.append(
            Why(
                Rule.LATE_STATUS,
                f"{late.channel.value} attempt {late.attempt} {late.status.value} after the end: "
                f"late-status, {twice}",
                late.attempt,
            )
        )
    for o in outcomes:
        out.append(
            _outcome_why(o.result, o.channel.value if o.channel else None, o.status, o.reason, before, after)
        )

    if isinstance(event, StatusEvent) and not out:
        out.append(Why(Rule.NO_CHANGE, _no_change(before, event)))
    return tuple(out)


def _ended(
    i: int,
    a: Attempt,
    steps: tuple[Step, ...],
    nxt: RetryCommand | None,
    *,
    control: ControlEvent | None = None,
    closure: tuple[str, Closure] | None = None,
    deferred: bool = False,
) -> Why:
    """The rule that ended attempt ``i``, with the next command (or deferral) it led to, if any.

    ``control`` is the channel-control record being applied, ``closure`` the view's entry that
    closed a skipped step's channel (or cut short an ``initialAttempt`` on it).
    """
    name = _name(steps, i)
    step = steps[i] if i < len(steps) else None
    then = f" -> {nxt.channel.value}, reason {nxt.reason.value}" if nxt is not None else ""
    if nxt is not None and nxt.deferred_from is not None:
        # a late timer, inside the window, for a deadline outside it
        due = format_ms(to_ms(nxt.deferred_from))
        then += f" (deferredFrom {due}: it fell due outside the send window)"
    if nxt is None and deferred:
        then = " -> the next step waits for the send window (DEFERRED)"
    end = a.ended_by
    if end is AttemptEnd.TIMEOUT and control is not None:
        rec = control.control
        by = _closed_text(control.key, rec) if rec is not None else f"channel-control {control.key!r}"
        text = f"{name} still {_status(a)}, cut short by {by}{then}"
        return Why(Rule.CONTROL, text, i)
    if end is AttemptEnd.TIMEOUT and closure is not None:
        text = f"{name} sent by upstream on a closed channel, cut short by {_closure_text(*closure)}{then}"
        return Why(Rule.CONTROL, text, i)
    if end is AttemptEnd.TIMEOUT:
        after = (
            f"{_seconds(step.fallback_after_ms)} s" if step and step.fallback_after_ms is not None else "?"
        )
        return Why(Rule.TIMEOUT, f"{name} still {_status(a)} at fallbackAfter {after}{then}", i)
    if end is AttemptEnd.FAILED:
        return Why(Rule.FAILURE, f"{name} got {_status(a)}, a failure status{then}", i)
    if end is AttemptEnd.SUCCEEDED:
        wanted = _SUCCESS_NAMES.get(step.success_rank, "?") if step else "?"
        return Why(Rule.SUCCESS, f"{name} reached {_status(a)} (successStatus {wanted})", i)
    if end is AttemptEnd.SUPERSEDED:
        return Why(Rule.SUPERSEDED, f"{name} superseded: an earlier attempt succeeded while it was open", i)
    if end is AttemptEnd.EXPIRED:
        return Why(Rule.FLOW_END, f"{name} still {_status(a)} at the flow's end", i)
    if end is AttemptEnd.CANCELLED:
        return Why(Rule.CANCELLED, f"{name} cancelled while {_status(a)}", i)
    if end is AttemptEnd.SKIPPED:
        by = (
            _closure_text(closure[0], closure[1])
            if closure is not None
            else "a channel-control record no longer in the view"
        )
        return Why(Rule.SKIPPED, f"{name} not issued: {by}{then}", i)
    value = getattr(end, "value", end)
    return Why(Rule.OTHER, f"{name} ended {value} while {_status(a)}{then}", i)


def _deferral(before: FlowState | None, after: FlowState | None) -> Why | None:
    """A step the send window holds back in this decision (new, or held again by a late timer)."""
    d = after.deferred if after is not None else None
    if d is None or after is None or (before is not None and before.deferred == d):
        return None
    n = len(after.attempts)
    channel = after.steps[n].channel.value if n < len(after.steps) else "?"
    due, wake = format_ms(d.due_ms), format_ms(d.wake_ms)
    again = before is not None and before.deferred is not None
    what = "still outside the send window: held again" if again else "outside the send window: held"
    return Why(
        Rule.DEFERRED,
        f"{channel} attempt {n} (reason {d.reason.value}) fell due {due}, {what} until its next "
        f"opening {wake}; its command will say deferredFrom {due}",
        n,
    )


def control_change(key: str, record: ChannelControl | None, now_ms: int) -> Why:
    """What one (valid) channel-control record does to the view every decision is taken with."""
    if record is None:
        return Why(Rule.CHANNEL_CONTROL, f"tombstone of {key!r}: whatever it closed is open again")
    if record.state is ChannelState.OPEN:
        who = f"tenant {record.tenant}" if record.tenant is not None else "all"
        why = f" ({record.reason})" if record.reason else ""
        return Why(
            Rule.CHANNEL_CONTROL, f"channel-control {key!r}: {record.channel.value} open for {who}{why}"
        )
    text = f"{_closed_text(key, record)}: steps falling due on it are skipped"
    if record.in_flight is InFlight.FALLBACK:
        text += "; attempts open on it end now"
    if record.until is not None and to_ms(record.until) <= now_ms:
        text = f"{_closed_text(key, record)}: its until has already passed, it closes nothing"
    return Why(Rule.CHANNEL_CONTROL, text)


def _closed_text(key: str, record: ChannelControl) -> str:
    until = None if record.until is None else to_ms(record.until)
    return _closure_text(key, Closure(record.channel, record.tenant, until, record.in_flight, record.reason))


def _closure_text(key: str, c: Closure) -> str:
    """``channel-control 'WHATSAPP': WHATSAPP closed for all (provider outage), until ..., inFlight WAIT``."""
    who = f"tenant {c.tenant}" if c.tenant is not None else "all"
    why = f" ({c.reason})" if c.reason else ""
    until = f", until {format_ms(c.until_ms)}" if c.until_ms is not None else ", no until"
    return (
        f"channel-control {key!r}: {c.channel.value} closed for {who}{why}{until}, "
        f"inFlight {c.in_flight.value}"
    )


def _tenant(before: FlowState | None, event: Event, after: FlowState | None) -> str | None:
    """The message's tenant (an ended state no longer keeps it; its request does)."""
    if isinstance(event, RequestEvent):
        return event.request.tenant
    for st in (before, after):
        if st is not None and st.tenant is not None:
            return st.tenant
    return None


def _outcome_why(
    result: Result,
    channel: str | None,
    status: object,
    reason: str | None,
    before: FlowState | None,
    after: FlowState | None,
) -> Why:
    value = getattr(status, "value", status)
    if result is Result.SUCCEEDED:
        return Why(Rule.SUCCESS, f"outcome SUCCEEDED on {channel} {value}")
    if result is Result.CANCELLED:
        why = f" ({reason})" if reason else ""
        return Why(Rule.CANCELLED, f"cancelled{why}: outcome CANCELLED")
    if result is Result.EXPIRED:
        end = format_ms(after.end_ms) if after is not None and after.end_ms else "its end"
        if before is not None and before.end_ms:
            end = format_ms(before.end_ms)
        if reason == EndReason.OUTSIDE_SEND_WINDOW:
            return Why(
                Rule.OUTSIDE_SEND_WINDOW,
                f"the step due now is outside the send window, which next opens at or after the "
                f"message's end {end}: no command, outcome EXPIRED (OUTSIDE_SEND_WINDOW)",
            )
        extra = f" ({reason})" if reason else ""
        return Why(
            Rule.FLOW_END, f"the flow's end {end} passed (ttl/expiresAt/max flow): outcome EXPIRED{extra}"
        )
    if result is Result.FAILED:
        extra = f" ({reason})" if reason else ""
        steps = after.steps if after is not None else ()
        if reason == EndReason.CHANNELS_CLOSED:
            return Why(
                Rule.CHANNELS_CLOSED,
                f"no step left after step {len(steps) - 1}, the last skipped or cut short by a closed "
                "channel: outcome FAILED (CHANNELS_CLOSED)",
            )
        return Why(Rule.LAST_STEP, f"no step left after step {len(steps) - 1}: outcome FAILED{extra}")
    return Why(Rule.OTHER, f"outcome {getattr(result, 'value', result)}")  # pragma: no cover - a new result


def _no_change(before: FlowState | None, event: StatusEvent) -> str:
    s = event.status
    what = f"{s.channel.value} {s.status.value}" + (
        f" for attempt {s.attempt}" if s.attempt is not None else ""
    )
    if before is None or before.phase is Phase.HOLDING:
        return f"{what}: changes nothing"
    if s.attempt is not None and (
        s.attempt >= len(before.attempts) or before.steps[s.attempt].channel != s.channel
    ):
        return f"{what}: names no issued attempt on that channel: ignored"
    if s.attempt is None and not any(
        before.steps[i].channel == s.channel for i in range(len(before.attempts))
    ):
        return f"{what}: no attempt on that channel was issued: ignored"
    idx = (
        s.attempt
        if s.attempt is not None
        else max(i for i in range(len(before.attempts)) if before.steps[i].channel == s.channel)
    )
    a = before.attempts[idx]
    if a.last_status is not None and STATUS_ORDER[s.status] <= STATUS_ORDER[a.last_status]:
        return f"{what}: attempt {idx} is already {a.last_status.value}; progress never goes back"
    if before.phase is Phase.ENDED:
        return f"{what}: after the end, below attempt {idx}'s successStatus or outside the late-status window"
    return f"{what}: changes nothing"


def _chain(steps: tuple[Step, ...]) -> str:
    parts = []
    for s in steps:
        bits = []
        if s.fallback_after_ms is not None:
            bits.append(f"fallbackAfter {_seconds(s.fallback_after_ms)} s")
        bits.append(f"until {_SUCCESS_NAMES.get(s.success_rank, '?')}")
        parts.append(f"{s.channel.value}({', '.join(bits)})")
    return " > ".join(parts)


def _name(steps: tuple[Step, ...], i: int) -> str:
    channel = steps[i].channel.value if i < len(steps) else "?"
    return f"{channel} attempt {i}"


def _status(a: Attempt) -> str:
    return a.last_status.value if a.last_status is not None else "without a status"


def _seconds(ms: int) -> str:
    return f"{ms // 1000}" if ms % 1000 == 0 else f"{ms / 1000:g}"
