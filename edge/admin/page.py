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
 .legend span { display: inline-block; width: .8em; height: .8em; margin: 0 .3em 0 1em; }
 svg { display: block; margin: .3rem 0 1rem; }
</style>
</head>
<body>
<h1>edge: campaign results</h1>
<p class="muted">Read-only. Generated {{ generated }}. Last {{ days }} days per site time zone;
uplift is the difference in purchase rate (orders / visitors) against the holdout, with a 95%
confidence interval (normal approximation for the difference of two proportions).</p>
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
<th>Conversions</th><th>Conv. rate</th><th>Orders</th><th>Purchase rate</th>
<th>Uplift vs holdout (95% CI)</th></tr>
{% for arm, s in c.arms.items() %}
<tr><td>{{ arm }}</td><td>{{ s.impressions }}</td><td>{{ s.visitors }}</td><td>{{ s.clicks }}</td>
<td>{{ s.closes }}</td><td>{{ s.conversions }}</td><td>{{ pct(s.conversion_rate) }}</td>
<td>{{ s.orders }}</td><td>{{ pct(s.purchase_rate) }}</td>
<td>{% set u = c.uplift[arm] if c.uplift and arm in c.uplift else none %}
{%- if u %}<span class="{{ 'pos' if u.ci95[0] > 0 else ('neg' if u.ci95[1] < 0 else '') }}">
{{ pts(u.difference) }} ({{ pts(u.ci95[0]) }} to {{ pts(u.ci95[1]) }})</span>
{%- elif arm == 'holdout' %}<span class="muted">baseline</span>
{%- else %}<span class="muted">no holdout data</span>{% endif %}</td></tr>
{% endfor %}
</table>
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
    return _template.render(reports=shown, generated=generated, days=CHART_DAYS, pct=pct, pts=pts)
