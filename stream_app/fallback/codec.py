"""Compact, versioned binary form of :class:`FlowState` (what the store and the changelog keep).

Millions of pending messages are stored, so the encoding is a struct-packed header plus one small
tuple per step, attempt and held status; lengths and small numbers are LEB128 varints (one byte for
anything under 128). Enum values are stored as one-byte codes from fixed tables below, never from
Python enum order, so a reordered enum cannot silently change the meaning of stored bytes. The
opaque parts of the request (metadata and each step's content) are kept as the orjson bytes the
core already holds, untouched.

Layout of version 2 (little-endian)::

    header   <BBBqqqq  version, phase, flags, deadline_ms, requested_ms, end_ms, completed_ms
    fingerprint        varint length + bytes (0 or 16)
    strings            message_id, destination, [tenant], [campaign_id]: varint length + UTF-8
    steps              count, then per step: channel code, success rank, varint(fallback_after_ms + 1)
    attempts           count, then per attempt: <q issued_ms, status code, end code, optional string
                       (provider id), facts byte, then one zigzag varint (time - issued_ms) per status
                       time present, then, if any, the reasons
    held               count, then per status: attempt + 1, channel, status, <qq until/occurred,
                       optional string (provider id), reasons
    opaque             varint length + bytes

Optional strings are ``varint(length + 1)``, 0 meaning absent; reasons are a varint count and as many
length-prefixed strings. The facts byte has bit ``rank - 1`` set for each progress status whose
first time is known and bit 4 when reasons follow: an attempt with no facts costs one byte, one
with its ACCEPTED and SENT times about seven (a time is stored relative to the attempt's issue, so a
few bytes rather than eight). Version 2 added those facts (issue 11 item 1, issue 13 item 2).

Version 3 (v1.1, issue 12) is version 2 plus two optional sections after ``opaque``, each present
when its flag bit is set: the send window (flag 16: zone name, weekday bitmask, ``from`` and ``to``
in minutes as varints, one byte ``appliesTo`` ALL) and the step it holds back (flag 32:
``<qq`` due and wake ms, the command reason's code); and the attempt end ``SKIPPED`` (code 7).
Version 2 bytes are read as they are (no window, nothing deferred).

Version 1, the same without the facts byte and its fields and without the held statuses' reasons,
is still read (a store or changelog written before the upgrade): its attempts come back with no
facts. Only the current version is written. A processor of the previous build refuses version 2
bytes with its one-line error, so a rollback after the upgrade must also restore the state.
"""

from __future__ import annotations

import struct

from stream_app.contracts import AttemptEnd, Channel, CommandReason, Status
from stream_app.fallback.errors import StateDecodeError
from stream_app.fallback.state import NO_TIMES, Attempt, Deferred, FlowState, Held, Phase, Signal, Step
from stream_app.fallback.window import Window

VERSION = 3
#: Versions this build reads.
READABLE = (1, 2, 3)

_HEADER = struct.Struct("<BBBqqqq")
_Q = struct.Struct("<q")
_QQ = struct.Struct("<qq")

_SIMULATION = 1
_HAS_DEADLINE = 2
_HAS_TENANT = 4
_HAS_CAMPAIGN = 8
_HAS_WINDOW = 16  # version 3
_HAS_DEFERRED = 32  # version 3
_UNKNOWN_FLAGS = ~(_SIMULATION | _HAS_DEADLINE | _HAS_TENANT | _HAS_CAMPAIGN | _HAS_WINDOW | _HAS_DEFERRED)
_HAS_OCCURRED = 1
_TIME_BITS = 0x0F  # facts byte: bit (rank - 1) per progress status time present
_HAS_REASONS = 0x10  # facts byte: reasons follow
#: time bits -> the indexes of the bits set, in order (decoding skips absent times without testing each).
_BITS_SET: tuple[tuple[int, ...], ...] = tuple(tuple(b for b in range(4) if m >> b & 1) for m in range(16))

