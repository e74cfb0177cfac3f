"""Server-rendered SVG charts: well-formed, escaped, CSP-safe, one shape per datum."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from app.web.charts import bar_chart, heatmap, stacked_bar_chart

NS = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>'


def parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    text = str(svg)
    assert "style=" not in text
    assert "<script" not in text.lower()
    root = ET.fromstring(text)
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("viewBox", "").startswith("0 0 ")
    return root


def rects(root: ET.Element, css: str) -> list[ET.Element]:
    return [r for r in root.iter(f"{NS}rect") if css in r.get("class", "").split()]


def texts(root: ET.Element, css: str) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text") if css in t.get("class", "").split()]


def tooltips(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}title")]


def test_bar_chart_draws_one_bar_per_value_with_labels_and_axis() -> None:
    bars = [("Edema", 1234), ("Effusion", 50), ("Pneumonia", 0)]
    root = parse(bar_chart(bars, title="Positives per label", x_label="images"))
    assert root.get("aria-label") == "Positives per label"
    assert tooltips(root)[0] == "Positives per label"
    assert len(rects(root, "bar")) == 3
    assert texts(root, "value") == ["1,234", "50", "0"]
    assert texts(root, "row-label") == ["Edema", "Effusion", "Pneumonia"]
    assert texts(root, "axis-label") == ["images"]
    assert texts(root, "tick")[0] == "0"
    widths = [float(r.get("width", "nan")) for r in rects(root, "bar")]
    assert widths[0] > widths[1] > widths[2] == 0
    assert "Edema: 1,234" in tooltips(root)


def test_bar_chart_escapes_every_text() -> None:
    svg = bar_chart([(EVIL, 3)], title=f"t {EVIL}", x_label=EVIL, value_format="{:.1f} <b>")
    text = str(svg)
    assert "&lt;script&gt;" in text
    root = parse(svg)
    assert root.get("aria-label") == f"t {EVIL}"
    assert texts(root, "axis-label") == [EVIL]
    assert texts(root, "value") == ["3.0 <b>"]


def test_long_names_are_cut_short_with_the_full_name_in_a_tooltip() -> None:
    name = "Enlarged Cardiomediastinum with a very long suffix"
    root = parse(bar_chart([(name, 5)], title="t", x_label="images"))
    (shown,) = texts(root, "row-label")
    assert shown.endswith("…") and len(shown) < len(name)
    assert name in tooltips(root)


def test_bar_chart_keeps_the_largest_bars_in_order_and_notes_the_rest() -> None:
    bars = [(f"class {i}", float(i % 7 * 10 + i)) for i in range(50)]
    root = parse(bar_chart(bars, title="t", x_label="images", max_bars=40))
    assert len(rects(root, "bar")) == 40
    assert texts(root, "note") == ["… 10 more not shown"]
    kept = texts(root, "row-label")
    smallest_kept = min(v for n, v in bars if n in kept)
    assert all(v <= smallest_kept for n, v in bars if n not in kept)
    assert kept == [n for n, _ in bars if n in kept]  # the caller's order


def test_empty_and_invalid_input() -> None:
    root = parse(bar_chart([], title="t", x_label="images"))
    assert rects(root, "bar") == []
    assert texts(root, "note") == ["no data"]
    with pytest.raises(ValueError):
        bar_chart([("a", -1)], title="t", x_label="images")
    with pytest.raises(ValueError):
        bar_chart([("a", float("nan"))], title="t", x_label="images")


def test_stacked_bars_have_a_segment_per_non_zero_value_and_a_legend() -> None:
    rows = [
        ("Edema", {"train": 70, "val": 10, "test": 20}),
        ("Effusion", {"train": 5, "test": 1}),  # no val images
        (EVIL, {"train": 0, "val": 0, "test": 0}),
    ]
    series = ["train", "val", "test"]
    root = parse(stacked_bar_chart(rows, series=series, title="Per split", x_label="images"))
    assert len(rects(root, "bar")) == 5
    assert len(rects(root, "swatch")) == 3
    assert texts(root, "legend") == series
    assert texts(root, "value") == ["100", "6", "0"]
    assert texts(root, "row-label")[2] == EVIL
    assert "Edema, val: 10 of 100" in tooltips(root)
    edema = rects(root, "bar")[:3]
    assert [r.get("fill") for r in edema] == [r.get("fill") for r in rects(root, "swatch")]
    # Segments are laid end to end.
    ends = [float(r.get("x", "0")) + float(r.get("width", "0")) for r in edema]
    assert [float(r.get("x", "0")) for r in edema[1:]] == pytest.approx(ends[:2], abs=0.11)


def test_heatmap_cells_numbers_and_shades() -> None:
    names = ["A", "B", EVIL]
    matrix = [[10, 4, 0], [4, 8, 2], [0, 2, 5]]
    root = parse(heatmap(names, names, matrix, title="Co-occurrence", value_label="images"))
    cells = rects(root, "cell")
    assert len(cells) == 9
    opacities = [float(c.get("fill-opacity", "nan")) for c in cells]
    assert opacities[0] == 1.0 and opacities[2] == 0.0
    assert opacities[1] == pytest.approx(0.4)
    assert texts(root, "cell-value") == ["10", "4", "0", "4", "8", "2", "0", "2", "5"]
    assert texts(root, "row-label") == names
    assert texts(root, "col-label") == names
    assert f"A and {EVIL}: 0 images" in tooltips(root)


def test_big_heatmap_has_no_numbers_in_cells() -> None:
    names = [f"c{i}" for i in range(16)]
    matrix = [[i * j for j in range(16)] for i in range(16)]
    root = parse(heatmap(names, names, matrix, title="t", value_label="images"))
    assert len(rects(root, "cell")) == 256
    assert texts(root, "cell-value") == []


def test_heatmap_numbers_are_compact() -> None:
    root = parse(heatmap(["a"], ["b", "c"], [[123456, 9876]], title="t", value_label="images"))
    assert texts(root, "cell-value") == ["123k", "9.9k"]


def test_heatmap_of_fractions_and_of_zeros() -> None:
    root = parse(heatmap(["a"], ["b", "c"], [[0.25, 0.5]], title="t", value_label="of images"))
    assert "a and b: 0.25 of images" in tooltips(root)
    assert texts(root, "axis-label") == ["Shade: of images (white = 0, darkest = 0.5)"]
    assert [c.get("fill-opacity") for c in rects(root, "cell")] == ["0.500", "1.000"]
    root = parse(heatmap(["a"], ["a"], [[0]], title="t", value_label="images"))
    assert [c.get("fill-opacity") for c in rects(root, "cell")] == ["0.000"]
    assert texts(root, "axis-label") == ["Shade: images (white = 0, darkest = 0)"]


def test_heatmap_shape_must_match() -> None:
    with pytest.raises(ValueError, match="shape"):
        heatmap(["a", "b"], ["a"], [[1]], title="t", value_label="images")


def test_same_input_same_bytes() -> None:
    bars = [("a", 3.0), ("b", 1.5)]
    assert bar_chart(bars, title="t", x_label="images") == bar_chart(
        bars, title="t", x_label="images"
    )
    rows = [("a", {"x": 1.0})]
    first = stacked_bar_chart(rows, series=["x"], title="t", x_label="images")
    assert first == stacked_bar_chart(rows, series=["x"], title="t", x_label="images")
    assert heatmap(["a"], ["a"], [[1]], title="t", value_label="v") == heatmap(
        ["a"], ["a"], [[1]], title="t", value_label="v"
    )


def test_line_chart_draws_confidence_bars_inside_its_range() -> None:
    from app.web.line_chart import line_chart

    svg = str(
        line_chart(
            {"real": [(2.0, 0.8), (4.0, 0.9)], "synthetic": [(2.0, 0.6)]},
            title="AUC",
            x_label="images per class",
            y_label="AUC",
            intervals={"real": [(2.0, 0.7, 0.9), (4.0, 0.85, 0.95)], "absent": [(1.0, 0.0, 1.0)]},
        )
    )
    assert svg.count('class="ci series-0"') == 2 and "series-1" in svg
    assert 'class="ci series-1"' not in svg  # no bars given for "synthetic"
    assert "95% CI 0.7 to 0.9" in svg and "absent" not in svg
