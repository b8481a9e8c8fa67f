"""The HTML report: one self-contained file with charts, that opens with no network.

Charts are plotly.js (MIT), embedded whole from the ``plotly`` Python package (the optional extra
``stream-app[report]``): a widely used, actively maintained library whose one minified file draws
funnels, bars and log-scale lines with hover and zoom and needs nothing else: no CDN, no fonts, no
build step. The page's own script draws each chart from the report's JSON (embedded as data, never
as markup) and records how many rendered in ``<body data-charts=...>`` and any error in
``data-errors``, so a headless browser can check it (``tests/integration/report/test_html_chromium.py``).
"""

from __future__ import annotations

import html
from typing import Any

import orjson

from stream_app.report.errors import ReportError
from stream_app.report.read import RESULTS

INSTALL_HINT = "pip install 'stream-app[report]' (or: pip install plotly)"
CHANNEL_COLOURS = {"WHATSAPP": "#25a244", "RCS": "#1e88e5", "SMS": "#8e24aa", "VIBER": "#f4511e"}
RESULT_COLOURS = {"SUCCEEDED": "#2e7d32", "FAILED": "#c62828", "EXPIRED": "#ef6c00", "CANCELLED": "#757575"}


def plotly_js() -> str:
    """The plotly.js bundle of the ``plotly`` package, or a one-line ReportError saying how to get it."""
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:
        raise ReportError(f"--html needs the plotly package: {INSTALL_HINT}") from None
    js: str = get_plotlyjs()
    return js