# Fixed code tables: the stored byte is the index. Append only; never reorder.
_CHANNELS: tuple[Channel, ...] = (Channel.WHATSAPP, Channel.RCS, Channel.SMS, Channel.VIBER)
_STATUSES: tuple[Status | None, ...] = (
    None,
    Status.ACCEPTED,
    Status.SENT,
    Status.DELIVERED,
    Status.READ,
    Status.REJECTED,
    Status.ERROR,
    Status.EXPIRED,
)
_ENDS: tuple[AttemptEnd | None, ...] = (
    None,
    AttemptEnd.SUCCEEDED,
    AttemptEnd.FAILED,
    AttemptEnd.TIMEOUT,
    AttemptEnd.EXPIRED,
    AttemptEnd.CANCELLED,
    AttemptEnd.SUPERSEDED,
    AttemptEnd.SKIPPED,  # version 3
)
_REASONS: tuple[CommandReason, ...] = (
    CommandReason.INITIAL,
    CommandReason.FAILED,
    CommandReason.TIMEOUT,
    CommandReason.SKIPPED,
)
#: The phase byte is the Phase's value; a table like the others. ``Phase(byte)`` goes through the
#: enum's interpreted ``__call__`` (0.7% of a compiled profile; end to end within the noise).
_PHASES: tuple[Phase, ...] = tuple(Phase)
_CHANNEL_CODE = {c: i for i, c in enumerate(_CHANNELS)}
_STATUS_CODE = {s: i for i, s in enumerate(_STATUSES)}
_END_CODE = {e: i for i, e in enumerate(_ENDS)}
_REASON_CODE = {r: i for i, r in enumerate(_REASONS)}


#: Byte value -> that one byte. The encoder appends parts to a list and joins them once: compiled,
#: a list append is native, where each ``bytearray.append`` or ``+=`` was a method call looked up by
#: name. A step's few bytes are written out too, not memoised: the memo hashed each Step (a tuple of
#: its fields) to find them. 5,000 distinct states: 3.2 -> 2.2 us each compiled, 4.1 -> 3.2 pure.
_BYTE: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(256))


def _varint(out: list[bytes], value: int) -> None:
    while value >= 0x80:
        out.append(_BYTE[(value & 0x7F) | 0x80])
        value >>= 7
    out.append(_BYTE[value])


def _bytes(out: list[bytes], data: bytes) -> None:
    n = len(data)
    if n < 0x80:
        out.append(_BYTE[n])  # the usual one-byte length, without a call to _varint
    else:
        _varint(out, n)
    out.append(data)


def _reasons(out: list[bytes], reasons: tuple[str, ...]) -> None:
    out.append(_BYTE[len(reasons)])  # bounded by the core (MAX_REASONS), one byte
    for reason in reasons:
        _bytes(out, reason.encode())


def _opt_str(out: list[bytes], value: str | None) -> None:
    if value is None:
        out.append(_BYTE[0])
        return
    data = value.encode()
    _varint(out, len(data) + 1)
    out.append(data)


