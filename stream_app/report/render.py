"""The report for people (a terminal table) and for spreadsheets (CSV), from :meth:`Aggregator.result`.

Every output is made from the one JSON-ready dict, so the table, ``--json``, ``--csv`` and the HTML
page never disagree on a figure.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from stream_app.admin.follow import format_duration
from stream_app.report.read import RESULTS
from stream_app.terminal import printable


def _ms(value: int | None) -> str:
    return "-" if value is None else format_duration(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} s ({format_duration(value * 1000)})" if value >= 60 else f"{value} s"


def _table(headers: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Aligned columns: the ``left`` ones (text) left-aligned, the figures right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out = []
    for cells in [headers, *rows]:
        parts = [
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        out.append("  " + "  ".join(parts).rstrip())
    return out


def _quants(q: dict[str, Any]) -> str:
    if not q["count"]:
        return "-"
    approx = "" if q["exact"] else "~"
    return f"{approx}{_ms(q['p50'])} / {_ms(q['p95'])} / {_ms(q['p99'])}"


def text(report: dict[str, Any], source: str) -> str:
    """The terminal table: a few short sections, each a heading and aligned columns."""
    read = report["read"]
    n = report["messages"]
    lines = [f"stream-app report of {source}"]
    span = ""
    if report["firstCompletedAt"]:
        span = f", completed {report['firstCompletedAt']} .. {report['lastCompletedAt']}"
    lines.append(f"{n:,} messages{span}")
    lines.append(
        f"read {read['records']:,} records: {read['outcomes']:,} outcomes, {read['lateStatuses']:,} late "
        f"statuses, {read['bad']:,} unreadable, {read['repeatedOutcomes']:,} repeated outcomes dropped, "
        f"{read['filteredOut']:,} filtered out"
    )
    if read["unmatchedLateStatuses"]:
        lines.append(
            f"{read['unmatchedLateStatuses']:,} late statuses of messages not in this report "
            "(left out of the rates)"
        )
    if n == 0:
        lines.append("")
        lines.append("no outcomes to report" + (" (check the filters)" if read["filteredOut"] else ""))
        return printable("\n".join(lines) + "\n", lines=True)

    lines += ["", "RESULTS"]
    lines += _table(
        ["result", "messages", "share"],
        [[r, f"{report['results'][r]:,}", _pct(report["resultRates"][r])] for r in RESULTS],
    )
    tts = report["timeToSuccessMs"]
    lines.append(f"  time to success p50 / p95 / p99: {_quants(tts)}  ({tts['count']:,} messages)")
    for item in report["outcomeReasons"][:5]:
        lines.append(f"  {item['reason']}: {item['count']:,}")

    lines += ["", "FALLBACK FUNNEL (the step each message ended on)"]
    lines += _table(
        ["step", "reached", "ended here", *[r.lower() for r in RESULTS]],
        [
            [
                f"step {f['step']}",
                f"{f['reached']:,} ({_pct(f['reachedRate'])})",
                f"{f['endedHere']:,}",
                *[f"{f['results'][r]:,}" for r in RESULTS],
            ]
            for f in report["funnel"]
        ],
    )

    lines += ["", "STEPS"]
    lines += _table(
        ["step", "attempts", "channels", "ended by"],
        [
            [
                f"step {s['step']}",
                f"{s['attempts']:,}",
                ", ".join(f"{c} {v:,}" for c, v in s["channels"].items()),
                ", ".join(f"{e} {v:,}" for e, v in s["endedBy"].items()),
            ]
            for s in report["steps"]
        ],
        left=(0, 2, 3),
    )

    channels = report["channels"]
    lines += ["", "CHANNELS (delivery latency p50 / p95 / p99: issue -> DELIVERED, ACCEPTED -> DELIVERED)"]
    lines += _table(
        ["channel", "attempts", "succeeded", "fell back", "from issue", "from ACCEPTED", "late", "double"],
        [
            [
                c["channel"],
                f"{c['attempts']:,}",
                _pct(c["successRate"]),
                _pct(c["fallbackRate"]),
                _quants(c["deliveryLatencyMs"]["fromIssue"]),
                _quants(c["deliveryLatencyMs"]["fromAccepted"]),
                f"{c['lateStatuses']:,}",
                f"{c['doubleDeliveries']:,}",
            ]
            for c in channels
        ],
    )

    reasons = [(c["channel"], r) for c in channels for r in c["failureReasons"][:5]]
    if reasons:
        lines += ["", "FAILURE REASONS (top 5 per channel)"]
        lines += _table(
            ["channel", "count", "reason"],
            [[c, f"{r['count']:,}", r["reason"]] for c, r in reasons],
            left=(0, 2),
        )

    late = report["late"]
    lines += [
        "",
        "LATE AND DOUBLE DELIVERY",
        f"  messages with a success after their end (late): {late['messages']:,} ({_pct(late['rate'])})",
        f"  messages the person got twice (double delivery): {late['doubleDeliveryMessages']:,} "
        f"({_pct(late['doubleDeliveryRate'])})",
    ]

    target = channels[0]["whatIf"]["maxDoubleDeliveryRate"] if channels else 0.01
    lines += [
        "",
        f"RECOMMENDED fallbackAfter (shortest with at most {target:.1%} double deliveries; docs/report.md)",
    ]
    rows = []
    for c in channels:
        w = c["whatIf"]
        at = w["atRecommended"] or {}
        rows.append(
            [
                c["channel"],
                f"{w['attempts']:,}",
                f"{w['delivered']:,} / {w['failed']:,} / {w['undelivered']:,}",
                _seconds(w["recommendedFallbackAfter"]),
                _pct(at.get("fallbackRate")),
                "-" if not at else f"{at['doubleDeliveries']:,} ({_pct(at['doubleDeliveryRate'])})",
            ]
        )
    lines += _table(
        ["channel", "attempts", "delivered/failed/not", "recommended", "would fall back", "would double"],
        rows,
    )
    if read["bad"]:
        lines += ["", f"{read['bad']:,} unreadable records (first ones on stderr above, and in --json)"]
    return printable("\n".join(lines) + "\n", lines=True)


def _flat(prefix: str, value: Any, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list):
        return  # lists are sections of their own
    else:
        out.append((prefix, value))


def csv_text(report: dict[str, Any]) -> str:
    """One figure per row: ``section,subject,metric,value`` (long format, for a pivot table)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["section", "subject", "metric", "value"])

    def rows(section: str, subject: str, data: Any) -> None:
        flat: list[tuple[str, Any]] = []
        _flat("", data, flat)
        for metric, value in flat:
            w.writerow([section, subject, metric, "" if value is None else value])

    rows("summary", "all", {k: report[k] for k in ("messages", "firstCompletedAt", "lastCompletedAt")})
    rows("read", "all", {k: v for k, v in report["read"].items() if k != "badExamples"})
    rows(
        "filters", "all", {k: ",".join(v) if isinstance(v, list) else v for k, v in report["filters"].items()}
    )
    rows("results", "all", {"count": report["results"], "rate": report["resultRates"]})
    rows("timeToSuccessMs", "all", report["timeToSuccessMs"])
    rows("late", "all", report["late"])
    for item in report["outcomeReasons"]:
        w.writerow(["outcomeReason", "all", item["reason"], item["count"]])
    for f in report["funnel"]:
        rows("funnel", f"step {f['step']}", f)
    for s in report["steps"]:
        rows("step", f"step {s['step']}", s)
    for c in report["channels"]:
        name = c["channel"]
        rows("channel", name, {k: v for k, v in c.items() if k != "whatIf"})
        for r in c["failureReasons"]:
            w.writerow(["failureReason", name, r["reason"], r["count"]])
        for h in c["deliveryLatencyHistogram"]:
            w.writerow(
                ["latencyHistogram", name, f"{h['fromMs']}-{h['toMs'] if h['toMs'] else 'inf'}", h["count"]]
            )
        rows("whatIf", name, {k: v for k, v in c["whatIf"].items() if k not in ("curve", "atRecommended")})
        for p in c["whatIf"]["curve"]:
            rows(
                "whatIfCurve",
                name,
                {f"{p['fallbackAfter']}s": {k: v for k, v in p.items() if k != "fallbackAfter"}},
            )
    for b in report["overTime"]["buckets"]:
        rows("overTime", b["start"], {r: b[r] for r in RESULTS})
    return buf.getvalue()
