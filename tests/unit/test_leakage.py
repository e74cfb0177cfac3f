"""The leakage gate's statistics: AUC against an independent reference, the random-feature
null calibrated (a random feature passes ~95% of the time), a leaking feature failing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from app.domain.leakage import (
    ChannelResult,
    auc,
    average_ranks,
    channel_result,
    describe,
    folded,
    leaking,
    null_p95,
)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_and_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    truth = rng.random(n) < 0.4
    truth[:2] = [True, False]  # both classes present
    continuous = rng.normal(size=n) + truth * 0.7
    tied = rng.integers(0, 4, size=n)  # heavy ties, as byte lengths or borders give
    for scores in (continuous, tied):
        assert auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)


def test_average_ranks_match_scipy() -> None:
    from scipy.stats import rankdata

    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0])
    assert np.array_equal(average_ranks(x), rankdata(x))


def test_constant_and_one_class_features_carry_nothing() -> None:
    truth = [True, False, True, False]
    assert auc([7, 7, 7, 7], truth) == 0.5
    assert auc([1, 2, 3, 4], [True] * 4) == 0.5
    assert folded(0.2) == 0.8 and folded(0.7) == 0.7


def test_null_quantile_against_the_exact_distribution_for_small_sizes() -> None:
    # 4 v 4: U takes 17 values over C(8, 4) = 70 equally likely subsets; enumerate them all.
    from itertools import combinations

    folded_aucs = []
    for real in combinations(range(8), 4):
        truth = np.zeros(8, bool)
        truth[list(real)] = True
        folded_aucs.append(folded(auc(np.arange(8), truth)))
    exact = float(np.quantile(folded_aucs, 0.95))
    assert null_p95(4, 4) == pytest.approx(exact, abs=0.0626)  # one step of U is 1/16
    # Bigger studies have a narrower null; simulation and normal approximation agree.
    assert null_p95(20, 20) > null_p95(100, 100) > null_p95(1000, 1000) > 0.5
    sd = np.sqrt((300 + 1) / (12 * 150 * 150))
    assert null_p95(150, 150) == pytest.approx(0.5 + 1.96 * sd, abs=0.004)


@pytest.mark.parametrize(("n_real", "n_synthetic"), [(20, 20), (30, 12)])
def test_a_random_feature_passes_about_95_percent_of_the_time(
    n_real: int, n_synthetic: int
) -> None:
    rng = np.random.default_rng(123)
    truth = np.r_[np.zeros(n_real, bool), np.ones(n_synthetic, bool)]
    trials = 2000
    passed = sum(
        channel_result("noise", [(rng.normal(size=truth.size), truth)]).passed
        for _ in range(trials)
    )
    # Binomial(2000, 0.95) has sd 0.5 %; the discrete null can only make passing likelier.
    assert 0.93 <= passed / trials <= 0.975


def test_a_leaking_feature_fails_and_averaging_walks_keeps_noise_in() -> None:
    rng = np.random.default_rng(9)
    truth = np.r_[np.zeros(25, bool), np.ones(25, bool)]
    # Byte lengths as in the issue: synthetic 89-91 KB, real spread widely and overlapping.
    lengths = np.where(truth, rng.uniform(89e3, 91e3, 50), rng.uniform(40e3, 400e3, 50))
    leak = channel_result("byte_length", [(lengths, truth)])
    assert not leak.passed and leak.auc > leak.null_p95
    assert leaking([leak]) == [leak]
    assert "separates the sources" in describe(leak)
    # A random channel averaged over 5 walks almost never exceeds the single-walk null...
    noisy = [
        channel_result("position", [(rng.permutation(50), truth) for _ in range(5)])
        for _ in range(200)
    ]
    assert sum(not r.passed for r in noisy) <= 2
    # ...while a systematic one (synthetic images first) does on every walk.
    first = channel_result("position", [(np.argsort(~truth, kind="stable"), truth)] * 5)
    assert first.auc == 1.0 and not first.passed


def test_results_round_trip_through_json() -> None:
    result = channel_result("border", [([0, 0, 3, 4], [False, False, True, True])])
    data = result.to_json()
    assert data["passed"] is result.passed
    assert ChannelResult(**{k: v for k, v in data.items() if k != "passed"}) == result