def encode_state(state: FlowState) -> bytes:
    """The compact bytes of a flow state (see the module docstring for the layout)."""
    flags = (
        (_SIMULATION if state.simulation else 0)
        | (_HAS_DEADLINE if state.deadline_ms is not None else 0)
        | (_HAS_TENANT if state.tenant is not None else 0)
        | (_HAS_CAMPAIGN if state.campaign_id is not None else 0)
        | (_HAS_WINDOW if state.window is not None else 0)
        | (_HAS_DEFERRED if state.deferred is not None else 0)
    )
    out: list[bytes] = [
        _HEADER.pack(
            VERSION,
            int(state.phase),
            flags,
            state.deadline_ms if state.deadline_ms is not None else 0,
            state.requested_ms,
            state.end_ms,
            state.completed_ms,
        )
    ]
    _bytes(out, state.fingerprint)
    _bytes(out, state.message_id.encode())
    _bytes(out, state.destination.encode())
    if state.tenant is not None:
        _bytes(out, state.tenant.encode())
    if state.campaign_id is not None:
        _bytes(out, state.campaign_id.encode())
    out.append(_BYTE[len(state.steps)])
    for step in state.steps:
        out.append(_BYTE[_CHANNEL_CODE[step.channel]])
        out.append(_BYTE[step.success_rank])
        _varint(out, 0 if step.fallback_after_ms is None else step.fallback_after_ms + 1)
    out.append(_BYTE[len(state.attempts)])
    for a in state.attempts:
        out.append(_Q.pack(a.issued_ms))
        out.append(_BYTE[_STATUS_CODE[a.last_status]])
        out.append(_BYTE[_END_CODE[a.ended_by]])
        _opt_str(out, a.provider_message_id)
        times = a.status_times
        if times is NO_TIMES and not a.reasons:
            out.append(_BYTE[0])  # the usual case of an ended state, and of a fresh attempt
            continue
        # One pass, the facts byte filled in after.
        at = len(out)
        out.append(_BYTE[0])
        facts = 0
        bit = 1
        for ms in times:
            if ms is not None:
                facts |= bit
                delta = ms - a.issued_ms
                _varint(out, delta << 1 if delta >= 0 else ((-delta) << 1) - 1)  # zigzag
            bit <<= 1
        if a.reasons:
            facts |= _HAS_REASONS
            _reasons(out, a.reasons)
        out[at] = _BYTE[facts]
    out.append(_BYTE[len(state.held)])
    for h in state.held:
        sig = h.signal
        out.append(_BYTE[0 if sig.attempt is None else sig.attempt + 1])
        out.append(_BYTE[_CHANNEL_CODE[sig.channel]])
        out.append(_BYTE[_STATUS_CODE[sig.status]])
        out.append(_BYTE[_HAS_OCCURRED if sig.occurred_ms is not None else 0])
        out.append(_QQ.pack(h.until_ms, sig.occurred_ms if sig.occurred_ms is not None else 0))
        _opt_str(out, sig.provider_message_id)
        _reasons(out, sig.reasons)
    _bytes(out, state.opaque)
    window = state.window
    if window is not None:
        _bytes(out, window.zone.encode())
        out.append(_BYTE[window.days])
        _varint(out, window.start)
        _varint(out, window.stop)
        out.append(_BYTE[1 if window.applies_all else 0])
    deferred = state.deferred
    if deferred is not None:
        out.append(_QQ.pack(deferred.due_ms, deferred.wake_ms))
        out.append(_BYTE[_REASON_CODE[deferred.reason]])
    return b"".join(out)


