"""The read-only admin page: each site's campaigns, their results and a bar
chart of the last 30 days, as one server-rendered HTML page (Jinja2 with
autoescape, inline SVG, no JavaScript, no build step).

The template is kept here rather than in a file so that it ships with the
package without package-data entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, select_autoescape

CHART_DAYS = 30
WIDTH, HEIGHT, PAD = 600, 120, 18

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>edge admin</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 2rem; color: #222; }
 h1 { font-size: 1.4rem; } h2 { margin-top: 2rem; } h3 { margin-bottom: .3rem; }
 table { border-collapse: collapse; margin: .5rem 0; }
 th, td { padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: right; }
 th:first-child, td:first-child { text-align: left; }
 .muted { color: #777; } .pos { color: #176f2c; } .neg { color: #a31b1b; }
 .warn { background: #fdecea; border-left: 4px solid #a31b1b; padding: .4rem .6rem; }
 .legend span { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 1em; }
 svg { display: block; margin: .3rem 0 1rem; }
</style>
</head>
<body>
<h1>edge: campaign results</h1>
<p class="muted">Read-only. Generated {{ generated }}. Last {{ days }} days per site time zone.
The A/B test counts each visitor once, in the arm of their first exposure, and their first
click, conversion and purchase within the campaign's attribution window after it; rates carry
95% Wilson intervals, differences Newcombe's (docs/statistics.md).</p>
{% for report in reports %}
<h2>Site {{ report.site }} <small class="muted">configuration {{ report.config }},
 {{ report.from }} to {{ report.to }} ({{ report.timezone }})</small></h2>
{% if not report.campaigns %}<p class="muted">No campaigns.</p>{% endif %}
{% for c in report.campaigns %}
<section>
<h3>{{ c.name }} <small class="muted">{{ c.id }}</small></h3>
{% if c.arms %}
<table>
<tr><th>Arm</th><th>Impressions</th><th>Visitors</th><th>Clicks</th><th>Closes</th>
<th>Conversions</th><th>Orders</th><th>Revenue</th></tr>
{% for arm, s in c.arms.items() %}
<tr><td>{{ arm }}</td><td>{{ s.impressions }}</td><td>{{ s.visitors }}</td><td>{{ s.clicks }}</td>
<td>{{ s.closes }}</td><td>{{ s.conversions }}</td><td>{{ s.orders }}</td>
<td>{{ "%.2f"|format(s.revenue) }}</td></tr>
{% endfor %}
</table>
{% set e = c.experiment %}
<h4>A/B test <small class="muted">control {{ e.control }}; outcomes within
 {{ days_text(e.attribution_days) }} of a visitor's first exposure; visitors since
 {{ e.maturing_from }} may still add some</small></h4>
{% if e.srm and e.srm.mismatch %}
<p class="warn" role="alert"><strong>Sample ratio mismatch</strong>: visitors per arm
{% for arm, n in e.srm.observed.items() %}{{ arm }} {{ n }}
 (expected {{ "%.0f"|format(e.srm.expected[arm]) }}){{ ", " if not loop.last }}{% endfor %};
chi-square {{ "%.1f"|format(e.srm.chi2) }}, {{ pval(e.srm.p_value) }}. Assignment or tracking is
skewed: do not trust these results until the cause is found.</p>
{% elif e.srm %}
<p class="muted">Visitor split as configured (sample-ratio check {{ pval(e.srm.p_value) }}).</p>
{% endif %}
<table>
<tr><th>Arm</th><th>Visitors</th><th>Configured share</th><th>Click-through (95% CI)</th>
<th>Conversion (95% CI)</th><th>Purchase (95% CI)</th></tr>
{% for arm, a in e.arms.items() %}
<tr><td>{{ arm }}</td><td>{{ a.visitors }}</td><td>{{ pct(a.expected_share) }}</td>
{% for m in ("click", "conversion", "purchase") %}<td>{{ ci(a[m]) }}</td>{% endfor %}</tr>
{% endfor %}
</table>
{% if e.comparisons %}
<table>
<tr><th>Arm</th><th>Against</th><th>Metric</th><th>Difference (95% CI)</th><th>Relative</th></tr>
{% for d in e.comparisons %}
<tr><td>{{ d.arm }}</td><td>{{ d.against }}</td><td>{{ d.metric }}</td>
<td><span class="{{ 'pos' if d.ci95[0] > 0 else ('neg' if d.ci95[1] < 0 else '') }}">
{{ pts(d.difference) }} ({{ pts(d.ci95[0]) }} to {{ pts(d.ci95[1]) }})</span></td>
<td>{{ rel(d.relative) }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% else %}<p class="muted">No data in this period.</p>{% endif %}
{% set ch = c.chart %}
<div class="legend muted"><span style="background:#9ab8e6"></span>impressions
<span style="background:#1d4f9c"></span>conversions (peak {{ ch.peak }} per day)</div>
<svg role="img" aria-label="Impressions and conversions per day for {{ c.name }}"
 width="{{ ch.width }}" height="{{ ch.height }}" viewBox="0 0 {{ ch.width }} {{ ch.height }}"
 xmlns="http://www.w3.org/2000/svg">
<line x1="0" y1="{{ ch.base }}" x2="{{ ch.width }}" y2="{{ ch.base }}" stroke="#bbb"/>
{% for b in ch.bars %}
<g><title>{{ b.day }}: {{ b.impressions }} impressions, {{ b.conversions }} conversions</title>
<rect x="{{ b.x }}" y="{{ b.iy }}" width="{{ b.w }}" height="{{ b.ih }}" fill="#9ab8e6"/>
<rect x="{{ b.cx }}" y="{{ b.cy }}" width="{{ b.cw }}" height="{{ b.ch }}" fill="#1d4f9c"/></g>
{% endfor %}
<text x="0" y="{{ ch.height - 3 }}" font-size="10" fill="#777">{{ ch.first }}</text>
<text x="{{ ch.width }}" y="{{ ch.height - 3 }}" font-size="10" fill="#777"
 text-anchor="end">{{ ch.last }}</text>
</svg>
</section>
{% endfor %}
{% else %}
<p>No sites are configured.</p>
{% endfor %}
</body>
</html>
"""

