"""FID / KID / PRDC against closed forms, a direct scipy computation and limiting cases."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from scipy import linalg

from ml.metrics.fid import (
    compare,
    feature_stats,
    fid,
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
    report = compare(train, fake, test, kid_subsets=10, kid_subset_size=100)
    assert report.floor is not None
    assert report.floor.fid < report.fake_vs_train.fid
    assert report.floor.kid_mean < report.fake_vs_train.kid_mean
    assert report.to_dict()["fake_vs_train"]["n_b"] == 150
    assert compare(train, fake, kid_subsets=2, kid_subset_size=50).floor is None


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        fid(np.zeros((1, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError):
        precision_recall_density_coverage(_features(n=4), _features(n=50), k=5)
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
