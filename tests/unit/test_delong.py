"""DeLong's paired AUC test: the fast mid-rank algorithm against the O(m n) definition."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ml.metrics.delong import DelongComparison, delong_roc_variance, delong_test

# Hand-built, with ties inside each class, across the classes and between the two models.
Y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
A = np.array([0.9, 0.8, 0.8, 0.6, 0.4, 0.8, 0.5, 0.4, 0.3, 0.3, 0.1])
B = np.array([0.7, 0.7, 0.5, 0.5, 0.2, 0.6, 0.5, 0.5, 0.2, 0.1, 0.1])


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _reference(y: np.ndarray, scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance straight from DeLong et al. 1988: placement values psi over
    every (positive, negative) pair, structural components V10 / V01, S10 / m + S01 / n."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    m, n = pos.size, neg.size
    v10 = np.array([[np.mean([_psi(s[i], s[j]) for j in neg]) for i in pos] for s in scores])
    v01 = np.array([[np.mean([_psi(s[i], s[j]) for i in pos]) for j in neg] for s in scores])
    auc = v10.mean(axis=1)
    k = len(scores)
    s10 = np.array(
        [
            [np.sum((v10[r] - auc[r]) * (v10[c] - auc[c])) / (m - 1) for c in range(k)]
            for r in range(k)
        ]
    )
    s01 = np.array(
        [
            [np.sum((v01[r] - auc[r]) * (v01[c] - auc[c])) / (n - 1) for c in range(k)]
            for r in range(k)
        ]
    )
    return auc, s10 / m + s01 / n


def test_matches_the_explicit_definition_with_ties() -> None:
    auc, cov = _reference(Y, [A, B])
    result = delong_test(Y, A, B)
    assert result.auc_a == pytest.approx(auc[0], abs=1e-12)
    assert result.auc_b == pytest.approx(auc[1], abs=1e-12)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert result.se == pytest.approx(se, rel=1e-10)
    z = (auc[0] - auc[1]) / se
    assert result.z == pytest.approx(z, rel=1e-10)
    assert result.ci_low == pytest.approx(auc[0] - auc[1] - 1.959963984540054 * se, rel=1e-9)
    assert result.ci_high == pytest.approx(auc[0] - auc[1] + 1.959963984540054 * se, rel=1e-9)
    assert (result.n_positive, result.n_negative) == (5, 6)
    single = delong_roc_variance(Y, A)
    assert single[0] == pytest.approx(auc[0], abs=1e-12)
    assert single[1] == pytest.approx(cov[0, 0], rel=1e-10)


def test_auc_equals_sklearn() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    a = np.round(rng.normal(size=200) + y, 1)  # rounded: plenty of ties
    b = rng.normal(size=200) + 0.5 * y
    result = delong_test(y, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert delong_roc_variance(y.astype(bool), a)[0] == pytest.approx(roc_auc_score(y, a))


def test_identical_scores_give_p_one() -> None:
    result = delong_test(Y, A, A.copy())
    assert result.difference == 0.0 and result.se == 0.0
    assert result.p_value == 1.0 and result.z == 0.0
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)


def test_clearly_better_model_is_significant() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([1, 0], 60)
    good = y + rng.normal(0.0, 0.5, y.size)
    poor = y + rng.normal(0.0, 3.0, y.size)
    result = delong_test(y, good, poor)
    assert result.difference > 0.15
    assert result.p_value < 0.05
    assert result.ci_low > 0.0 and result.ci_high > result.ci_low
    reverse = delong_test(y, poor, good)
    assert reverse.p_value == pytest.approx(result.p_value)
    assert reverse.ci_high < 0.0


def test_zero_variance_with_a_difference_is_undefined_and_json_safe() -> None:
    y = np.array([1, 1, 1, 0, 0, 0])
    perfect = np.array([3.0, 2.0, 4.0, 1.0, 0.0, -1.0])
    constant = np.zeros(6)  # every pair tied: AUC 1/2, with no spread in V10 / V01 either
    result = delong_test(y, perfect, constant)
    assert result.difference == 0.5 and result.se == 0.0
    assert math.isnan(result.p_value) and math.isnan(result.ci_low)
    data = result.to_dict()
    assert data["p_value"] is None and data["z"] is None and data["auc_a"] == 1.0
    json.dumps(data, allow_nan=False)
    both_perfect = delong_test(y, perfect, perfect * 2.0)
    assert both_perfect.p_value == 1.0 and isinstance(both_perfect, DelongComparison)


@pytest.mark.parametrize(
    ("y", "a", "b", "message"),
    [
        ([0, 1, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4], "only 0 and 1"),
        ([0, 1, np.nan, 1], [1, 2, 3, 4], [1, 2, 3, 4], "only 0 and 1"),
        (["0", "1", "1", "0"], [1, 2, 3, 4], [1, 2, 3, 4], "0 / 1 labels"),
        ([0, 1, 1, 0], [1, 2, 3], [1, 2, 3, 4], "scores_a has 3 values but y_true has 4"),
        ([0, 1, 1, 0], [1, 2, 3, 4], [1, 2, 3, 4, 5], "scores_b has 5 values"),
        ([1, 1, 1, 1], [1, 2, 3, 4], [1, 2, 3, 4], "no negative cases"),
        ([0, 0, 0, 0], [1, 2, 3, 4], [1, 2, 3, 4], "no positive cases"),
        ([0, 1, 0, 0], [1, 2, 3, 4], [1, 2, 3, 4], "at least 2 positive and 2 negative"),
        ([0, 1, 1, 0], [1, np.nan, 3, 4], [1, 2, 3, 4], "NaN"),
    ],
)
def test_errors(y: list, a: list, b: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        delong_test(np.asarray(y), a, b)


def test_bad_confidence() -> None:
    with pytest.raises(ValueError, match="confidence"):
        delong_test(Y, A, B, confidence=1.0)
