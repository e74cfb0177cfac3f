"""How many answers a reader study needs: power of its exact binomial tests by enumeration.

Power is summed exactly over every possible number of correct answers k = 0..n, using the same
p-value functions the analysis uses, so planner and analysis cannot disagree. Exact binomial
power is saw-toothed in n: one more answer can lower it slightly, which is why the planner scans
n upwards instead of bisecting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.stats import binom
from statsmodels.stats.proportion import binom_test, binom_tost

PlannedTest = Literal["equivalence", "superiority"]


@dataclass(frozen=True)
class SampleSizePlan:
    test: PlannedTest
    n_independent: int  # answers needed if every answer were independent
    n_answers: int  # after inflating by the design effect
    readers: int
    images_per_reader: int
    power: float  # achieved at n_independent
    design_effect: float


def _check(n: int, true_accuracy: float, alpha: float) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= true_accuracy <= 1:
        raise ValueError(f"true_accuracy must lie in [0, 1], got {true_accuracy}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _power(n: int, true_accuracy: float, reject: np.ndarray) -> float:
    ks = np.flatnonzero(reject)
    return float(binom.pmf(ks, n, true_accuracy).sum())


def binomial_power(n: int, true_accuracy: float, alpha: float = 0.05) -> float:
    """Power of the exact one-sided binomial test of accuracy > 0.5 with n answers."""
    _check(n, true_accuracy, alpha)
    if n == 0:
        return 0.0
    ks = np.arange(n + 1)
    # Identical to scipy.stats.binomtest(k, n, 0.5, alternative="greater").pvalue, vectorised.
    pvalues = binom_test(ks, n, prop=0.5, alternative="larger")
    return _power(n, true_accuracy, pvalues <= alpha)


def tost_power(n: int, true_accuracy: float, margin: float, alpha: float = 0.05) -> float:
    """Power of binom_tost(k, n, 0.5 - margin, 0.5 + margin) at level alpha to declare
    equivalence ("readers cannot tell") when the true accuracy is ``true_accuracy``."""
    _check(n, true_accuracy, alpha)
    if not 0 < margin < 0.5:
        raise ValueError(f"margin must lie in (0, 0.5), got {margin}")
    if n == 0:
        return 0.0
    ks = np.arange(n + 1)
    pvalues = binom_tost(ks, n, 0.5 - margin, 0.5 + margin)[0]
    return _power(n, true_accuracy, pvalues <= alpha)


def plan_sample_size(
    true_accuracy: float,
    margin: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    readers: int = 1,
    design_effect: float = 1.0,
    test: PlannedTest = "equivalence",
    max_n: int = 20_000,
) -> SampleSizePlan:
    """Smallest total number of answers n whose test reaches ``power``.

    ``test="equivalence"`` plans the TOST with bounds 0.5 +/- margin (true_accuracy must lie
    strictly inside them); ``"superiority"`` plans the one-sided binomial test against 0.5 and
    ignores ``margin``.

    The calculation treats the pooled answers as independent. Answers from one reader are
    correlated, so pass ``design_effect`` = 1 + (m - 1) * ICC (m answers per reader, ICC the
    within-reader correlation of correctness) to inflate n into ``n_answers``; with one reader
    per answer set, or no clustering, it is 1. ``images_per_reader`` = ceil(n_answers / readers)
    assumes each reader rates the same number of images.
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    if readers < 1:
        raise ValueError(f"readers must be >= 1, got {readers}")
    if design_effect < 1:
        raise ValueError(f"design_effect must be >= 1, got {design_effect}")
    if test == "equivalence":
        if not 0 < margin < 0.5 or not abs(true_accuracy - 0.5) < margin:
            raise ValueError(
                "true_accuracy must lie strictly inside 0.5 +/- margin, 0 < margin < 0.5"
            )
    elif test == "superiority":
        if not 0.5 < true_accuracy <= 1:
            raise ValueError("superiority needs true_accuracy above 0.5")
    else:
        raise ValueError(f"test must be 'equivalence' or 'superiority', got {test!r}")

    for n in range(1, max_n + 1):
        if test == "equivalence":
            achieved = tost_power(n, true_accuracy, margin, alpha)
        else:
            achieved = binomial_power(n, true_accuracy, alpha)
        if achieved >= power:
            n_answers = math.ceil(n * design_effect)
            return SampleSizePlan(
                test=test,
                n_independent=n,
                n_answers=n_answers,
                readers=readers,
                images_per_reader=math.ceil(n_answers / readers),
                power=achieved,
                design_effect=design_effect,
            )
    raise ValueError(f"power {power} is not reached with up to {max_n} answers")
