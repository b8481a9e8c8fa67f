"""Read one record of ``outcomes`` for the report: orjson and hand checks, no pydantic.

The report reads millions of records, so it does not build :class:`~stream_app.contracts.Outcome`
models (about 20 us and a few KiB each): it decodes with orjson and keeps only the fields it counts,
in slotted rows that are dropped once counted. The field names and the allowed words (channels,
statuses, results, how an attempt ended) come from the contract's own enums, so a rule changes in one
place; ``tests/unit/report/test_read.py`` holds these rows to what the contract's decoder reads.

A record that is not an Outcome or a LateStatus the report can count raises :class:`BadRecord` with
one line naming the field and the rule, e.g. ``attempts[1].issuedAt: must be an RFC 3339 timestamp
with an offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from stream_app.contracts import MAX_STEPS, AttemptEnd, Channel, Result, Status, SuccessStatus, to_ms
from stream_app.report.errors import BadRecord

CHANNELS: frozenset[str] = frozenset(c.value for c in Channel)
STATUSES: frozenset[str] = frozenset(s.value for s in Status)
PROGRESS: frozenset[str] = frozenset(s.value for s in SuccessStatus)
RESULTS: tuple[str, ...] = tuple(r.value for r in Result)
_RESULT_WORDS = frozenset(RESULTS)
ENDS: frozenset[str] = frozenset(e.value for e in AttemptEnd)


@dataclass(slots=True)
class AttemptRow:
    attempt: int
    channel: str
    issued_ms: int
    last_status: str | None
    ended_by: str | None
    #: statusTimes as epoch ms, e.g. {"ACCEPTED": ..., "DELIVERED": ...}
    times: dict[str, int]
    reasons: list[str] | None


@dataclass(slots=True)
class OutcomeRow:
    message_id: str
    tenant: str | None
    campaign_id: str | None
    result: str
    channel: str | None
    reason: str | None
    duration_ms: int
    completed_ms: int
    attempts: list[AttemptRow]


@dataclass(slots=True)
class LateRow:
    message_id: str
    attempt: int
    channel: str
    status: str
    occurred_ms: int
    double_delivery: bool


#: Timestamp text -> epoch ms. The records of one processor batch share their issue and completion
#: times, so a small cache saves most parses; bounded like contracts.timefmt's caches.
_MS: dict[str, int] = {}
_MS_MAX = 8192


def _ms(value: Any, where: str) -> int:
    if isinstance(value, str):
        hit = _MS.get(value)
        if hit is not None:
            return hit
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            ms = to_ms(parsed)
            if len(_MS) >= _MS_MAX:
                _MS.clear()
            _MS[value] = ms
            return ms
    raise BadRecord(f"{where}: must be an RFC 3339 timestamp with an offset, got {_show(value)}")


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(obj: dict[str, Any], name: str, where: str = "") -> str | None:
    value = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRecord(f"{where}{name}: must be a string, got {_show(value)}")


def _word(obj: dict[str, Any], name: str, allowed: frozenset[str], where: str = "") -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        word = value.upper()
        if word in allowed:
            return word
    raise BadRecord(f"{where}{name}: must be one of {', '.join(sorted(allowed))}, got {_show(value)}")


def _int(obj: dict[str, Any], name: str, where: str = "") -> int:
    value = obj.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadRecord(f"{where}{name}: must be an integer, got {_show(value)}")


def _step(obj: dict[str, Any], where: str = "") -> int:
    """An attempt number: 0 to MAX_STEPS - 1, as the contract's chains allow (it sizes the tables)."""
    value = _int(obj, "attempt", where)
    if not 0 <= value < MAX_STEPS:
        raise BadRecord(f"{where}attempt: must be 0 to {MAX_STEPS - 1}, got {value}")
    return value


def _attempt(raw: Any, i: int) -> AttemptRow:
    where = f"attempts[{i}]."
    if not isinstance(raw, dict):
        raise BadRecord(f"attempts[{i}]: must be an object, got {_show(raw)}")
    channel = _word(raw, "channel", CHANNELS, where)
    if channel is None:
        raise BadRecord(f"{where}channel: required")
    times: dict[str, int] = {}
    raw_times = raw.get("statusTimes")
    if raw_times is not None:
        if not isinstance(raw_times, dict):
            raise BadRecord(f"{where}statusTimes: must be an object, got {_show(raw_times)}")
        for name, value in raw_times.items():
            word = name.upper()
            if word not in PROGRESS:
                raise BadRecord(f"{where}statusTimes: {name!r} is not one of {', '.join(sorted(PROGRESS))}")
            times[word] = _ms(value, f"{where}statusTimes.{name}")
    reasons = raw.get("reasons")
    if reasons is not None and not (isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
        raise BadRecord(f"{where}reasons: must be a list of strings, got {_show(reasons)}")
    return AttemptRow(
        attempt=_step(raw, where),
        channel=channel,
        issued_ms=_ms(raw.get("issuedAt"), f"{where}issuedAt"),
        last_status=_word(raw, "lastStatus", STATUSES, where),
        ended_by=_word(raw, "endedBy", ENDS, where),
        times=times,
        reasons=reasons,
    )


def parse(data: bytes | str) -> OutcomeRow | LateRow:
    """One record of ``outcomes`` (an Outcome or a LateStatus), or :class:`BadRecord` saying why not."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRecord(f"not JSON ({str(exc).split(':', 1)[0]})") from None
    if not isinstance(obj, dict):
        raise BadRecord(f"must be a JSON object, got {_show(obj)}")
    kind = obj.get("type")
    if kind not in ("outcome", "late-status"):
        raise BadRecord(f"type: must be outcome or late-status, got {_show(kind)}")
    message_id = _text(obj, "messageId")
    if not message_id:
        raise BadRecord("messageId: required")
    if kind == "outcome":
        result = _word(obj, "result", _RESULT_WORDS)
        if result is None:
            raise BadRecord("result: required")
        attempts = obj.get("attempts", [])
        if not isinstance(attempts, list):
            raise BadRecord(f"attempts: must be a list, got {_show(attempts)}")
        duration = _int(obj, "durationMs")
        return OutcomeRow(
            message_id=message_id,
            tenant=_text(obj, "tenant"),
            campaign_id=_text(obj, "campaignId"),
            result=result,
            channel=_word(obj, "channel", CHANNELS),
            reason=_text(obj, "reason"),
            duration_ms=max(duration, 0),
            completed_ms=_ms(obj.get("completedAt"), "completedAt"),
            attempts=[_attempt(a, i) for i, a in enumerate(attempts)],
        )
    # a late-status
    channel = _word(obj, "channel", CHANNELS)
    status = _word(obj, "status", STATUSES)
    if channel is None or status is None:
        raise BadRecord("channel and status: required")
    double = obj.get("doubleDelivery", False)
    if not isinstance(double, bool):
        raise BadRecord(f"doubleDelivery: must be true or false, got {_show(double)}")
    return LateRow(
        message_id=message_id,
        attempt=_step(obj),
        channel=channel,
        status=status,
        occurred_ms=_ms(obj.get("occurredAt"), "occurredAt"),
        double_delivery=double,
    )
