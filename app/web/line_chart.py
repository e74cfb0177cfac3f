"""Server-rendered SVG line charts (training curves: losses, FID over kimg).

Same rules as `app.web.charts`: no script, no style attributes, every text escaped, the same
input gives the same bytes. Values may be negative (critic losses) but must be finite; points
that are not finite are skipped rather than drawn as spikes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

from app.web.charts import PALETTE, _f, _legend, _nice_step, _svg, _text, _tick_text

WIDTH = 640
HEIGHT = 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 58, 44

Point = tuple[float, float]


def _range(values: Sequence[float]) -> tuple[float, float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    step = _nice_step(hi - lo)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    x_label: str,
    y_label: str,
    intervals: Mapping[str, Sequence[tuple[float, float, float]]] | None = None,
) -> Markup:
    """`intervals`: per series name, (x, low, high) drawn as error bars (confidence intervals)."""
    clean = {
        name: [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)]
        for name, points in series.items()
    }
    bars = {
        name: [b for b in rows if all(math.isfinite(v) for v in b)]
        for name, rows in (intervals or {}).items()
        if name in clean
    }
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts]
    ys += [v for rows in bars.values() for _, lo, hi in rows for v in (lo, hi)]
    body: list[str] = [_legend(list(clean), LEFT, 30)]
    if not xs:
        body.append(_text("note", LEFT, TOP + 20, "no data yet"))
        return _svg("line-chart", title, TOP + 40, body)
    x0, x1, xstep = _range(xs) if max(xs) > min(xs) else (min(xs), min(xs) + 1, 1.0)
    x0 = max(x0, 0.0) if min(xs) >= 0 else x0
    y0, y1, ystep = _range(ys)
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
