"""Hold the replay against what the processor published: every difference is a bug or a non-determinism.

Matched by identity: a command by its ``commandId``, the outcome as the message's one outcome, a late
status by its attempt and status. Every field must be equal, except times: the replay reads time from
record timestamps and timer deadlines, the processor from its clock when it ran, so a time (``issuedAt``,
``notAfter``, ``completedAt``, ``requestedAt``, ``occurredAt``, ``deferredFrom``, each ``statusTimes``
entry, ``durationMs``) counts as equal within ``tolerance_ms``. A repeat of a published record that is
identical to the first is allowed (at-least-once: same commandId, same outcome); one that differs is not.
Dead letters are shown in the timeline, not compared: the contract promises commands and outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from stream_app.explain.records import Record
from stream_app.explain.replay import Output

#: Fields that hold a time (RFC 3339 text) and are compared within the tolerance.
TIME_FIELDS = frozenset({"issuedAt", "notAfter", "completedAt", "requestedAt", "occurredAt", "deferredFrom"})
#: Fields that hold a duration in ms, compared within the tolerance too.
DURATION_FIELDS = frozenset({"durationMs"})


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the replay and the published records disagree, in one line."""

    what: str  # "command m-1:1", "outcome", "late-status attempt 0 READ"
    detail: str
    published: str | None  # where the published record is (topic[p]@offset), if any

    def line(self) -> str:
        where = f" ({self.published})" if self.published else ""
        return f"{self.what}: {self.detail}{where}"


@dataclass(frozen=True, slots=True)
class Match:
    """A replayed output and the published record(s) it matched."""

    output: Output
    published: list[Record]
    shift_ms: int | None  # published time minus replayed time of its main time field, when both known


@dataclass(slots=True)
class Comparison:
    differences: list[Difference]
    matches: dict[int, Match]  # id(Output) -> its match
    published_count: int


def compare(outputs: Iterable[Output], published: Iterable[Record], tolerance_ms: int) -> Comparison:
    """Every difference between the replayed ``outputs`` and the ``published`` records."""
    diffs: list[Difference] = []
    pub: dict[tuple[str, ...], list[tuple[Record, dict[str, Any]]]] = {}
    count = 0
    for rec in published:
        count += 1
        data = _json(rec.value)
        if data is None:
            diffs.append(Difference(f"{rec.kind.replace('_', '-')} record", "undecodable JSON", rec.where))
            continue
        pub.setdefault(_identity(rec.kind, data), []).append((rec, data))
    matches: dict[int, Match] = {}
    seen: set[tuple[str, ...]] = set()
    for out in outputs:
        if out.data is None or out.kind == "dead-letter":
            continue
        ident = _identity(out.topic_id, out.data)
        seen.add(ident)
        what = _what(ident)
        found = pub.get(ident, [])
        if not found:
            diffs.append(Difference(what, "the replay produces it, but it was never published", None))
            continue
        first = found[0][1]
        for n, (rec, data) in enumerate(found):
            for field_diff in _differences(out.data, data, tolerance_ms):
                again = "" if n == 0 else f" (in repeat {n} of the published record)"
                diffs.append(Difference(what, f"{field_diff}{again}", rec.where))
        matches[id(out)] = Match(out, [r for r, _ in found], _shift(out.data, first))
    for ident, found in pub.items():
        if ident in seen:
            continue
        for rec, _ in found:
            diffs.append(Difference(_what(ident), "published, but the replay does not produce it", rec.where))
    return Comparison(diffs, matches, count)


def label(out: Output) -> str:
    """How a difference names this replayed output (``command m-1:1``, ``outcome``, ...)."""
    return _what(_identity(out.topic_id, out.data or {}))


def _json(value: bytes | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _identity(kind: str, data: dict[str, Any]) -> tuple[str, ...]:
    if kind == "retry_commands":
        return ("command", str(data.get("commandId")))
    if data.get("type") == "late-status":
        return ("late-status", str(data.get("attempt")), str(data.get("status")))
    return ("outcome",)


def _what(ident: tuple[str, ...]) -> str:
    if ident[0] == "command":
        return f"command {ident[1]}"
    if ident[0] == "late-status":
        return f"late-status attempt {ident[1]} {ident[2]}"
    return "outcome"


def _differences(replayed: Any, published: Any, tolerance_ms: int, path: str = "") -> list[str]:
    """``field: replay X, published Y`` for every leaf that differs (times within the tolerance)."""
    name = path.rsplit(".", 1)[-1]
    if isinstance(replayed, dict) and isinstance(published, dict):
        out: list[str] = []
        for k in sorted(set(replayed) | set(published), key=lambda k: (k not in replayed, str(k))):
            sub = f"{path}.{k}" if path else str(k)
            if replayed.get(k) is None and published.get(k) is None:
                continue  # absent and null are the same to every reader of the contract
            if k not in published:
                out.append(f"{sub}: replay {_short(replayed[k])}, published has none")
            elif k not in replayed:
                out.append(f"{sub}: replay has none, published {_short(published[k])}")
            else:
                timed = path.endswith("statusTimes")
                out.extend(
                    _differences(replayed[k], published[k], tolerance_ms, sub if not timed else sub + "@t")
                )
        return out
    if isinstance(replayed, list) and isinstance(published, list):
        if len(replayed) != len(published):
            return [f"{path}: replay has {len(replayed)} entries, published {len(published)}"]
        out = []
        for i, (a, b) in enumerate(zip(replayed, published, strict=True)):
            out.extend(_differences(a, b, tolerance_ms, f"{path}[{i}]"))
        return out
    label = path.removesuffix("@t")
    if (
        (name in TIME_FIELDS or path.endswith("@t"))
        and isinstance(replayed, str)
        and isinstance(published, str)
    ):
        a, b = _ms(replayed), _ms(published)
        if a is not None and b is not None:
            return (
                [] if abs(a - b) <= tolerance_ms else [f"{label}: replay {replayed}, published {published}"]
            )
    if name in DURATION_FIELDS and isinstance(replayed, int) and isinstance(published, int):
        return (
            []
            if abs(replayed - published) <= tolerance_ms
            else [f"{label}: replay {replayed}, published {published}"]
        )
    if replayed != published:
        return [f"{label}: replay {_short(replayed)}, published {_short(published)}"]
    return []


def _shift(replayed: dict[str, Any], published: dict[str, Any]) -> int | None:
    for name in ("issuedAt", "completedAt", "occurredAt"):
        a, b = replayed.get(name), published.get(name)
        if isinstance(a, str) and isinstance(b, str):
            ma, mb = _ms(a), _ms(b)
            if ma is not None and mb is not None:
                return mb - ma
    return None


def _ms(text: str) -> int | None:
    try:
        return round(datetime.fromisoformat(text).timestamp() * 1000)
    except ValueError:
        return None


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
