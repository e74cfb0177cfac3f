"""Server-rendered SVG charts: horizontal bars, stacked bars and a heatmap.

No script and no `style=` attribute, so the charts pass the app's strict CSP. Colours are
presentation attributes, so an SVG saved on its own still reads; fonts and text colours come
from the class names styled in static/css/charts.css. Every text is escaped, since labels come
from user CSV headers. Output depends only on the input: the same data gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from markupsafe import Markup, escape

WIDTH = 640
ROW = 24  # height of one bar row or heatmap band
BAR = 16
MAX_LABEL_CHARS = 30
TOP = 34  # room for the title
ACCENT = "#1f5fbf"
# Okabe-Ito: tells series apart under the common colour-vision deficiencies.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")
MAX_CELL_NUMBERS = 15  # larger heatmaps get no numbers in cells: they would not fit


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    x_label: str,
    value_format: str = "{:,.0f}",
    max_bars: int = 40,
) -> Markup:
    """Horizontal bars in the given order; beyond `max_bars` only the largest are kept."""
    _check_values(v for _, v in bars)
    shown = _largest(bars, max_bars)
    left = _label_width(name for name, _ in shown)
    scale = _Scale(max((v for _, v in shown), default=0), left)
    body: list[str] = []
    for i, (name, value) in enumerate(shown):
        y = TOP + i * ROW
        text = value_format.format(value)
        body.append(
            f"<g><title>{escape(name)}: {escape(text)}</title>"
            f"{_row_label(name, left, y)}"
            f"{_rect('bar', left, y + 4, scale.width(value), BAR, ACCENT)}"
            f"{_text('value', left + scale.width(value) + 4, y + 16, text)}</g>"
        )
    height = _axis(body, scale, TOP + len(shown) * ROW + 4, x_label)
    if len(shown) < len(bars):
        height = _note(body, height, f"… {len(bars) - len(shown):,} more not shown")
    if not bars:
        height = _note(body, height, "no data")
    return _svg("bar-chart", title, height, body)


def stacked_bar_chart(
    rows: Sequence[tuple[str, Mapping[str, float]]],
    *,
    series: Sequence[str],
    title: str,
    x_label: str,
) -> Markup:
    """One bar per row, split into `series` segments (missing ones count 0), total at the end."""
    _check_values(v for _, values in rows for v in values.values())
    legend_y = TOP + 4
    top = legend_y + ROW
    left = _label_width(name for name, _ in rows)
    totals = [sum(values.get(s, 0) for s in series) for _, values in rows]
    scale = _Scale(max(totals, default=0), left)
    body = [_legend(series, left, legend_y)]
    for i, ((name, values), total) in enumerate(zip(rows, totals, strict=True)):
        y = top + i * ROW
        body.append(_row_label(name, left, y))
        x = float(left)
        for j, s in enumerate(series):
            value = values.get(s, 0)
            if value > 0:
                tip = f"{name}, {s}: {_number(value)} of {_number(total)}"
                body.append(
                    f"<g><title>{escape(tip)}</title>{_series_rect(j, x, y, scale, value)}</g>"
                )
                x += scale.width(value)
        body.append(_text("value", x + 4, y + 16, _number(total)))
    height = _axis(body, scale, top + len(rows) * ROW + 4, x_label)
    if not rows:
        height = _note(body, height, "no data")
    return _svg("stacked-bar-chart", title, height, body)


def heatmap(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    matrix: Sequence[Sequence[float]],
    *,
    title: str,
    value_label: str,
) -> Markup:
    """Cells shaded in proportion to their value (0 = white, the maximum = full colour)."""
    if len(matrix) != len(row_labels) or any(len(r) != len(col_labels) for r in matrix):
        raise ValueError("matrix shape does not match the row and column labels")
    _check_values(v for r in matrix for v in r)
    numbers = max(len(row_labels), len(col_labels)) <= MAX_CELL_NUMBERS
    cell = 36 if numbers else 18
    left = _label_width(row_labels)
    # Column labels are rotated 45 degrees up and to the right: they need room above the grid
    # and past its right edge in proportion to their length.
    slant = _label_width(col_labels) * 0.72
    top = TOP + 8 + slant
    peak = max((v for r in matrix for v in r), default=0)
    body = [_col_label(name, left + (j + 0.5) * cell, top - 6) for j, name in enumerate(col_labels)]
    for i, name in enumerate(row_labels):
        y = top + i * cell
        body.append(_row_label(name, left, y + (cell - ROW) / 2))
        for j, value in enumerate(matrix[i]):
            tip = f"{name} and {col_labels[j]}: {_number(value)} {value_label}"
            label = _compact(value) if numbers else None
            body.append(_cell(left + j * cell, y, cell, value / (peak or 1), label, tip))
    bottom = top + len(row_labels) * cell + 22
    key = f"Shade: {value_label} (white = 0, darkest = {_number(peak)})"
    body.append(_text("axis-label", left, bottom, key))
    width = max(WIDTH, left + len(col_labels) * cell + slant)
    return _svg("heatmap", title, bottom + 12, body, width=width)


class _Scale:
    """Maps values onto the bar area, whose right end is a round number."""

    def __init__(self, peak: float, left: float) -> None:
        self.step = _nice_step(peak)
        self.top = max(1, math.ceil(peak / self.step)) * self.step
        self.left = left
        self.span = WIDTH - left - 64  # the rest is room for the value labels

    def width(self, value: float) -> float:
        return self.span * value / self.top

    def ticks(self) -> list[float]:
        return [k * self.step for k in range(round(self.top / self.step) + 1)]


def _nice_step(peak: float) -> float:
    """1, 2 or 5 times a power of ten, giving about five ticks."""
    if peak <= 0:
        return 1
    raw = peak / 5
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_text(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step)))
    return f"{value:,.{decimals}f}"


def _check_values(values: Iterable[float]) -> None:
    for v in values:
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"charts draw non-negative finite values, got {v!r}")


def _largest(bars: Sequence[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    if len(bars) <= n:
        return list(bars)
    # Ties at the cut go to the earlier bar (the sort is stable); sorting the kept indices
    # then restores the caller's order.
    keep = sorted(sorted(range(len(bars)), key=lambda i: -bars[i][1])[:n])
    return [bars[i] for i in keep]


def _short(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def _text_width(text: str) -> float:
    """Rough width at the 12px label font; capitals are wider, as in "PNEUMONIA"."""
    return sum(8.6 if c.isupper() or c in "mw@%" else 6.9 for c in text)


def _label_width(names: Iterable[str]) -> float:
    return round(16 + max((_text_width(_short(n)) for n in names), default=0))


def label_width(names: Iterable[str]) -> int:
    """Room, in px at the 12px label font, for the longest of ``names`` as ``short_label``
    shows it: other server-rendered plots size their label column with it."""
    return int(_label_width(names))


def short_label(name: str) -> str:
    """``name`` cut to MAX_LABEL_CHARS with an ellipsis; pair it with a <title> of the name."""
    return _short(name)


def _f(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def _text(
    css: str, x: float, y: float, text: str, anchor: str = "start", fill: str | None = None
) -> str:
    colour = f' fill="{fill}"' if fill else ""
    return (
        f'<text class="{css}" x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{colour}>'
        f"{escape(text)}</text>"
    )


def _rect(css: str, x: float, y: float, w: float, h: float, fill: str, extra: str = "") -> str:
    return (
        f'<rect class="{css}" x="{_f(x)}" y="{_f(y)}" width="{_f(w)}" height="{_f(h)}" '
        f'fill="{fill}"{extra}/>'
    )


def _row_label(name: str, left: float, y: float) -> str:
    # The full name is in a tooltip, since a long one is cut short on the axis.
    label = _text("row-label", left - 6, y + 16, _short(name), "end")
    return f"<g><title>{escape(name)}</title>{label}</g>"


def _col_label(name: str, x: float, y: float) -> str:
    label = _text("col-label", 0, 0, _short(name))
    return (
        f'<g transform="translate({_f(x)} {_f(y)}) rotate(-45)">'
        f"<title>{escape(name)}</title>{label}</g>"
    )


def _series_rect(j: int, x: float, y: float, scale: _Scale, value: float) -> str:
    colour = PALETTE[j % len(PALETTE)]
    return _rect(f"bar series-{j}", x, y + 4, scale.width(value), BAR, colour)


def _legend(series: Sequence[str], left: float, y: float) -> str:
    items: list[str] = []
    x = left
    for j, s in enumerate(series):
        items.append(_rect(f"swatch series-{j}", x, y, 12, 12, PALETTE[j % len(PALETTE)]))
        items.append(_text("legend", x + 16, y + 11, s))
        x += 16 + _text_width(s) + 18
    return f'<g class="legend">{"".join(items)}</g>'


def _cell(x: float, y: float, size: float, share: float, label: str | None, tip: str) -> str:
    rect = _rect("cell", x, y, size, size, ACCENT, f' fill-opacity="{share:.3f}" stroke="#dde1e7"')
    text = ""
    if label is not None:
        # White text only where the cell is dark enough to carry it.
        dark = share > 0.7
        css = "cell-value on-dark" if dark else "cell-value"
        fill = "#fff" if dark else None
        text = _text(css, x + size / 2, y + size / 2 + 4, label, "middle", fill)
    return f"<g><title>{escape(tip)}</title>{rect}{text}</g>"


def _number(value: float) -> str:
    """Counts in full with thousands separators; small fractions (shares, rates) to 3 digits."""
    if float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}" if value < 10 else f"{value:,.1f}"


def _compact(value: float) -> str:
    """At most four characters, so a number fits its cell: 950, 9.5k, 95k, 1.2M."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 9.95 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}" if value >= 1 or value == 0 else f"{value:.2g}"