def _unknown_phase(phase: int) -> Phase:
    raise ValueError(f"unknown phase {phase}")


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (one-byte values take the fast path)."""
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    while True:
        pos += 1
        b = data[pos]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos + 1
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 64 bits")


def _chunk_at(data: bytes, pos: int, length: int) -> tuple[bytes, int]:
    end = pos + length
    if end > len(data):
        raise IndexError("truncated")
    return data[pos:end], end


def _reasons_at(data: bytes, pos: int) -> tuple[tuple[str, ...], int]:
    count = data[pos]
    pos += 1
    if not count:
        return (), pos
    reasons = []
    for _ in range(count):
        n, pos = _varint_at(data, pos)
        raw, pos = _chunk_at(data, pos, n)
        reasons.append(raw.decode())
    return tuple(reasons), pos


def decode_state(data: bytes) -> FlowState:
    """The flow state of :func:`encode_state` bytes; :class:`StateDecodeError` when they are not."""
    if not data:
        raise StateDecodeError("flow state: empty bytes")
    if data[0] not in READABLE:
        raise StateDecodeError(
            f"flow state: unknown version {data[0]}; this build reads versions "
            f"{', '.join(map(str, READABLE))}"
        )
    try:
        return _decode(data, data[0])
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise StateDecodeError(f"flow state: corrupt or truncated ({exc})") from None


def _decode(data: bytes, version: int) -> FlowState:
    # Written with a local position rather than a reader object: this runs once per record the
    # processor handles, and method calls per field doubled its cost.
    _, phase, flags, deadline, requested, end, completed = _HEADER.unpack_from(data, 0)
    pos = _HEADER.size
    n, pos = _varint_at(data, pos)
    fingerprint, pos = _chunk_at(data, pos, n)
    n, pos = _varint_at(data, pos)
    raw, pos = _chunk_at(data, pos, n)
    message_id = raw.decode()
    n, pos = _varint_at(data, pos)
    raw, pos = _chunk_at(data, pos, n)
    destination = raw.decode()
    tenant = campaign = None
    if flags & _HAS_TENANT:
        n, pos = _varint_at(data, pos)
        raw, pos = _chunk_at(data, pos, n)
        tenant = raw.decode()
    if flags & _HAS_CAMPAIGN:
        n, pos = _varint_at(data, pos)
        raw, pos = _chunk_at(data, pos, n)
        campaign = raw.decode()
    steps = []
    count = data[pos]
    pos += 1
    for _ in range(count):
        channel = _CHANNELS[data[pos]]
        rank = data[pos + 1]
        after, pos = _varint_at(data, pos + 2)
        steps.append(Step(channel, None if after == 0 else after - 1, rank))
    attempts = []
    count = data[pos]
    pos += 1
    for _ in range(count):
        (issued,) = _Q.unpack_from(data, pos)
        status = _STATUSES[data[pos + 8]]
        ended = _ENDS[data[pos + 9]]
        n, pos = _varint_at(data, pos + 10)
        pid = None
        if n:
            raw, pos = _chunk_at(data, pos, n - 1)
            pid = raw.decode()
        if version == 1:
            attempts.append(Attempt(issued, status, ended, pid))
            continue
        facts = data[pos]
        pos += 1
        if not facts:
            attempts.append(Attempt(issued, status, ended, pid))
            continue
        if facts & ~(_TIME_BITS | _HAS_REASONS):
            raise ValueError(f"unknown attempt facts 0x{facts:02x}")
        times: list[int | None] = [None, None, None, None]
        for bit in _BITS_SET[facts & _TIME_BITS]:
            z, pos = _varint_at(data, pos)
            times[bit] = issued + ((z >> 1) if not z & 1 else -((z + 1) >> 1))  # zigzag
        reasons: tuple[str, ...] = ()
        if facts & _HAS_REASONS:
            reasons, pos = _reasons_at(data, pos)
        attempts.append(Attempt(issued, status, ended, pid, tuple(times), reasons))
    held = []
    count = data[pos]
    pos += 1
    for _ in range(count):
        attempt = data[pos]
        channel = _CHANNELS[data[pos + 1]]
        held_status = _STATUSES[data[pos + 2]]
        if held_status is None:
            raise ValueError("held status without a status")
        has_occurred = data[pos + 3] & _HAS_OCCURRED
        until, occurred = _QQ.unpack_from(data, pos + 4)
        n, pos = _varint_at(data, pos + 4 + _QQ.size)
        pid = None
        if n:
            raw, pos = _chunk_at(data, pos, n - 1)
            pid = raw.decode()
        held_reasons: tuple[str, ...] = ()
        if version >= 2:
            held_reasons, pos = _reasons_at(data, pos)
        signal = Signal(
            attempt=None if attempt == 0 else attempt - 1,
            channel=channel,
            status=held_status,
            provider_message_id=pid,
            occurred_ms=occurred if has_occurred else None,
            reasons=held_reasons,
        )
        held.append(Held(signal, until))
    n, pos = _varint_at(data, pos)
    opaque, pos = _chunk_at(data, pos, n)
    window = None
    deferred = None
    if flags & _UNKNOWN_FLAGS or (version < 3 and flags & (_HAS_WINDOW | _HAS_DEFERRED)):
        raise ValueError(f"unknown flags 0x{flags:02x}")
    if flags & (_HAS_WINDOW | _HAS_DEFERRED):
        if flags & _HAS_WINDOW:
            n, pos = _varint_at(data, pos)
            raw, pos = _chunk_at(data, pos, n)
            days = data[pos]
            start, pos = _varint_at(data, pos + 1)
            stop, pos = _varint_at(data, pos)
            window = Window(raw.decode(), days, start, stop, bool(data[pos]))
            pos += 1
        if flags & _HAS_DEFERRED:
            due, wake = _QQ.unpack_from(data, pos)
            deferred = Deferred(due, wake, _REASONS[data[pos + _QQ.size]])
            pos += _QQ.size + 1
    if pos != len(data):
        raise ValueError(f"{len(data) - pos} trailing bytes")
    state = FlowState(
        phase=_PHASES[phase] if phase < len(_PHASES) else _unknown_phase(phase),
        message_id=message_id,
        deadline_ms=deadline if flags & _HAS_DEADLINE else None,
        fingerprint=fingerprint,
        destination=destination,
        tenant=tenant,
        campaign_id=campaign,
        simulation=bool(flags & _SIMULATION),
        requested_ms=requested,
        end_ms=end,
        completed_ms=completed,
        steps=tuple(steps),
        attempts=attempts,
        held=held,
        opaque=opaque,
    )
    if window is not None or deferred is not None:  # v1.1 fields: defaults (None) in the usual case
        state.window = window
        state.deferred = deferred
    return state
