"""Server-rendered SVG line charts (training curves: losses, FID over kimg).

Same rules as `app.web.charts`: no script, no style attributes, every text escaped, the same
input gives the same bytes. Values may be negative (critic losses) but must be finite; points
that are not finite are skipped rather than drawn as spikes.

`interactive_line_chart` wraps the SVG with the same data as JSON, which static/js/charts.js
turns into a uPlot chart (hover values, zoom, smoothing, log scale): the SVG stays as what a
browser without script shows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from markupsafe import Markup, escape

from app.web.charts import PALETTE, _f, _legend, _nice_step, _svg, _text, _tick_text

WIDTH = 640
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 58, 44

Point = tuple[float, float]
# A metric's natural range, either end open (None): the y axis never runs past it.
Bounds = tuple[float | None, float | None]
UNIT_INTERVAL: Bounds = (0.0, 1.0)  # AUC, probabilities such as ADA's p
NON_NEGATIVE: Bounds = (0.0, None)  # FID, privacy epsilon


def _range(values: Sequence[float], bounds: Bounds | None = None) -> tuple[float, float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = _nice_step(hi - lo)
    start, stop = math.floor(lo / step) * step, math.ceil(hi / step) * step
    floor, ceiling = bounds or (None, None)
    # Rounding out to whole steps must not take an AUC axis below 0 or past 1; data outside
    # the natural range (a bug upstream) still stays on the chart.
    if floor is not None and min(values) >= floor:
        start = max(start, floor)
    if ceiling is not None and max(values) <= ceiling:
        stop = min(stop, ceiling)
    return start, stop, step


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    y_bounds: Bounds | None = None,
) -> Markup:
    """`intervals`: per series name, (x, low, high) drawn as error bars (confidence intervals);
    `y_bounds`: the metric's natural range, which the y axis stays within."""
    clean, bars = _finite(series, intervals)
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    ys += [v for rows in bars.values() for _, lo, hi in rows for v in (lo, hi)]
    body: list[str] = [_legend(list(clean), LEFT, 30)]
    if not xs:
        body.append(_text("note", LEFT, TOP + 20, "no data yet"))
        return _svg("line-chart", title, TOP + 40, body)
    x0, x1, xstep = _range(xs) if max(xs) > min(xs) else (min(xs), min(xs) + 1, 1.0)
    x0 = max(x0, 0.0) if min(xs) >= 0 else x0
    y0, y1, ystep = _range(ys, y_bounds)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + (y1 - y) / (y1 - y0) * plot_h

    for k in range(round((y1 - y0) / ystep) + 1):
        y = y0 + k * ystep
        body.append(
            f'<line class="grid" x1="{LEFT}" y1="{_f(py(y))}" x2="{_f(LEFT + plot_w)}" '
            f'y2="{_f(py(y))}" stroke="#e3e7ee"/>'
        )
        body.append(_text("tick", LEFT - 6, py(y) + 4, _tick_text(y, ystep), "end"))
    for k in range(round((x1 - x0) / xstep) + 1):
        x = x0 + k * xstep
        body.append(_text("tick", px(x), TOP + plot_h + 16, _tick_text(x, xstep), "middle"))
    body.append(
        f'<line class="axis" x1="{LEFT}" y1="{_f(TOP + plot_h)}" x2="{_f(LEFT + plot_w)}" '
        f'y2="{_f(TOP + plot_h)}" stroke="#5b6575"/>'
    )
    body.append(_text("axis-label", LEFT + plot_w / 2, TOP + plot_h + 34, x_label, "middle"))
    body.append(
        f'<g transform="translate(14 {_f(TOP + plot_h / 2)}) rotate(-90)">'
        f"{_text('axis-label', 0, 0, y_label, 'middle')}</g>"
    )
    for j, (name, points) in enumerate(clean.items()):
        colour = PALETTE[j % len(PALETTE)]
        for x, lo, hi in bars.get(name, []):
            cx, top, bottom = _f(px(x)), _f(py(hi)), _f(py(lo))
            body.append(
                f'<path class="ci series-{j}" d="M{cx} {top}V{bottom}M{_f(px(x) - 4)} {top}'
                f'h8M{_f(px(x) - 4)} {bottom}h8" stroke="{colour}" fill="none">'
                f"<title>{escape(name)} at {x:g}: 95% CI {lo:.3g} to {hi:.3g}</title></path>"
            )
        coords = " ".join(f"{_f(px(x))},{_f(py(y))}" for x, y in points)
        body.append(
            f'<polyline class="line series-{j}" points="{coords}" fill="none" '
            f'stroke="{colour}" stroke-width="2"><title>{escape(name)}</title></polyline>'
        )
        if len(points) <= 60:
            for x, y in points:
                body.append(
                    f'<circle class="point series-{j}" cx="{_f(px(x))}" cy="{_f(py(y))}" r="2.5" '
                    f'fill="{colour}"><title>{escape(name)} at {x:g}: {y:.4g}</title></circle>'
                )
    return _svg("line-chart", title, HEIGHT, body)


def _finite(
    series: Mapping[str, Sequence[Point]],
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None,
) -> tuple[dict[str, list[Point]], dict[str, list[tuple[float, float, float]]]]:
    clean = {
        name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
        for name, points in series.items()
    }
    bars = {
        name: [b for b in rows if all(math.isfinite(v) for v in b)]
        for name, rows in (intervals or {}).items()
        if name in clean
    }
    return clean, bars


def chart_spec(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    y_bounds: Bounds | None = None,
    log_option: bool = False,
    smoothing: bool = False,
) -> dict[str, Any]:
    """What static/js/charts.js draws: one entry per series (a run, a loss) in the SVG's
    colours, non-finite points dropped as the SVG drops them. `log_option` offers a log
    y scale (loss-like series), `smoothing` an exponential moving average (noisy curves)."""
    clean, bars = _finite(series, intervals)
    return {
        "title": title,
        "x_label": x_label,
        "y_label": y_label,
        "y_range": list(y_bounds) if y_bounds else None,
        "log_option": log_option,
        "smoothing": smoothing,
        "series": [
            {
                "name": name,
                "colour": PALETTE[j % len(PALETTE)],
                "points": [[x, y] for x, y in points],
                "intervals": [list(b) for b in bars.get(name, [])],
            }
            for j, (name, points) in enumerate(clean.items())
        ],
    }


def interactive_line_chart(
    chart_id: str,
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
    y_bounds: Bounds | None = None,
    log_option: bool = False,
    smoothing: bool = False,
) -> Markup:
    """The SVG chart inside an element whose `data-chart` attribute holds the data as JSON;
    the markup matches templates/macros/charts.html's `line_chart`. An attribute, not a JSON
    script block: htmx drops every <script> from the markup it swaps in (allowScriptTags is
    off), which would leave a running job's refreshed charts without data."""
    svg = line_chart(
        series,
        title=title,
        x_label=x_label,
        y_label=y_label,
        intervals=intervals,
        y_bounds=y_bounds,
    )
    spec = chart_spec(
        series,
        title=title,
        x_label=x_label,
        y_label=y_label,
        intervals=intervals,
        y_bounds=y_bounds,
        log_option=log_option,
        smoothing=smoothing,
    )
    return Markup(  # noqa: S704 - the id and JSON are escaped, the SVG is safe markup
        f'<div class="ichart" id="{escape(chart_id)}" data-chart="{escape(json.dumps(spec))}">'
        f"{svg}</div>"
    )
