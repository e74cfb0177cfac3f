"""The results page's fast paths give the library references' figures (issue 18, cold page).

Each closed form or vectorised version is checked against the library call it replaced, over
many inputs rather than a hand example: scipy's binomtest, sklearn's roc_auc_score and
cohen_kappa_score, statsmodels' Holm adjustment.
"""

import random

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, roc_auc_score
from statsmodels.stats.multitest import multipletests

from app.domain.checked_first import FirstPresentations, checked_first
from app.domain.statistics import (
    Rating,
    _reader_summary_memo,
    binomial_p_half,
    cohen_kappa_pairs,
    holm,
    rank_auc,
    study_statistics,
)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_binomial_p_half_is_scipys_binomtest(alternative) -> None:
    sizes = [*range(1, 61), 99, 100, 499, 500]
    for n in sizes:
        for k in range(n + 1):
            expected = binomtest(k, n, 0.5, alternative=alternative).pvalue
            assert binomial_p_half(k, n, alternative) == pytest.approx(expected, rel=1e-12), (k, n)
    with pytest.raises(ValueError):
        binomial_p_half(3, 2, "two-sided")


def test_rank_auc_is_sklearns_roc_auc_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 80))
        labels = rng.random(n) < 0.5
        labels[:2] = [True, False]  # both classes present
        scores = rng.integers(-5, 6, size=n).astype(float)  # a 1-5 scale: many ties
        assert rank_auc(labels, scores) == pytest.approx(
            roc_auc_score(labels, scores), rel=1e-12, abs=1e-15
        )


def test_cohen_kappa_pairs_are_sklearns_on_the_images_both_rated() -> None:
    rng = random.Random(3)
    answers = ("real", "fake", "uncertain")
    for _ in range(30):
        ratings = [
            Rating(reader, f"img{i}", rng.choice(("real", "fake")), rng.choice(answers))
            for reader in ("a", "b", "c", "d")
            for i in range(rng.randint(3, 40))
            if rng.random() < 0.8  # readers skip images: kappa is on the shared ones
        ]
        by_reader: dict[str, dict[str, str]] = {}
        for r in ratings:
            by_reader.setdefault(r.reader, {})[r.image] = r.answer
        for (a, b), kappa in cohen_kappa_pairs(ratings).items():
            shared = sorted(by_reader[a].keys() & by_reader[b].keys())
            xa = [by_reader[a][i] for i in shared]
            xb = [by_reader[b][i] for i in shared]
            if not shared:
                assert kappa is None
            elif len(set(xa) | set(xb)) == 1:
                assert kappa == 1.0
            else:
                expected = cohen_kappa_score(xa, xb, labels=list(answers))
                assert kappa == pytest.approx(expected, rel=1e-12, abs=1e-15), (a, b)


def test_holm_is_statsmodels_multipletests_holm_with_ties_and_ones() -> None:
    rng = np.random.default_rng(11)
    for m in range(1, 30):
        p = rng.choice([0.001, 0.01, 0.02, 0.04, 0.3, 0.9, 1.0], size=m) * rng.random(m) ** 0.1
        p[rng.random(m) < 0.3] = 0.01  # ties
        expected = multipletests(list(p), method="holm")[1]
        assert holm(list(p)) == pytest.approx(list(expected), rel=1e-15, abs=0)


def test_first_presentations_are_checked_once_and_still_raise_on_duplicates() -> None:
    ratings = [
        Rating("a", "img1", "fake", "fake"),
        Rating("a", "img1", "fake", "real", repeat=True),
        Rating("b", "img1", "fake", "uncertain"),
    ]
    first = checked_first(ratings)
    assert isinstance(first, FirstPresentations) and [r.reader for r in first] == ["a", "b"]
    assert checked_first(first) is first  # passed on, not walked again
    assert first.answers_by_reader == {"a": {"img1": "fake"}, "b": {"img1": "uncertain"}}
    with pytest.raises(ValueError, match="twice"):
        checked_first([*ratings, Rating("b", "img1", "fake", "fake")])


def test_study_statistics_serve_a_reader_again_only_while_their_ratings_are_the_same() -> None:
    """Per-reader rows are reused across calls; a changed reader is recomputed."""
    base = [
        Rating(reader, f"img{i}", "fake" if i % 2 else "real", answer, confidence=1.0 + i % 5)
        for reader, shift in (("a", 0), ("b", 1), ("c", 2))
        for i in range(24)
        for answer in [("real", "fake", "fake", "uncertain")[(i + shift) % 4]]
    ]
    before = study_statistics(base, policy="wrong")
    changed = [r if (r.reader, r.image) != ("b", "img1") else Rating("b", "img1", "fake", "real",
               confidence=5.0) for r in base]  # fmt: skip
    after = study_statistics(changed, policy="wrong")
    rows = {r["reader"]: r for r in after["readers"]}
    old = {r["reader"]: r for r in before["readers"]}
    assert rows["a"] == old["a"] and rows["c"] == old["c"]
    assert rows["b"]["correct"] == old["b"]["correct"] - 1  # img1 was right ("fake"), now wrong
    # And the same as a computation that never saw the first call.
    _reader_summary_memo.cache_clear()
    assert study_statistics(changed, policy="wrong") == after
