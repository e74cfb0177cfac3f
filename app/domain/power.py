"""How many answers a reader study needs: power of its exact binomial tests by enumeration.

Power is summed exactly over every possible number of correct answers k = 0..n, using the same
p-value functions the analysis uses, so planner and analysis cannot disagree. Exact binomial
power is saw-toothed in n: one more answer can lower it slightly, which is why the planner scans
n upwards instead of bisecting.

:func:`plan_study` plans what the results page analyses: a TOST per reader (so every reader
needs enough decisive answers of their own) and the pooled question over readers and images,
whose answers are correlated within reader and within image (a design effect).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from scipy.stats import binom
from statsmodels.stats.proportion import binom_test, binom_tost

PlannedTest = Literal["equivalence", "superiority"]
Alternative = Literal["two-sided", "greater"]

# Stated assumptions when a study has no answers to estimate correlation from: modest
# clustering of correctness within readers and within images.
ASSUMED_ICC_READER = 0.05
ASSUMED_ICC_IMAGE = 0.05


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


def _binomial_pvalues(n: int, alternative: Alternative) -> np.ndarray:
    ks = np.arange(n + 1)
    if alternative == "greater":
        # Identical to scipy.stats.binomtest(k, n, 0.5, alternative="greater"), vectorised.
        return binom_test(ks, n, prop=0.5, alternative="larger")
    # At p = 0.5 the distribution is symmetric, so binomtest's two-sided p (outcomes no more
    # likely than k) is twice the smaller tail.
    return np.minimum(1.0, 2 * binom.cdf(np.minimum(ks, n - ks), n, 0.5))


def binomial_power(
    n: int, true_accuracy: float, alpha: float = 0.05, alternative: Alternative = "two-sided"
) -> float:
    """Power of the exact binomial test of accuracy = 0.5 with n answers (two-sided, or the
    one-sided "greater" a study pre-registered)."""
    _check(n, true_accuracy, alpha)
    if n == 0:
        return 0.0
    return _power(n, true_accuracy, _binomial_pvalues(n, alternative) <= alpha)


# Pure and called with a few repeated arguments by every results page (plan_study): cached.
@lru_cache(maxsize=4096)
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


@lru_cache(maxsize=256)  # scans n upwards: a tenth of a second, the same for every page
def plan_sample_size(
    true_accuracy: float,
    margin: float,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    readers: int = 1,
    design_effect: float = 1.0,
    test: PlannedTest = "equivalence",
    alternative: Alternative = "two-sided",
    max_n: int = 20_000,
) -> SampleSizePlan:
    """Smallest total number of answers n whose test reaches ``power``.

    ``test="equivalence"`` plans the TOST with bounds 0.5 +/- margin (true_accuracy must lie
    strictly inside them); ``"superiority"`` plans the binomial test against 0.5 (two-sided, or
    ``alternative="greater"`` where pre-registered) and ignores ``margin``.

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
            achieved = binomial_power(n, true_accuracy, alpha, alternative)
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


@dataclass(frozen=True)
class ReaderPower:
    reader: str
    n_decisive: int
    power: float  # of this reader's own TOST at accuracy 0.5, with the answers they gave


@dataclass(frozen=True)
class StudyPlan:
    """The plan for what the results page analyses, at true accuracy 0.5 ("cannot tell")."""

    margin: float
    power: float
    alpha: float
    per_reader_needed: int  # decisive answers each reader needs for their own TOST
    readers: tuple[ReaderPower, ...]
    pooled_n_independent: int  # answers for one pooled TOST if all were independent
    icc_reader: float
    icc_image: float
    icc_estimated: bool  # False: the stated ASSUMED_* values
    n_readers: int
    images_per_reader_needed: int | None  # for the pooled question; None: unreachable
    design_effect: float | None  # at that number of images per reader
    pooled_problem: str | None

    @property
    def per_reader_enough(self) -> bool:
        return bool(self.readers) and all(r.power >= self.power for r in self.readers)

    @property
    def pooled_enough(self) -> bool:
        need = self.images_per_reader_needed
        return (
            need is not None
            and bool(self.readers)
            and all(r.n_decisive >= need for r in self.readers)
        )


def crossed_design_effect(m: int, readers: int, icc_reader: float, icc_image: float) -> float:
    """Variance of a pooled proportion over ``readers`` x ``m`` images, every reader reading
    every image, relative to readers * m independent answers: 1 + (m-1) ICC_r + (R-1) ICC_i."""
    return 1 + (m - 1) * icc_reader + (readers - 1) * icc_image


def plan_study(
    margin: float,
    decisive_per_reader: Sequence[tuple[str, int]],
    *,
    icc_reader: float | None = None,
    icc_image: float | None = None,
    power: float = 0.8,
    alpha: float = 0.05,
) -> StudyPlan:
    """Plan both analyses for a study whose readers gave ``decisive_per_reader`` answers.

    Per reader: the exact TOST power each reader's own test has, and the decisive answers each
    needs. Pooled: the smallest m images per reader with R * m / design_effect(m) reaching the
    pooled TOST's independent n; with a reader ICC above zero that stops being possible once
    n * ICC_r >= R, whatever m (more readers are needed, not more images). ICCs not estimated
    from data default to the stated ASSUMED_ICC_* values.
    """
    estimated = icc_reader is not None and icc_image is not None
    rho_r = icc_reader if icc_reader is not None else ASSUMED_ICC_READER
    rho_i = icc_image if icc_image is not None else ASSUMED_ICC_IMAGE
    if not (0 <= rho_r <= 1 and 0 <= rho_i <= 1):
        raise ValueError("ICCs must lie in [0, 1]")
    single = plan_sample_size(0.5, margin, power=power, alpha=alpha)
    needed = single.n_independent
    readers = tuple(
        ReaderPower(name, n, tost_power(n, 0.5, margin, alpha)) for name, n in decisive_per_reader
    )
    n_readers = max(1, len(readers))
    # R m >= n (1 + (m - 1) rho_r + (R - 1) rho_i)  <=>  m (R - n rho_r) >= n (1 - rho_r +
    # (R - 1) rho_i): the left side only grows with m while R > n rho_r.
    capacity = n_readers - needed * rho_r
    images: int | None
    if capacity <= 0:
        images, design_effect = None, None
        problem = (
            f"with a reader ICC of {rho_r:.3f}, {n_readers} reader(s) cannot reach "
            f"{needed} independent answers however many images each reads; more than "
            f"{math.floor(needed * rho_r)} readers are needed"
        )
    else:
        images = max(1, math.ceil(needed * (1 - rho_r + (n_readers - 1) * rho_i) / capacity))
        design_effect = crossed_design_effect(images, n_readers, rho_r, rho_i)
        problem = None
    return StudyPlan(
        margin=margin,
        power=power,
        alpha=alpha,
        per_reader_needed=needed,
        readers=readers,
        pooled_n_independent=needed,
        icc_reader=rho_r,
        icc_image=rho_i,
        icc_estimated=estimated,
        n_readers=n_readers,
        images_per_reader_needed=images,
        design_effect=design_effect,
        pooled_problem=problem,
    )
