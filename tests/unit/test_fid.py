"""FID / KID / PRDC against closed forms, a direct scipy computation and limiting cases."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import torch
from scipy import linalg

from ml.metrics.fid import (
    _fid_from_grams,
    _fid_from_rows,
    compare,
    feature_stats,
    fid,
    fid_interval,
    fid_small_n,
    frechet_distance,
    kid,
    precision_recall_density_coverage,
)


def _features(n: int = 300, d: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def test_frechet_distance_of_identical_stats_is_zero() -> None:
    mu, sigma = feature_stats(_features())
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians() -> None:
    # For commuting (diagonal) covariances: |mu1-mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2.
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_distance_matches_direct_scipy_computation() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 10)), rng.normal(size=(50, 10))
    sigma1, sigma2 = a.T @ a / 50, b.T @ b / 50 + 0.5 * np.eye(10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    root = linalg.sqrtm(sigma1 @ sigma2).real
    expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(sigma1 + sigma2 - 2 * root)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_handles_singular_covariances() -> None:
    # Fewer samples than dimensions: rank-deficient covariances, as with small eval sets.
    a, b = _features(n=10, d=32, seed=3), _features(n=10, d=32, seed=4)
    value = fid(a, b)
    assert np.isfinite(value) and value > 0


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise() -> None:
    feats = _features()
    assert fid(feats, feats) == pytest.approx(0.0, abs=1e-6)
    noise = np.random.default_rng(5).normal(size=feats.shape)
    scores = [fid(feats, feats + level * noise) for level in (0.1, 0.5, 1.0, 2.0)]
    assert all(lo < hi for lo, hi in pairwise(scores))


def test_kid_is_near_zero_for_identical_sets_and_positive_for_shifted() -> None:
    feats = _features(n=200)
    same, _ = kid(feats, feats, subsets=20, subset_size=100)
    shifted, shifted_std = kid(feats, feats + 1.0, subsets=20, subset_size=100)
    # Unbiased, so "same" scatters around 0 (either sign) by subset sampling noise.
    assert abs(same) < 0.05 * shifted
    assert shifted > 0 and shifted_std >= 0


def test_kid_caps_subset_size_and_is_seeded() -> None:
    a, b = _features(n=30), _features(n=40, seed=1)
    assert kid(a, b, subsets=5, subset_size=1000) == kid(a, b, subsets=5, subset_size=30)
    assert kid(a, b, subsets=5, seed=7) == kid(a, b, subsets=5, seed=7)


def test_prdc_identical_sets_and_far_away_fakes() -> None:
    real = _features(n=120)
    same = precision_recall_density_coverage(real, real.copy(), k=5)
    assert same["precision"] == pytest.approx(1.0)
    assert same["recall"] == pytest.approx(1.0)
    assert same["coverage"] == pytest.approx(1.0)
    far = precision_recall_density_coverage(real, real + 100.0, k=5)
    assert far["precision"] == 0.0 and far["coverage"] == 0.0
    assert far["recall"] == 0.0 and far["density"] == 0.0


def test_prdc_chunking_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import ml.metrics.fid as fid_module

    real, fake = _features(n=80), _features(n=70, seed=9) * 1.3
    whole = precision_recall_density_coverage(real, fake, k=3)
    monkeypatch.setattr(fid_module, "_CHUNK_ELEMENTS", 100)  # blocks of one or two rows
    assert precision_recall_density_coverage(real, fake, k=3) == whole
    assert 0 < whole["precision"] < 1 and 0 < whole["coverage"] < 1


def test_compare_reports_fake_scores_and_real_floor() -> None:
    train, test = _features(n=150, seed=10), _features(n=150, seed=11)
    fake = _features(n=150, seed=12) + 0.8
    report = compare(train, fake, test, kid_subsets=10, kid_subset_size=100, fid_resamples=20)
    assert report.floor is not None
    assert report.floor.fid < report.fake_vs_train.fid
    assert report.floor.kid_mean < report.fake_vs_train.kid_mean
    assert report.to_dict()["fake_vs_train"]["n_b"] == 150
    assert compare(train, fake, kid_subsets=2, kid_subset_size=50, fid_resamples=0).floor is None


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        fid(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        precision_recall_density_coverage(_features(n=4), _features(n=50), k=5)
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


@pytest.fixture(scope="module")
def digit_halves() -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of scikit-learn's digits (64 pixel features): two samples
    of one distribution, so the population FID between them is 0."""
    from sklearn.datasets import load_digits

    pixels = load_digits().data.astype(np.float64)
    order = np.random.default_rng(0).permutation(len(pixels))
    return pixels[order[:898]], pixels[order[898:1796]]