_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_template = _env.from_string(TEMPLATE)


def pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.2f}%"


def pts(difference: float) -> str:
    """A difference of rates in percentage points."""
    return f"{difference * 100:+.2f} pp"


def ci(rate: dict[str, Any] | None) -> str:
    """A rate and its interval: ``12.50% (10.31% to 15.07%)``."""
    if rate is None:
        return "-"
    low, high = rate["ci95"]
    return f"{pct(rate['rate'])} ({pct(low)} to {pct(high)})"


def rel(relative: float | None) -> str:
    return "-" if relative is None else f"{relative * 100:+.1f}%"


def pval(p: float) -> str:
    return "p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"


def days_text(days: float) -> str:
    return f"{days:g} day" if days == 1 else f"{days:g} days"


def chart(daily: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Bar geometry: per day an impressions bar with the conversions bar
    inside it, both on one scale (the busiest day's impressions)."""
    peak = max([max(d["impressions"], d["conversions"]) for d in daily] + [0])
    slot = WIDTH / max(len(daily), 1)
    top, base = 4.0, float(HEIGHT - PAD)
    scale = (base - top) / peak if peak else 0.0
    bars = []
    for i, d in enumerate(daily):
        ih, ch = d["impressions"] * scale, d["conversions"] * scale
        x, w = i * slot + 1, max(slot - 2, 1)
        bars.append(
            {
                "day": d["day"],
                "impressions": d["impressions"],
                "conversions": d["conversions"],
                "x": round(x, 1),
                "w": round(w, 1),
                "iy": round(base - ih, 1),
                "ih": round(ih, 1),
                "cx": round(x + w / 4, 1),
                "cw": round(w / 2, 1),
                "cy": round(base - ch, 1),
                "ch": round(ch, 1),
            }
        )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "base": base,
        "peak": peak,
        "bars": bars,
        "first": daily[0]["day"] if daily else "",
        "last": daily[-1]["day"] if daily else "",
    }


def render(reports: Sequence[dict[str, Any]], *, generated: str) -> str:
    shown = [
        {**report, "campaigns": [{**c, "chart": chart(c["daily"])} for c in report["campaigns"]]}
        for report in reports
    ]
    return _template.render(
        reports=shown,
        generated=generated,
        days=CHART_DAYS,
        pct=pct,
        pts=pts,
        ci=ci,
        rel=rel,
        pval=pval,
        days_text=days_text,
    )