def _hist_label(bucket: dict[str, Any]) -> str:
    from stream_app.admin.follow import format_duration

    lo, hi = bucket["fromMs"], bucket["toMs"]
    if hi is None:
        return f"> {format_duration(lo)}"
    return f"<= {format_duration(hi)}" if lo == 0 else f"{format_duration(lo)}-{format_duration(hi)}"


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The charts as plotly figure specs: ``{"id", "title", "data", "layout"}``."""
    figs: list[dict[str, Any]] = []
    funnel = report["funnel"]
    steps = [f"step {f['step']}" for f in funnel]
    channels_of = {s["step"]: ", ".join(s["channels"]) for s in report["steps"]}
    figs.append(
        {
            "id": "funnel",
            "title": "Fallback funnel: messages reaching each step, and the result of those that ended there",
            "data": [
                {
                    "type": "funnel",
                    "name": "reached",
                    "y": [f"{s} ({channels_of.get(i, '')})" for i, s in enumerate(steps)],
                    "x": [f["reached"] for f in funnel],
                    "textinfo": "value+percent initial",
                    "xaxis": "x",
                    "yaxis": "y",
                },
                *[
                    {
                        "type": "bar",
                        "orientation": "h",
                        "name": f"ended here: {r.lower()}",
                        "y": [f"{s} ({channels_of.get(i, '')})" for i, s in enumerate(steps)],
                        "x": [f["results"][r] for f in funnel],
                        "marker": {"color": RESULT_COLOURS[r]},
                        "xaxis": "x2",
                        "yaxis": "y2",
                    }
                    for r in RESULTS
                ],
            ],
            "layout": {
                "barmode": "stack",
                "margin": {"t": 20, "r": 20, "b": 60, "l": 150},
                "grid": {"rows": 1, "columns": 2, "pattern": "independent"},
                "yaxis": {"autorange": "reversed"},
                "yaxis2": {"autorange": "reversed", "showticklabels": False},
            },
        }
    )
    hist_data = []
    for c in report["channels"]:
        hist = c["deliveryLatencyHistogram"]
        hist_data.append(
            {
                "type": "bar",
                "name": c["channel"],
                "x": [_hist_label(h) for h in hist],
                "y": [h["count"] for h in hist],
                "marker": {"color": CHANNEL_COLOURS.get(c["channel"])},
            }
        )
    figs.append(
        {
            "id": "latency",
            "title": "Delivery latency per channel (issue -> DELIVERED)",
            "data": hist_data,
            "layout": {
                "barmode": "group",
                "xaxis": {
                    "title": {"text": "time from the attempt's issue to DELIVERED"},
                    "type": "category",
                },
                "yaxis": {"title": {"text": "attempts"}},
            },
        }
    )
    buckets = report["overTime"]["buckets"]
    figs.append(
        {
            "id": "over-time",
            "title": f"Outcomes over time (per {report['overTime']['bucketSeconds'] // 60} min completed)",
            "data": [
                {
                    "type": "bar",
                    "name": r.lower(),
                    "x": [b["start"] for b in buckets],
                    "y": [b[r] for b in buckets],
                    "marker": {"color": RESULT_COLOURS[r]},
                }
                for r in RESULTS
            ],
            "layout": {
                "barmode": "stack",
                "xaxis": {"type": "date"},
                "yaxis": {"title": {"text": "messages"}},
            },
        }
    )
    curves: list[dict[str, Any]] = []
    for c in report["channels"]:
        w = c["whatIf"]
        xs = [p["fallbackAfter"] for p in w["curve"]]
        curves.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"{c['channel']} fallback rate",
                "line": {"color": CHANNEL_COLOURS.get(c["channel"])},
                "x": xs,
                "y": [p["fallbackRate"] for p in w["curve"]],
                "legendgroup": c["channel"],
            }
        )
        curves.append(
            {
                "type": "scatter",
                "mode": "lines",
                "line": {"dash": "dot", "color": CHANNEL_COLOURS.get(c["channel"])},
                "name": f"{c['channel']} double-delivery rate",
                "x": xs,
                "y": [p["doubleDeliveryRate"] for p in w["curve"]],
                "legendgroup": c["channel"],
            }
        )
        if w["atRecommended"]:
            at = w["atRecommended"]
            curves.append(
                {
                    "type": "scatter",
                    "mode": "markers+text",
                    "name": f"{c['channel']} recommended",
                    "x": [at["fallbackAfter"]],
                    "y": [at["fallbackRate"]],
                    "text": [f"{at['fallbackAfter']} s"],
                    "textposition": "top center",
                    "marker": {"size": 11, "symbol": "diamond", "color": CHANNEL_COLOURS.get(c["channel"])},
                    "legendgroup": c["channel"],
                }
            )
    figs.append(
        {
            "id": "what-if",
            "title": "What-if: fallback and double-delivery rates by fallbackAfter (observed latencies)",
            "data": curves,
            "layout": {
                "xaxis": {"type": "log", "title": {"text": "fallbackAfter (s, log scale)"}},
                "yaxis": {
                    "tickformat": ".0%",
                    "title": {"text": "share of the channel's attempts"},
                    "rangemode": "tozero",
                },
            },
        }
    )
    return figs


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto;
       max-width: 1200px; color: #212121; padding: 0 16px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 17px; margin: 28px 0 6px; }}
.meta {{ color: #616161; font-size: 13px; }}
.kpis {{ display: flex; gap: 14px; flex-wrap: wrap; margin: 16px 0; }}
.kpi {{ border: 1px solid #e0e0e0; border-radius: 8px; padding: 10px 14px; min-width: 130px; }}
.kpi b {{ display: block; font-size: 20px; }} .kpi span {{ color: #616161; font-size: 12px; }}
table {{ border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }}
th, td {{ border-bottom: 1px solid #eeeeee; padding: 4px 10px; text-align: right; }}
th:first-child, td:first-child, td.text {{ text-align: left; }} th {{ background: #fafafa; }}
.chart {{ width: 100%; height: 420px; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="meta">{meta}</div>
<div class="kpis">{kpis}</div>
<h2>Recommended fallbackAfter per channel</h2>
{recommend}
<div id="charts"></div>
<h2>Channels</h2>
{channels}
<script>{plotly}</script>
<script id="report-data" type="application/json">{data}</script>
<script>
(function () {{
  var body = document.body, errors = [];
  function fail(what) {{ errors.push(String(what)); body.dataset.errors = errors.join(" | "); }}
  window.addEventListener("error", function (e) {{ fail(e.message); }});
  var figs = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("charts"), drawn = [];
  figs.forEach(function (f) {{
    var h = document.createElement("h2"); h.textContent = f.title; root.appendChild(h);
    var div = document.createElement("div");
    div.className = "chart"; div.id = "chart-" + f.id; root.appendChild(div);
    var base = {{margin: {{t: 20, r: 20, b: 60, l: 60}}, legend: {{orientation: "h"}}}};
    var layout = Object.assign(base, f.layout);  // a figure's own margin wins
    drawn.push(Plotly.newPlot(div, f.data, layout, {{displaylogo: false, responsive: true}}));
  }});
  Promise.all(drawn).then(function () {{ body.dataset.charts = String(drawn.length); }}, fail);
}})();
</script>
</body></html>
"""


