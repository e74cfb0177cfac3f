"""Agreement between readers and paired tests between conditions: pure functions.

Split out of :mod:`app.domain.statistics`, which re-exports everything public here, so callers
keep importing from there. Like the rest of the statistics, kappas use first presentations only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from app.domain.checked_first import checked_first
from app.domain.ratings import CATEGORIES, Rating


@dataclass(frozen=True)
class PairedTest:
    statistic: float
    pvalue: float
    n: int
    method: str


def fleiss_kappa(ratings: Iterable[Rating]) -> float | None:
    """Fleiss' kappa over real/fake/uncertain, on the images every reader rated.

    When every answer falls in one category, chance agreement is 1 and Fleiss' formula is 0/0;
    observed agreement is then perfect, so we return 1.0. None with fewer than two readers or no
    image rated by all.
    """
    first = checked_first(ratings)
    if len(first.answers_by_reader) < 2:
        return None
    codes = first.answer_codes
    shared = codes[:, (codes >= 0).all(axis=0)]  # images in sorted order, as aggregate_raters'
    if not shared.size:
        return None
    table, _ = aggregate_raters(shared.T, n_cat=len(CATEGORIES))
    if np.count_nonzero(table.sum(axis=0)) == 1:
        return 1.0
    return float(sm_fleiss_kappa(table, method="fleiss"))


def _confusions(codes: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """confusion[p, k, l]: images reader pairs[p, 0] answered category k and pairs[p, 1]
    category l. One bincount for every pair at once (an image either reader did not rate
    drops out of the pair): exact integer counts, and no BLAS call, whose threads cost a web
    worker more than this whole computation on a busy machine."""
    n_c = len(CATEGORIES)
    a, b = codes[pairs[:, 0]], codes[pairs[:, 1]]
    both = (a >= 0) & (b >= 0)
    cell = (np.arange(len(pairs))[:, None] * n_c + a) * n_c + b
    counts = np.bincount(cell[both], minlength=len(pairs) * n_c * n_c)
    return counts.reshape(len(pairs), n_c, n_c).astype(float)


def _cohen_kappas(confusion: np.ndarray) -> np.ndarray:
    """sklearn.metrics.cohen_kappa_score's unweighted formula, step for step, on each pair's
    confusion matrix (rows: first reader); the same operations in the same order as on one
    matrix, so each kappa is the same float as one pair's computation."""
    sum0 = confusion.sum(axis=1)
    sum1 = confusion.sum(axis=2)
    total = sum0.sum(axis=1)
    disagree = 1.0 - np.eye(confusion.shape[1])
    n_pairs = len(confusion)
    observed = (disagree * confusion).reshape(n_pairs, -1).sum(axis=1)
    # A pair with no shared image, or one category only, divides by zero: its caller
    # reports None or 1.0 for it instead.
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = sum0[:, :, None] * sum1[:, None, :] / total[:, None, None]
        chance = (disagree * expected).reshape(n_pairs, -1).sum(axis=1)
        return 1 - observed / chance


def cohen_kappa_pairs(ratings: Iterable[Rating]) -> dict[tuple[str, str], float | None]:
    """Cohen's kappa for every reader pair (a < b) on the images both rated.

    Same convention as :func:`fleiss_kappa`: both readers giving one identical category to
    everything is perfect agreement (1.0). None when a pair shares no image.
    """
    first = checked_first(ratings)
    names = list(first.answers_by_reader)
    if len(names) < 2:
        return {}
    pairs = np.array(list(combinations(range(len(names)), 2)), dtype=np.intp)
    confusion = _confusions(first.answer_codes, pairs)
    used = np.count_nonzero(confusion.sum(axis=1) + confusion.sum(axis=2), axis=1)
    values = _cohen_kappas(confusion)
    kappas: dict[tuple[str, str], float | None] = {}
    for (a, b), n_used, value in zip(pairs.tolist(), used.tolist(), values.tolist(), strict=True):
        kappas[(names[a], names[b])] = None if n_used == 0 else 1.0 if n_used == 1 else value
    return kappas


def mcnemar_paired(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> PairedTest:
    """Exact McNemar test: is correctness different under condition A and condition B?

    Position i in both sequences must be the same unit (e.g. one reader on one matched case),
    so only units that changed between conditions carry information.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("correct_a and correct_b must be paired, equal-length sequences")
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    result = mcnemar(table, exact=True)
    return PairedTest(float(result.statistic), float(result.pvalue), len(a), "exact McNemar")


def cochran_q(correct: Sequence[Sequence[bool]]) -> PairedTest:
    """Cochran's Q: does correctness differ across three or more conditions?

    One row per unit (e.g. reader x matched case), one column per condition. When no unit's
    correctness varies across conditions Q is 0/0; there is no evidence of a difference, so we
    return Q = 0 and p = 1.
    """
    x = np.asarray(correct, dtype=int)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError("correct must be a units x conditions table with at least 2 columns")
    if not np.any(x.min(axis=1) != x.max(axis=1)):
        return PairedTest(0.0, 1.0, x.shape[0], "Cochran's Q")
    result = cochrans_q(x)
    return PairedTest(float(result.statistic), float(result.pvalue), x.shape[0], "Cochran's Q")
