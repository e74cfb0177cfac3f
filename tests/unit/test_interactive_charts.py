"""Interactive line charts' server side: the axis stays within a metric's natural range, the
JSON for static/js/charts.js carries the SVG's data, and no label can break out of it."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from app.evaluation.training_curves import classifier_curves, epoch_series
from app.models import Job
from app.web.line_chart import (
    NON_NEGATIVE,
    UNIT_INTERVAL,
    chart_spec,
    interactive_line_chart,
    line_chart,
)

NS = "{http://www.w3.org/2000/svg}"


def _y_ticks(svg: str) -> list[float]:
    root = ET.fromstring(svg)
    ticks = [
        t
        for t in root.iter(f"{NS}text")
        if "tick" in t.get("class", "").split() and t.get("text-anchor") == "end"
    ]
    return [float((t.text or "").replace(",", "")) for t in ticks]


def test_one_auc_value_gives_an_axis_from_0_to_1_not_minus_half_to_one_and_a_half() -> None:
    series = {"trained on real": [(8.0, 0.5)]}
    unclamped = _y_ticks(str(line_chart(series, title="AUC", x_label="n", y_label="AUC")))
    assert min(unclamped) == -0.5 and max(unclamped) == 1.5  # the reported bug
    ticks = _y_ticks(
        str(line_chart(series, title="AUC", x_label="n", y_label="AUC", y_bounds=UNIT_INTERVAL))
    )
    assert min(ticks) == 0 and max(ticks) == 1


def test_bounds_never_hide_data_outside_them() -> None:
    svg = line_chart(
        {"FID": [(1.0, -3.0), (2.0, 5.0)]},
        title="FID",
        x_label="kimg",
        y_label="FID",
        y_bounds=NON_NEGATIVE,
    )
    assert min(_y_ticks(str(svg))) <= -3


def test_chart_spec_drops_non_finite_points_and_keeps_intervals_of_known_series() -> None:
    spec = chart_spec(
        {"real": [(1.0, 0.8), (2.0, float("nan"))], "synthetic": [(1.0, 0.6)]},
        title="AUC",
        x_label="x",
        y_label="AUC",
        intervals={"real": [(1.0, 0.7, 0.9)], "absent": [(1.0, 0.0, 1.0)]},
        y_bounds=UNIT_INTERVAL,
        log_option=False,
    )
    assert spec["y_range"] == [0.0, 1.0] and spec["log_option"] is False
    real, synthetic = spec["series"]
    assert real["points"] == [[1.0, 0.8]] and real["intervals"] == [[1.0, 0.7, 0.9]]
    assert synthetic["intervals"] == [] and real["colour"] != synthetic["colour"]
    assert json.loads(json.dumps(spec)) == spec  # plain JSON, no NaN


def test_interactive_chart_embeds_svg_and_escaped_json() -> None:
    evil = '</script><script>alert("x")</script>'
    html = str(
        interactive_line_chart(
            "loss-chart",
            {evil: [(0.0, 2.0), (1.0, 1.0)]},
            title="Losses",
            x_label="kimg",
            y_label="loss",
            log_option=True,
            smoothing=True,
        )
    )
    assert html.startswith('<div class="ichart" id="loss-chart" data-chart="')
    assert "<script" not in html  # htmx would drop a script block from swapped markup
    root = ET.fromstring(html)  # well-formed: no label breaks out of the attribute
    spec = json.loads(root.get("data-chart", ""))
    assert root[0].tag == f"{NS}svg"
    assert spec["series"][0]["name"] == evil
    assert spec["log_option"] is True and spec["smoothing"] is True
    assert spec["series"][0]["points"] == [[0.0, 2.0], [1.0, 1.0]]


def test_epoch_series_keeps_the_last_record_of_a_repeated_epoch_and_skips_missing() -> None:
    records = [
        {"epoch": 1, "train_loss": 0.9, "val_macro_auc": None},
        {"epoch": 2, "train_loss": 0.7, "val_macro_auc": 0.6},
        {"epoch": 2, "train_loss": 0.65, "val_macro_auc": 0.62},  # resumed run redid epoch 2
    ]
    assert epoch_series(records, "train_loss") == [(1.0, 0.9), (2.0, 0.65)]
    assert epoch_series(records, "val_macro_auc") == [(2.0, 0.62)]


def test_classifier_curves_come_from_the_per_epoch_log(tmp_path: Path) -> None:
    records = [
        {"epoch": 1, "train_loss": 0.69, "val_macro_auc": 0.55, "seconds": 1.0},
        {"epoch": 2, "train_loss": 0.5, "val_macro_auc": 0.71, "seconds": 2.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    curves = classifier_curves(Job(type="train_classifier", artefact_dir=str(tmp_path)))
    loss, auc = str(curves["loss_chart"]), str(curves["auc_chart"])
    loss_spec = json.loads(ET.fromstring(loss).get("data-chart", ""))
    auc_spec = json.loads(ET.fromstring(auc).get("data-chart", ""))
    assert 'id="classifier-loss-chart"' in loss and loss_spec["log_option"] is True
    assert 'id="classifier-auc-chart"' in auc and auc_spec["y_range"] == [0.0, 1.0]
    assert auc_spec["series"][0]["points"] == [[1.0, 0.55], [2.0, 0.71]]
    empty = classifier_curves(Job(type="train_classifier", artefact_dir=str(tmp_path / "none")))
    assert empty == {"loss_chart": None, "auc_chart": None}