def _html_table(headers: list[str], rows: list[list[str]], text: tuple[int, ...] = ()) -> str:
    """A table; the ``text`` columns are left-aligned like the first, the figures right-aligned."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="text">{html.escape(c)}</td>' if i in text else f"<td>{html.escape(c)}</td>"
                  for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def page(report: dict[str, Any], source: str) -> str:
    """The whole HTML document."""
    from stream_app.report.render import _pct, _quants, _seconds

    js = plotly_js()
    n = report["messages"]
    late = report["late"]
    tts = report["timeToSuccessMs"]
    kpis = [
        (f"{n:,}", "messages"),
        (_pct(report["resultRates"]["SUCCEEDED"]), "succeeded"),
        (_quants(tts), "time to success p50 / p95 / p99"),
        (_pct(late["rate"]), "late success after the end"),
        (_pct(late["doubleDeliveryRate"]), "double delivery"),
    ]
    read = report["read"]
    meta = (
        f"{html.escape(source)} &middot; completed {html.escape(str(report['firstCompletedAt']))} .. "
        f"{html.escape(str(report['lastCompletedAt']))} &middot; {read['records']:,} records read, "
        f"{read['bad']:,} unreadable, {read['repeatedOutcomes']:,} repeated outcomes dropped"
    )
    recommend = _html_table(
        [
            "channel",
            "attempts",
            "delivered",
            "failed",
            "not delivered",
            "recommended fallbackAfter",
            "would fall back",
            "would double-deliver",
            "why",
        ],
        [
            [
                c["channel"],
                f"{c['whatIf']['attempts']:,}",
                f"{c['whatIf']['delivered']:,}",
                f"{c['whatIf']['failed']:,}",
                f"{c['whatIf']['undelivered']:,}",
                _seconds(c["whatIf"]["recommendedFallbackAfter"]),
                _pct((c["whatIf"]["atRecommended"] or {}).get("fallbackRate")),
                _pct((c["whatIf"]["atRecommended"] or {}).get("doubleDeliveryRate")),
                c["whatIf"]["why"],
            ]
            for c in report["channels"]
        ],
        text=(8,),
    )
    channels = _html_table(
        [
            "channel",
            "attempts",
            "succeeded",
            "fell back",
            "latency from issue p50/p95/p99",
            "from ACCEPTED",
            "late",
            "double",
            "top failure reason",
        ],
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
                (
                    f"{c['failureReasons'][0]['reason']} ({c['failureReasons'][0]['count']:,})"
                    if c["failureReasons"]
                    else "-"
                ),
            ]
            for c in report["channels"]
        ],
        text=(8,),
    )
    # "</" cannot appear inside a <script> element: escape it in the embedded JSON.
    data = orjson.dumps(figures(report)).decode().replace("</", "<\\/")
    return _PAGE.format(
        title="stream-app delivery report",
        meta=meta,
        kpis="".join(
            f'<div class="kpi"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>' for v, k in kpis
        ),
        recommend=recommend,
        channels=channels,
        plotly=js,
        data=data,
    )
