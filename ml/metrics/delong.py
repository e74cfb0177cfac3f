"""DeLong's test for two correlated ROC AUCs measured on the same cases.

DeLong, DeLong & Clarke-Pearson 1988, "Comparing the areas under two or more correlated
receiver operating characteristic curves: a nonparametric approach": the AUC is the
Mann-Whitney statistic, a U-statistic, so its variance (and the covariance of two AUCs on the
same cases) follows from the *structural components*

    V10(X_i) = 1/n sum_j psi(X_i, Y_j)    for each positive X_i (m of them)
    V01(Y_j) = 1/m sum_i psi(X_i, Y_j)    for each negative Y_j (n of them)

with psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise, as Cov = S10 / m + S01 / n where
S10 and S01 are the sample covariance matrices (over the models) of V10 and V01.

Computing psi for every pair is O(m n). Sun & Xu 2014, "Fast implementation of DeLong's
algorithm for comparing the areas under correlated receiver operating characteristic curves",
get the same components from mid-ranks in O((m + n) log(m + n)): the number of negatives
below a positive (ties counting 1/2) is its mid-rank among all cases minus its mid-rank
among the positives. That is what is implemented here, in numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["DelongComparison", "delong_roc_variance", "delong_test"]

_RELATIVE_ZERO = 1e-12


@dataclass(frozen=True)
class DelongComparison:
    """Paired comparison of model A against model B on the same cases."""

    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    se: float  # standard error of the difference
    ci_low: float  # confidence interval of the difference
    ci_high: float
    z: float
    p_value: float  # two-sided
    n_positive: int
    n_negative: int

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain values for JSON: NaN (an undefined z / p / CI) becomes None."""
        return {
            key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in asdict(self).items()
        }


def _labels(y_true: ArrayLike) -> NDArray[np.bool_]:
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {y.shape}")
    if y.dtype == np.bool_:
        return y
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"y_true must hold 0 / 1 labels, got dtype {y.dtype}")
    binary = (y == 0) | (y == 1)  # NaN fails both comparisons
    if not binary.all():
        bad = np.unique(y[~binary])[:5]
        raise ValueError(f"y_true must hold only 0 and 1, found {bad.tolist()}")
    return y == 1


def _scores(scores: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {s.shape}")
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} values but y_true has {n}")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return s


def _check_classes(positive: NDArray[np.bool_]) -> tuple[int, int]:
    m = int(positive.sum())
    n = int(positive.size - m)
    if m == 0 or n == 0:
        absent = "positive" if m == 0 else "negative"
        raise ValueError(f"y_true has no {absent} cases: the AUC is undefined")
    if m < 2 or n < 2:
        # The sample covariance of the structural components divides by m - 1 and n - 1.
        raise ValueError(
            f"DeLong's variance needs at least 2 positive and 2 negative cases, "
            f"got {m} positive and {n} negative"
        )
    return m, n


def _components(
    positive: NDArray[np.bool_], scores: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """AUCs (k,), V10 (k, m) and V01 (k, n) for the k score rows, by Sun & Xu's mid-ranks."""
    # scipy loads on the first comparison, not with the dashboard module that imports this one.
    from scipy.stats import rankdata

    x = scores[:, positive]  # (k, m)
    y = scores[:, ~positive]  # (k, n)
    m, n = x.shape[1], y.shape[1]
    # rankdata's "average" method gives mid-ranks: tied cases share the mean of their ranks,
    # which is exactly psi's 1/2 for a tie.
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    v10 = (tz[:, :m] - tx) / n  # negatives below each positive, ties 1/2
    v01 = 1.0 - (tz[:, m:] - ty) / m  # positives above each negative, ties 1/2
    auc = v10.mean(axis=1)
    return auc, v10, v01


def _covariance(v10: NDArray[np.float64], v01: NDArray[np.float64]) -> NDArray[np.float64]:
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return s10 / m + s01 / n


def delong_roc_variance(y_true: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """(AUC, DeLong variance of the AUC) of one model; higher scores mean positive."""
    positive = _labels(y_true)
    s = _scores(scores, positive.size, "scores")
    _check_classes(positive)
    auc, v10, v01 = _components(positive, s[None, :])
    return float(auc[0]), float(_covariance(v10, v01)[0, 0])


def delong_test(
    y_true: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    confidence: float = 0.95,
) -> DelongComparison:
    """Paired DeLong test of AUC(A) == AUC(B), with a Wald confidence interval of the
    difference.

    When the estimated variance of the difference is 0 (both models rank every case the same
    way relative to the other class, e.g. both perfect) the normal approximation says
    nothing: with a zero difference the result is p = 1 and CI (0, 0); with a non-zero
    difference z would be infinite, but a zero *estimated* variance is an artefact of a
    small or degenerate sample rather than certainty, so z, p and the CI are NaN (None in
    `to_dict`) instead of claiming p = 0.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    positive = _labels(y_true)
    a = _scores(scores_a, positive.size, "scores_a")
    b = _scores(scores_b, positive.size, "scores_b")
    m, n = _check_classes(positive)
    auc, v10, v01 = _components(positive, np.stack([a, b]))
    cov = _covariance(v10, v01)
    difference = float(auc[0] - auc[1])
    # Var(A - B) = Var A + Var B - 2 Cov(A, B). When it should be 0, rounding leaves a
    # value of either sign near machine epsilon times the terms; that is read as 0.
    total = float(cov[0, 0] + cov[1, 1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if variance <= _RELATIVE_ZERO * total:
        variance = 0.0
    se = math.sqrt(variance)
    if se > 0.0:
        from scipy.stats import norm

        z = difference / se
        p_value = float(2.0 * norm.sf(abs(z)))
        half = float(norm.ppf(0.5 + confidence / 2.0)) * se
        ci_low, ci_high = difference - half, difference + half
    elif abs(difference) <= _RELATIVE_ZERO:
        z, p_value, ci_low, ci_high = 0.0, 1.0, 0.0, 0.0
    else:
        z = p_value = ci_low = ci_high = math.nan
    return DelongComparison(
        auc_a=float(auc[0]),
        auc_b=float(auc[1]),
        difference=difference,
        se=se,
        ci_low=ci_low,
        ci_high=ci_high,
        z=z,
        p_value=p_value,
        n_positive=m,
        n_negative=n,
    )
