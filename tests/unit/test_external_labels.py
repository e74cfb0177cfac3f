"""External validation's pure parts: label names matched by name (any order, same set, else a
clear refusal), the option parsed from a form or the CLI, and the per-label 95% DeLong
interval, checked on real scores (scikit-learn digits, 3 against 8)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.evaluation.options import external_datasets, external_label_order
from app.jobs.specs import SpecError
from ml.metrics.auc_ci import label_auc_intervals
from ml.metrics.delong import delong_roc_variance


def test_labels_in_another_order_map_by_name() -> None:
    assert external_label_order(["normal", "pneumonia"], ["normal", "pneumonia"]) == [0, 1]
    assert external_label_order(["normal", "pneumonia"], ["pneumonia", "normal"]) == [1, 0]
    order = external_label_order(["a", "b", "c"], ["c", "a", "b"])
    assert [["c", "a", "b"][i] for i in order] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("external", "says"),
    [
        (["three", "five"], "it lacks 'eight'; it has 'five' besides"),
        (["three"], "it lacks 'eight'"),
        (["three", "eight", "nine"], "it has 'nine' besides"),
        (["three", "eight", "eight"], "it repeats a label name"),
        ([], "it lacks 'three', 'eight'"),
    ],
)
def test_other_label_names_are_refused_with_what_differs(external: list[str], says: str) -> None:
    with pytest.raises(SpecError) as caught:
        external_label_order(["three", "eight"], external, "Hospital C")
    assert caught.value.field == "external_dataset_id"
    message = caught.value.message
    assert message.startswith("Hospital C cannot validate this classifier")
    assert "the training dataset's (three, eight)" in message and says in message


def test_external_dataset_option_from_form_or_cli() -> None:
    assert external_datasets({}) == []
    assert external_datasets({"external_dataset_id": ""}) == []
    assert external_datasets({"external_dataset_id": " 9, 4,9 "}) == [4, 9]
    assert external_datasets({"external_dataset_id": ["7", "3"]}) == [3, 7]
    for bad in ("x", "0", "-2", "3,²", str(2**31)):
        with pytest.raises(SpecError, match="External datasets: ids"):
            external_datasets({"external_dataset_id": bad})


def _digit_scores() -> tuple[np.ndarray, np.ndarray]:
    """3 (negative) vs 8 (positive) scored by the ink in the centre column pair, where an 8
    crosses and a 3 leaves a gap on the left: a real, imperfect score."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.isin(digits.target, (3, 8))
    images, target = digits.images[keep], digits.target[keep]
    score = images[:, 2:6, 1:3].sum(axis=(1, 2))
    return (target == 8).astype(float), score.astype(float)


def test_interval_is_auc_plus_minus_1_96_delong_se_per_label() -> None:
    y, score = _digit_scores()
    auc, variance = delong_roc_variance(y.astype(int), score)
    assert 0.6 < auc < 0.99  # a real score, neither chance nor perfect
    y_two = np.stack([y, 1 - y], axis=1)
    scores_two = np.stack([score, -score], axis=1)
    intervals = label_auc_intervals(y_two, scores_two, ["eight", "three"])
    half = 1.959963984540054 * math.sqrt(variance)
    for name in ("eight", "three"):  # the mirror label has the same AUC and interval
        low, high = intervals[name] or (math.nan, math.nan)
        assert low == pytest.approx(auc - half, abs=1e-6)
        assert high == pytest.approx(auc + half, abs=1e-6)


def test_unknown_cases_are_left_out_and_one_class_gives_no_interval() -> None:
    y, score = _digit_scores()
    with_unknown = y.copy()
    with_unknown[:20] = np.nan
    only_one_class = np.ones_like(y)
    intervals = label_auc_intervals(
        np.stack([with_unknown, only_one_class], axis=1),
        np.stack([score, score], axis=1),
        ["eight", "always"],
    )
    auc, variance = delong_roc_variance(y[20:].astype(int), score[20:])
    low, high = intervals["eight"] or (math.nan, math.nan)
    assert low < auc < high
    assert high - low == pytest.approx(2 * 1.959963984540054 * math.sqrt(variance), abs=1e-5)
    assert intervals["always"] is None
