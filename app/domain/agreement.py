"""Agreement between readers and paired tests between conditions: pure functions.

Split out of :mod:`app.domain.statistics`, which re-exports everything public here, so callers
keep importing from there. Like the rest of the statistics, kappas use first presentations only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from app.domain.ratings import CATEGORIES, Answer, Rating, first_presentations


@dataclass(frozen=True)
class PairedTest:
    statistic: float
    pvalue: float
    n: int
    method: str


def _answers_by_reader(ratings: Iterable[Rating]) -> dict[str, dict[str, Answer]]:
    answers: dict[str, dict[str, Answer]] = defaultdict(dict)
    for r in first_presentations(ratings):
        answers[r.reader][r.image] = r.answer
    return dict(sorted(answers.items()))


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


def cohen_kappa_pairs(ratings: Iterable[Rating]) -> dict[tuple[str, str], float | None]:
    """Cohen's kappa for every reader pair (a < b) on the images both rated.

    Same convention as :func:`fleiss_kappa`: both readers giving one identical category to
    everything is perfect agreement (1.0). None when a pair shares no image.
    """
    answers = _answers_by_reader(ratings)
    categories = list(CATEGORIES)
    kappas: dict[tuple[str, str], float | None] = {}
    for a, b in combinations(answers, 2):
        shared = sorted(answers[a].keys() & answers[b].keys())
        xa = [answers[a][i] for i in shared]
        xb = [answers[b][i] for i in shared]
        if not shared:
            kappas[(a, b)] = None
        elif len(set(xa) | set(xb)) == 1:
            kappas[(a, b)] = 1.0
        else:
            kappas[(a, b)] = float(cohen_kappa_score(xa, xb, labels=categories))
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
