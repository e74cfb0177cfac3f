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
from app.domain.ratings import CATEGORIES, Answer, Rating


@dataclass(frozen=True)
class PairedTest:
    statistic: float
    pvalue: float
    n: int
    method: str


def _answers_by_reader(ratings: Iterable[Rating]) -> dict[str, dict[str, Answer]]:
    return checked_first(ratings).answers_by_reader


def fleiss_kappa(ratings: Iterable[Rating]) -> float | None:
    """Fleiss' kappa over real/fake/uncertain, on the images every reader rated.

    When every answer falls in one category, chance agreement is 1 and Fleiss' formula is 0/0;
    observed agreement is then perfect, so we return 1.0. None with fewer than two readers or no
    image rated by all.
    """
    answers = _answers_by_reader(ratings)
    if len(answers) < 2:
        return None
    shared = sorted(set.intersection(*(set(a) for a in answers.values())))
    if not shared:
        return None
    categories = CATEGORIES
    codes = np.array([[categories.index(a[image]) for a in answers.values()] for image in shared])
    table, _ = aggregate_raters(codes, n_cat=len(categories))
    if np.count_nonzero(table.sum(axis=0)) == 1:
        return 1.0
    return float(sm_fleiss_kappa(table, method="fleiss"))


def _confusions(answers: dict[str, dict[str, Answer]]) -> np.ndarray:
    """confusion[a, b, k, l]: images reader a answered category k and reader b category l.

    One matrix product for every pair at once: answers one-hot over (image, category), an
    image a reader did not rate all zero, so it drops out of that reader's pairs.
    """
    images = {image: k for k, image in enumerate(sorted(set().union(*answers.values())))}
    codes = {category: k for k, category in enumerate(CATEGORIES)}
    n_r, n_c = len(answers), len(CATEGORIES)
    onehot = np.zeros((n_r, n_c, len(images)))
    for j, by_image in enumerate(answers.values()):
        cols = np.fromiter((images[i] for i in by_image), dtype=np.intp, count=len(by_image))
        rows = np.fromiter((codes[a] for a in by_image.values()), np.intp, len(by_image))
        onehot[j, rows, cols] = 1.0
    flat = onehot.reshape(n_r * n_c, -1)
    # Counts of 0/1 products are exact in float64 (far below 2**53).
    return (flat @ flat.T).reshape(n_r, n_c, n_r, n_c).transpose(0, 2, 1, 3)


def _cohen_kappa(confusion: np.ndarray) -> float:
    # sklearn.metrics.cohen_kappa_score's unweighted formula, step for step, on one pair's
    # confusion matrix (rows: first reader).
    sum0 = confusion.sum(axis=0)
    sum1 = confusion.sum(axis=1)
    expected = np.outer(sum0, sum1) / np.sum(sum0)
    disagree = 1.0 - np.eye(len(confusion))
    return float(1 - np.sum(disagree * confusion) / np.sum(disagree * expected))


def cohen_kappa_pairs(ratings: Iterable[Rating]) -> dict[tuple[str, str], float | None]:
    """Cohen's kappa for every reader pair (a < b) on the images both rated.

    Same convention as :func:`fleiss_kappa`: both readers giving one identical category to
    everything is perfect agreement (1.0). None when a pair shares no image.
    """
    answers = _answers_by_reader(ratings)
    if len(answers) < 2:
        return {}
    confusion = _confusions(answers)
    names = list(answers)
    kappas: dict[tuple[str, str], float | None] = {}
    for a, b in combinations(range(len(names)), 2):
        pair = confusion[a, b]
        used = np.count_nonzero(pair.sum(axis=0) + pair.sum(axis=1))
        if used == 0:
            kappas[(names[a], names[b])] = None
        elif used == 1:
            kappas[(names[a], names[b])] = 1.0
        else:
            kappas[(names[a], names[b])] = _cohen_kappa(pair)
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
