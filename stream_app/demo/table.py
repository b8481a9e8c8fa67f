"""Plain-text rendering of demo results: one row per message, no dependency on a table library."""

from __future__ import annotations

from collections.abc import Sequence

from stream_app.admin.follow import channel_path, format_duration
from stream_app.contracts import Outcome


def time_to_success(outcome: Outcome) -> str:
    return format_duration(outcome.duration_ms) if outcome.result.value == "SUCCEEDED" else "-"


def render(rows: Sequence[tuple[str, str, Outcome | None, str]]) -> str:
    """Rows of (scenario, messageId, outcome or None while pending, check mark) as an aligned table."""
    header = ("scenario", "messageId", "channel path (last status)", "result", "time", "ok")
    body = [
        (
            name,
            mid,
            channel_path(o, reasons=False) if o else "(pending)",  # the live lines above show why
            (o.result.value + (f" on {o.channel.value}" if o.channel else "")) if o else "-",
            time_to_success(o) if o else "-",
            ok,
        )
        for name, mid, o, ok in rows
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in body)])
