"""``explain`` end to end: find the message's records, replay its inputs, hold the replay against them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.config import Settings
from stream_app.explain.compare import Comparison, compare
from stream_app.explain.errors import UnknownMessage
from stream_app.explain.export import read_export, write_export
from stream_app.explain.records import INPUT_IDS, PUBLISHED_IDS, Record
from stream_app.explain.replay import Replay, replay
from stream_app.explain.scan import Bounds, Progress, scan

#: Times within this many ms of the replay's count as equal (see :mod:`stream_app.explain.compare`).
DEFAULT_TOLERANCE_MS = 5000


@dataclass(slots=True)
class Explanation:
    """Everything ``explain`` found out about one message."""

    message_id: str
    source: str  # "kafka" or the export file's path
    where: dict[str, tuple[str, int]]  # catalogue id -> (topic, partition) read
    scanned: int  # records read to find the message's (lines, for a file)
    records: list[Record]
    replay: Replay
    comparison: Comparison
    problems: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.comparison.differences


async def explain_kafka(
    settings: Settings,
    message_id: str,
    bounds: Bounds | None = None,
    *,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
    progress: Callable[[Progress], None] | None = None,
    export: Path | None = None,
) -> Explanation:
    """Explain ``message_id`` from its partition of the topics (see :func:`scan`).

    Timers replay up to ``bounds.until_ms``, or up to now less the tolerance (a timer due this very
    moment may not have fired in the processor yet). ``export`` also writes the records found there.
    """
    bounds = bounds or Bounds()
    found = await scan(settings, message_id, bounds, progress)
    if export is not None:
        write_export(sorted(found.records, key=lambda r: (r.timestamp_ms, r.topic, r.offset)), export)
    where = ", ".join(f"{t}[{p if p >= 0 else '*'}]" for t, p in found.partitions.values())
    if not any(r.keyed for r in found.records):
        raise UnknownMessage(
            f"no record of messageId {message_id!r} in {where} ({found.scanned} records read"
            f"{_range_text(bounds)}); check the id, STREAM_APP_TOPIC_PREFIX and the time range"
        )
    horizon = bounds.until_ms if bounds.until_ms is not None else int(time.time() * 1000) - tolerance_ms
    return _explain(
        settings, message_id, "kafka", found.partitions, found.scanned, found.records, horizon, tolerance_ms
    )


def explain_file(
    settings: Settings,
    message_id: str,
    path: Path,
    *,
    tolerance_ms: int = DEFAULT_TOLERANCE_MS,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> Explanation:
    """Explain ``message_id`` from an export file (format: :mod:`stream_app.explain.export`).

    ``since_ms``/``until_ms`` keep only the records of that time range, as on Kafka (a global
    input's older records still apply). Timers replay up to ``until_ms``, or up to the latest record
    of the message in the file: a timer the processor fired before the export was taken left a
    record at least that late.
    """
    records, problems, lines = read_export(path, message_id, settings)
    in_file = any(r.keyed for r in records)
    records = [
        r
        for r in records
        if (since_ms is None or not r.keyed or r.timestamp_ms >= since_ms)
        and (until_ms is None or r.timestamp_ms <= until_ms)
    ]
    if not any(r.keyed for r in records):
        bad = f"; {len(problems)} line(s) unreadable" if problems else ""
        within = " within the time range asked for" if in_file else ""
        raise UnknownMessage(f"no record keyed {message_id!r} in {path}{within} ({lines} lines{bad})")
    horizon = until_ms if until_ms is not None else max(r.timestamp_ms for r in records if r.keyed)
    where = {r.kind: (r.topic, r.partition if r.keyed else -1) for r in records}
    result = _explain(settings, message_id, str(path), where, lines, records, horizon, tolerance_ms)
    result.problems[:0] = problems
    return result


def _explain(
    settings: Settings,
    message_id: str,
    source: str,
    where: dict[str, tuple[str, int]],
    scanned: int,
    records: list[Record],
    horizon_ms: int,
    tolerance_ms: int,
) -> Explanation:
    inputs = [r for r in records if r.kind in INPUT_IDS]
    published = [r for r in records if r.kind in PUBLISHED_IDS]
    problems: list[str] = []
    if not inputs:
        problems.append(
            "no input record of this message was read (out of retention, or outside the range asked "
            "for): the replay starts from nothing, so every published record shows as a difference"
        )
    # Channel-control records are replayed up to the message's last record or the horizon, whichever
    # is later: one stamped after both cannot have changed anything that was published.
    last = max((r.timestamp_ms for r in records if r.keyed), default=horizon_ms)
    result = replay(settings, message_id, inputs, horizon_ms, max(horizon_ms, last))
    outputs = [o for e in result.entries for o in e.outputs]
    comparison = compare(outputs, published, tolerance_ms)
    if comparison.differences:
        problems.extend(_races(result, tolerance_ms))
        problems.extend(_control_races(result, tolerance_ms))
    return Explanation(message_id, source, where, scanned, records, result, comparison, problems)


def _races(result: Replay, tolerance_ms: int) -> list[str]:
    """Inputs stamped within the tolerance before a timer: the processor, which reads each record a
    little after its timestamp, may have fired the timer first. A difference there is likely that
    race, not a bug; say so next to it."""
    return [
        f"{e.record.where} came {e.before_timer_ms} ms before the message's timer: the processor may "
        "have read it after the timer fired (a race within its lag), which would explain a difference"
        for e in result.entries
        if e.record is not None and e.before_timer_ms is not None and e.before_timer_ms <= tolerance_ms
    ]


def _control_races(result: Replay, tolerance_ms: int) -> list[str]:
    """A message's input stamped within the tolerance of a channel-control record: the processor reads
    the control table with a consumer of its own and sweeps open attempts a turn after, so it may
    have taken the two in the other order than their timestamps say. Say so next to a difference."""
    controls = [e.record for e in result.entries if e.record is not None and not e.record.keyed]
    inputs = [e.record for e in result.entries if e.record is not None and e.record.keyed]
    return [
        f"{i.where} and {c.where} are {abs(i.timestamp_ms - c.timestamp_ms)} ms apart: the processor "
        "reads channel-control apart from the inputs (and sweeps open attempts a turn later), so it may "
        "have taken them in the other order, which would explain a difference"
        for c in controls
        for i in inputs
        if abs(i.timestamp_ms - c.timestamp_ms) <= tolerance_ms
    ]


def _range_text(bounds: Bounds) -> str:
    from stream_app.contracts import format_ms

    bits = []
    if bounds.since_ms is not None:
        bits.append(f"since {format_ms(bounds.since_ms)}")
    if bounds.until_ms is not None:
        bits.append(f"until {format_ms(bounds.until_ms)}")
    bits.extend(f"{k.replace('_', '-')} offsets {lo}:{hi}" for k, (lo, hi) in bounds.offsets.items())
    return f", {', '.join(bits)}" if bits else ""
