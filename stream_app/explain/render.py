"""The explanation as a timeline a support engineer can read, or as one JSON document for machines."""

from __future__ import annotations

from typing import Any

import orjson

from stream_app.contracts import format_ms
from stream_app.explain.compare import Difference, label
from stream_app.explain.replay import Entry, Output
from stream_app.explain.run import Explanation
from stream_app.terminal import printable

_INDENT = " " * 17


def render_text(ex: Explanation) -> str:
    """The timeline: each input and timer, the rules it applied, what it produced, and every difference."""
    lines: list[str] = []
    where = ", ".join(f"{t}[{p if p >= 0 else '*'}]" for t, p in ex.where.values())
    lines.append(
        f"explain {ex.message_id}: {len(ex.records)} records in {where} ({ex.scanned} read from {ex.source})"
    )
    lines.append(
        "(times UTC; the replay steps each input at its record's timestamp, each timer at its deadline)"
    )
    for problem in ex.problems:
        lines.append(f"warning: {problem}")
    lines.append("")
    diffs_by_what: dict[str, list[Difference]] = {}
    for d in ex.comparison.differences:
        diffs_by_what.setdefault(d.what, []).append(d)
    for entry in ex.replay.entries:
        lines.append(_head(entry))
        for why in entry.whys:
            lines.append(f"{_INDENT}{why.rule.value:<14} {why.text}")
        for out in entry.outputs:
            lines.append(f"{_INDENT}=> {_output(out)}   {_mark(ex, out, diffs_by_what)}")
    lines.append("")
    if ex.replay.pending_timer_ms is not None:
        due, horizon = format_ms(ex.replay.pending_timer_ms), format_ms(ex.replay.horizon_ms)
        lines.append(f"next timer due {due} (after {horizon}, the end of the replay)")
    diffs = ex.comparison.differences
    counts = _counts(ex)
    if not diffs:
        lines.append(f"result: the replay agrees with everything published ({counts})")
    else:
        lines.append(
            f"!!! {len(diffs)} DIFFERENCE(S) between the replay and what was published: "
            "a bug or a non-determinism"
        )
        lines.extend(f"!!!   {d.line()}" for d in diffs)
    return printable("\n".join(lines), lines=True)  # messageIds and reasons come from outside


def _head(entry: Entry) -> str:
    when = format_ms(entry.at_ms)[11:]
    if entry.record is None:
        return f"{when:<15}timer  {entry.summary}"
    return f"{when:<15}input  {entry.record.where}  {entry.summary}"


def _output(out: Output) -> str:
    d = out.data or {}
    if out.kind == "dead-letter":
        return f"dead-letter: {out.reason}"
    if out.kind == "command":
        return f"command {d.get('commandId')} {d.get('channel')} reason {d.get('reason')}"
    if out.kind == "late-status":
        twice = " DOUBLE DELIVERY" if d.get("doubleDelivery") else ""
        return f"late-status attempt {d.get('attempt')} {d.get('channel')} {d.get('status')}{twice}"
    landed = f" on {d.get('channel')} {d.get('status')}" if d.get("channel") else ""
    reason = f" ({d['reason']})" if d.get("reason") else ""
    return f"outcome {d.get('result')}{landed}{reason}"


def _mark(ex: Explanation, out: Output, diffs: dict[str, list[Difference]]) -> str:
    if out.kind == "dead-letter":
        return ""
    match = ex.comparison.matches.get(id(out))
    if match is None:
        return "!!! NOT PUBLISHED"
    first = match.published[0].where
    if label(out) in diffs:
        return f"!!! DIFFERS from published {first}"
    shift = f" ({match.shift_ms:+d} ms)" if match.shift_ms is not None else ""
    repeats = f", repeated {len(match.published) - 1}x" if len(match.published) > 1 else ""
    return f"= published {first}{shift}{repeats}"


def _counts(ex: Explanation) -> str:
    outs = [o for e in ex.replay.entries for o in e.outputs]
    n = {k: sum(1 for o in outs if o.kind == k) for k in ("command", "outcome", "late-status")}
    return f"{n['command']} command(s), {n['outcome']} outcome(s), {n['late-status']} late status(es)"


def render_json(ex: Explanation) -> str:
    """One JSON document: the timeline with rules and outputs, every difference, and ``agrees``."""
    doc: dict[str, Any] = {
        "messageId": ex.message_id,
        "source": ex.source,
        "partitions": {t: (p if p >= 0 else "all") for t, p in ex.where.values()},
        "recordsRead": ex.scanned,
        "records": len(ex.records),
        "agrees": ex.agrees,
        "differences": [
            {"what": d.what, "detail": d.detail, "published": d.published} for d in ex.comparison.differences
        ],
        "problems": ex.problems,
        "horizon": format_ms(ex.replay.horizon_ms),
        "pendingTimer": format_ms(ex.replay.pending_timer_ms)
        if ex.replay.pending_timer_ms is not None
        else None,
        "timeline": [_entry_json(ex, e) for e in ex.replay.entries],
    }
    return orjson.dumps(doc).decode()


def _entry_json(ex: Explanation, e: Entry) -> dict[str, Any]:
    rec = e.record
    return {
        "at": format_ms(e.at_ms),
        "kind": e.kind,
        "record": None
        if rec is None
        else {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset},
        "summary": e.summary,
        "value": _value(rec.value) if rec is not None else None,
        "rules": [{"rule": w.rule.value, "attempt": w.attempt, "text": w.text} for w in e.whys],
        "outputs": [_output_json(ex, o) for o in e.outputs],
    }


def _value(data: bytes | None) -> Any:
    """The input's value: its JSON when it is JSON, else its text (an undecodable record's bytes)."""
    if data is None:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


def _output_json(ex: Explanation, o: Output) -> dict[str, Any]:
    match = ex.comparison.matches.get(id(o))
    return {
        "type": o.kind,
        "value": o.data,
        "reason": o.reason,
        "published": [r.where for r in match.published] if match is not None else [],
        "shiftMs": match.shift_ms if match is not None else None,
    }