def _axis(body: list[str], scale: _Scale, y: float, x_label: str) -> float:
    """Draw the value axis at `y` with ticks and its label; return the height used so far."""
    right = scale.left + scale.span
    body.append(
        f'<line class="axis" x1="{_f(scale.left)}" y1="{_f(y)}" x2="{_f(right)}" '
        f'y2="{_f(y)}" stroke="#5b6575"/>'
    )
    for tick in scale.ticks():
        x = scale.left + scale.width(tick)
        body.append(
            f'<line class="axis" x1="{_f(x)}" y1="{_f(y)}" x2="{_f(x)}" y2="{_f(y + 5)}" '
            f'stroke="#5b6575"/>'
        )
        body.append(_text("tick", x, y + 17, _tick_text(tick, scale.step), "middle"))
    body.append(_text("axis-label", (scale.left + right) / 2, y + 34, x_label, "middle"))
    return y + 42


def _note(body: list[str], y: float, text: str) -> float:
    body.append(_text("note", 8, y + 6, text))
    return y + 14


def _svg(kind: str, title: str, height: float, body: list[str], width: float = WIDTH) -> Markup:
    t = escape(title)
    w, h = _f(width), _f(height)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" font-family="sans-serif" font-size="12" fill="#1c2330" '
        f'role="img" aria-label="{t}">'
        f'<title>{t}</title><text class="chart-title" x="8" y="20" font-size="15" '
        f'font-weight="600">{t}</text>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every text above is escaped