@pytest.mark.parametrize(("n", "m", "d"), [(30, 40, 64), (300, 250, 12)])
def test_gram_and_covariance_paths_give_the_fid(n: int, m: int, d: int) -> None:
    # The bootstrap's two fast paths (Gram space for n <= d, Cholesky for n > d) against the
    # eigen-decomposition FID, with unequal set sizes and a mean shift.
    a, b = _features(n=n, d=d, seed=20), _features(n=m, d=d, seed=21) * 1.3 + 0.2
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    expected = frechet_distance(*feature_stats(a), *feature_stats(b))
    # 1e-7: with n < d the eigen route adds square roots of round-off-sized eigenvalues.
    assert _fid_from_grams(x @ x.T, y @ y.T, x @ y.T) == pytest.approx(expected, rel=1e-7)
    assert _fid_from_rows(x, y) == pytest.approx(expected, rel=1e-7)
    assert fid(a, b) == pytest.approx(expected, rel=1e-7)  # which route fid takes by itself


def test_fid_interval_is_seeded_and_deterministic() -> None:
    a, b = _features(n=60, d=8, seed=22), _features(n=50, d=8, seed=23) + 0.5
    first = fid_interval(a, b, resamples=20, seed=3)
    assert first == fid_interval(a, b, resamples=20, seed=3)
    assert first != fid_interval(a, b, resamples=20, seed=4)
    low, high = first
    assert 0 <= low < high
    with pytest.raises(ValueError, match="method"):
        fid_interval(a, b, resamples=20, method="bca")  # type: ignore[arg-type]


def test_basic_interval_covers_the_population_fid_and_percentile_does_not() -> None:
    # Calibration with a known answer: N(0, I) against N(0.3, diag(s^2)) in 8 dimensions, FID
    # = 8 * 0.3^2 + sum (1 - s)^2, estimated from 100 images each (n = 12.5 d) 20 times over.
    d, n, reps = 8, 100, 20
    scale = np.linspace(0.8, 1.5, d)
    truth = d * 0.3**2 + float(np.sum((1.0 - scale) ** 2))
    basic = percentile = 0
    for rep in range(reps):
        rng = np.random.default_rng(100 + rep)
        a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * scale + 0.3
        low, high = fid_interval(a, b, resamples=100, seed=rep)
        basic += low <= truth <= high
        low, high = fid_interval(a, b, resamples=100, seed=rep, method="percentile")
        percentile += low <= truth <= high
    # Nominal 95% (here 19 and 1 of 20; 40 runs: 39 and 1). The percentile interval sits above
    # the estimate, which is itself biased upwards, so it misses the truth at n = 12.5 d.
    assert basic >= 0.85 * reps
    assert percentile <= 0.1 * reps


def test_small_n_flag_and_interval_on_two_halves_of_digits(
    digit_halves: tuple[np.ndarray, np.ndarray],
) -> None:
    first, second = digit_halves
    # n = 40 < 64 pixels: the FID is mostly bias; the interval of the biased estimator lies
    # far from the population value 0, hence the flag. KID is unbiased and stays near 0
    # relative to a real difference (digit 0 against digit 1).
    small = compare(first[:40], second[:40], kid_subsets=5, kid_subset_size=40, fid_resamples=60)
    scores = small.fake_vs_train
    assert scores.fid_small_n and scores.dim == 64 and scores.n_b == 40
    assert scores.fid_interval is not None and scores.fid_interval[0] > 10.0
    from sklearn.datasets import load_digits

    data = load_digits()
    zeros, ones = data.data[data.target == 0][:40], data.data[data.target == 1][:40]
    different = compare(zeros, ones, kid_subsets=5, kid_subset_size=40, fid_resamples=0)
    assert different.fake_vs_train.fid_interval is None
    assert abs(scores.kid_mean) < 0.02 * different.fake_vs_train.kid_mean
    # n = 300 > 64: no flag, and the interval reaches the population value 0.
    large = compare(first[:300], second[:300], kid_subsets=2, kid_subset_size=100, fid_resamples=60)
    assert not large.fake_vs_train.fid_small_n
    low, high = large.fake_vs_train.fid_interval or (None, None)
    assert low == 0.0 and high > 0.0
    assert fid_small_n(300, 63, 64) and not fid_small_n(64, 64, 64)


def test_compare_stores_interval_flag_and_dimension() -> None:
    train, fake = _features(n=80, d=16, seed=30), _features(n=70, d=16, seed=31) + 0.5
    stored = compare(train, fake, kid_subsets=2, kid_subset_size=50, fid_resamples=20).to_dict()
    row = stored["fake_vs_train"]
    assert row is not None
    assert row["dim"] == 16 and row["fid_small_n"] is False and row["fid_level"] == 0.95
    low, high = row["fid_interval"]  # type: ignore[misc]
    assert 0 <= low < high
