"""Every FID on the pages carries its convention, its bootstrap interval and, below n = d, the
small-n flag; results stored before those existed still render."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
import pytest

from app.evaluation.dashboard import BenchmarkPoint, _add
from app.evaluation.views import FIDELITY_METRICS
from app.models import Dataset, Job
from app.web.templating import templates
from ml.metrics.fid import compare


@pytest.fixture(scope="module")
def stored() -> dict[str, Any]:
    """A fidelity result as the worker stores it, on scikit-learn digits (64 pixel features):
    40 images of 0 as 'real', 40 of 6 as 'synthetic', fewer images than dimensions."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    zeros, sixes = digits.data[digits.target == 0], digits.data[digits.target == 6]
    report = compare(zeros[:40], sixes[:40], zeros[40:80], kid_subsets=5, fid_resamples=30)
    assert report.floor is not None
    return {
        "features": "inception",
        "extractor": "digit_pixels",
        "resolution": 8,
        "fid_convention": "Frechet distance in digit_pixels features, not Inception",
        "fid_resamples": 30,
        "synthetic_vs_train": asdict(report.fake_vs_train),
        "synthetic_matched_vs_train": asdict(report.fake_vs_train),
        "floor_test_vs_train": asdict(report.floor),
    }


def _table(result: dict[str, Any]) -> str:
    macros = templates.env.get_template("evaluation/macros.html").module
    return str(macros.fidelity_table(result, FIDELITY_METRICS))  # type: ignore[attr-defined]


def test_fidelity_table_shows_convention_interval_and_small_n_flag(stored: dict) -> None:
    html = _table(stored)
    scores = stored["synthetic_vs_train"]
    low, high = scores["fid_interval"]
    assert f"[{low:.4g}, {high:.4g}]" in html
    assert html.count("n 40 &lt; d 64: read KID") == 3  # synthetic, matched and floor rows
    assert "FID convention: Frechet distance in digit_pixels features" in html
    assert "interval of the biased estimator" in html and "30 resamples" in html
    assert f"<strong>{scores['kid_mean']:.4g}</strong>" in html  # KID stressed where n < d


def test_results_stored_before_intervals_still_render(stored: dict) -> None:
    keys = ("dim", "fid_small_n", "fid_interval", "fid_level")
    old = {k: v for k, v in stored.items() if k not in ("fid_convention", "fid_resamples")}
    for row in ("synthetic_vs_train", "synthetic_matched_vs_train", "floor_test_vs_train"):
        old[row] = {k: v for k, v in stored[row].items() if k not in keys}
    html = _table(old)
    assert "FID convention: not recorded" in html
    assert "read KID" not in html and "fid-interval" not in html


def test_dashboard_point_carries_interval_flag_and_convention(stored: dict) -> None:
    point = BenchmarkPoint(Dataset(name="digits"), 8, 10, None)
    _add(point, Job(id=7, type="evaluate_fidelity", result=stored))
    assert point.fid is not None
    assert point.fid["interval"] == stored["synthetic_vs_train"]["fid_interval"]
    assert point.fid["small_n"] is True and point.fid["n"] == 40 and point.fid["dim"] == 64
    assert point.fid["convention"] == stored["fid_convention"]
    assert point.fid["kid"] == stored["synthetic_vs_train"]["kid_mean"]
    assert np.isfinite(point.fid["floor"])


def test_dashboard_row_shows_interval_flag_kid_and_convention(stored: dict) -> None:
    point = BenchmarkPoint(Dataset(id=1, name="digits"), 8, 10, None, train_per_class=4.0)
    _add(point, Job(id=7, type="evaluate_fidelity", result=stored))
    page = templates.env.get_template("evaluation/dashboard.html")
    html = page.render(dataset=point.dataset, points=[point], charts=[])
    low, high = stored["synthetic_vs_train"]["fid_interval"]
    assert f"[{low:.4g}, {high:.4g}]" in html and "n 40 &lt; d 64: read KID" in html
    assert f"KID {stored['synthetic_vs_train']['kid_mean']:.3g}" in html
    assert 'title="Frechet distance in digit_pixels features' in html
