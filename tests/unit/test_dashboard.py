"""Benchmark dashboard helpers: AUC intervals from saved predictions, the samples-per-class
axis of nested subsets, and the per-axis series (no database)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app.evaluation.dashboard import (
    AucEstimate,
    BenchmarkPoint,
    _samples_per_class,
    auc_interval,
    axis_series,
)
from app.models import Dataset
from ml.metrics.delong import delong_roc_variance


def _save(folder: Path, y: np.ndarray, scores: np.ndarray) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    keys = np.asarray([f"k{i}" for i in range(len(y))])
    np.savez(folder / "predictions.npz", y_true=y, scores=scores, keys=keys)
    return str(folder)


def test_auc_interval_is_delongs_for_one_label_and_none_for_several(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 40).astype(float)
    score = y + rng.normal(0, 0.8, 40)
    auc, variance = delong_roc_variance(y.astype(int), score)
    low, high = auc_interval(_save(tmp_path / "one", y[:, None], score[:, None]))
    assert low == pytest.approx(auc - 1.959964 * variance**0.5, abs=1e-6)
    assert high == pytest.approx(min(1.0, auc + 1.959964 * variance**0.5), abs=1e-6)
    # Two one-vs-rest classes mirror each other: the first carries the comparison.
    both = np.stack([y, 1 - y], axis=1)
    mirrored = auc_interval(_save(tmp_path / "two", both, np.stack([score, -score], axis=1)))
    assert mirrored == pytest.approx((low, high))
    three = np.stack([y, 1 - y, y], axis=1)
    assert auc_interval(_save(tmp_path / "three", three, np.stack([score] * 3, axis=1))) is None
    tiny = np.asarray([[0.0], [1.0], [1.0]])  # one negative: DeLong is undefined
    assert auc_interval(_save(tmp_path / "tiny", tiny, tiny)) is None
    assert auc_interval(str(tmp_path / "missing")) is None


def test_samples_per_class_comes_from_the_nearest_cut_up_the_chain() -> None:
    root = Dataset(id=1, name="root", options={"format": "folder"}, parent_id=None)
    classes = Dataset(id=2, name="k2", options={"kind": "classes", "value": 2}, parent_id=1)
    cut = Dataset(id=3, name="s4", options={"kind": "samples_per_class", "value": 4}, parent_id=2)
    by_id = {d.id: d for d in (root, classes, cut)}
    assert _samples_per_class(root, by_id) is None
    assert _samples_per_class(classes, by_id) is None
    assert _samples_per_class(cut, by_id) == 4


def test_axis_series_orders_points_and_keeps_bars_where_defined() -> None:
    data = Dataset(id=1, name="d", options={}, info={"label_names": ["a", "b"]})
    points = [
        BenchmarkPoint(data, 32, 2, 8, auc={"real": AucEstimate(1, 0.9, 0.8, 0.95)}),
        BenchmarkPoint(data, 32, 2, None, train_per_class=50.0, auc={
            "real": AucEstimate(2, 0.95), "synthetic": AucEstimate(3, 0.7, 0.6, 0.8)
        }),
        BenchmarkPoint(data, 32, 2, 2, auc={"real": AucEstimate(4, None)}),
    ]  # fmt: skip
    series, bars = axis_series(points, "samples_per_class")
    assert series["trained on real"] == [(8.0, 0.9), (50.0, 0.95)]
    assert bars["trained on real"] == [(8.0, 0.8, 0.95)]
    assert series["trained on synthetic"] == [(50.0, 0.7)]
    assert "trained on mixed" not in series
