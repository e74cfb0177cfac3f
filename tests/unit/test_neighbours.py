"""Exact k-NN against brute-force numpy, and the memorisation check on planted copies."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml.metrics import neighbours
from ml.metrics.neighbours import (
    MemorisationReport,
    knn,
    memorisation_report,
    pixel_features,
    release_verdict,
)


def brute_force(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Float64 distances of every pair; a stable sort breaks ties by the smaller index."""
    d2 = ((q[:, None, :].astype(np.float64) - r[None, :, :].astype(np.float64)) ** 2).sum(-1)
    order = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.sqrt(np.take_along_axis(d2, order, axis=1)), order


def tied_data(seed: int = 0, n: int = 150, d: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Reference with duplicated rows and coarse values (many equal distances); queries that
    include copies of reference rows (distance 0, tied with the copies' duplicates)."""
    rng = np.random.default_rng(seed)
    reference = np.round(rng.normal(size=(n, d)), 0).astype(np.float32)
    reference[n // 2 : n // 2 + 20] = reference[:20]
    queries = np.round(rng.normal(size=(40, d)), 0).astype(np.float32)
    queries[:5] = reference[:5]
    return queries, reference


def assert_exact(queries: np.ndarray, reference: np.ndarray, k: int, **options: object) -> None:
    distances, indices = knn(queries, reference, k, **options)  # type: ignore[arg-type]
    expected_d, expected_i = brute_force(queries, reference, k)
    assert indices.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-6, atol=1e-6)


# Chunks smaller than k, of one row, and not dividing the 150 reference rows.
@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, None])
def test_knn_equals_brute_force_with_ties(chunk_rows: int | None) -> None:
    queries, reference = tied_data()
    assert_exact(queries, reference, 5, chunk_rows=chunk_rows)


def test_knn_equals_brute_force_on_continuous_data() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(300, 32)).astype(np.float32)
    assert_exact(rng.normal(size=(50, 32)).astype(np.float32), reference, 7, chunk_rows=100)


def test_knn_is_exact_for_offset_float64_data_near_copies() -> None:
    # A large common offset (like a -1 background) and near-copies: cancellation territory.
    rng = np.random.default_rng(2)
    reference = 500.0 + rng.normal(size=(120, 16))
    queries = reference[:30] + rng.normal(scale=1e-4, size=(30, 16))
    assert_exact(queries, reference, 4, chunk_rows=50)


def test_knn_range_query_fallback_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    # No spare candidates and a bound as wide as bfloat16 matmuls: most rows take the
    # fallback path, which must give the same answer.
    monkeypatch.setattr(neighbours, "_EXTRA_CANDIDATES", 0)
    monkeypatch.setattr(neighbours, "_matmul_input_roundoff", lambda device: 2.0**-8)
    searched: list[int] = []
    range_query = neighbours._ExactSearch._range_query

    def spy(self, rows, limit):  # type: ignore[no-untyped-def]
        searched.extend(rows.tolist())
        return range_query(self, rows, limit)

    monkeypatch.setattr(neighbours._ExactSearch, "_range_query", spy)
    queries, reference = tied_data(seed=3)
    assert_exact(queries, reference, 5, chunk_rows=16)
    assert len(searched) > len(queries) // 2


def test_knn_edge_sizes() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(size=(6, 3)).astype(np.float32)
    d, i = knn(np.empty((0, 3), np.float32), reference, 2)
    assert d.shape == i.shape == (0, 2)
    assert_exact(reference[:1], reference, 6)  # one query, k = N
    assert_exact(rng.normal(size=(4, 3)), reference[:1], 1)  # one reference row
    d, i = knn(torch.from_numpy(reference), reference, 1)  # tensors in, each row its own NN
    np.testing.assert_array_equal(i[:, 0], np.arange(6))
    np.testing.assert_array_equal(d, 0.0)


def test_faiss_backend_gives_the_same_indices_without_ties() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 24)).astype(np.float32)
    queries = rng.normal(size=(60, 24)).astype(np.float32)
    d_ours, i_ours = knn(queries, reference, 5)
    d_faiss, i_faiss = knn(queries, reference, 5, backend="faiss")
    np.testing.assert_array_equal(i_faiss, i_ours)
    np.testing.assert_allclose(d_faiss, d_ours, rtol=1e-4)


def test_knn_rejects_bad_arguments() -> None:
    reference = np.zeros((4, 3), np.float32)
    query = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="exceeds"):
        knn(query, reference, 5)
    with pytest.raises(ValueError, match="positive integer"):
        knn(query, reference, 0)
    with pytest.raises(ValueError, match="dimensions"):
        knn(np.zeros((2, 4), np.float32), reference, 1)
    with pytest.raises(ValueError, match="2-D"):
        knn(np.zeros(3), reference, 1)
    with pytest.raises(ValueError, match="backend"):
        knn(query, reference, 1, backend="annoy")
    with pytest.raises(ValueError, match="NaN"):
        knn(np.full((1, 3), np.nan), reference, 1)


# ---- memorisation --------------------------------------------------------------------------


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth 1 x 8 x 8 "scans" in [-1, 1]: a random 4 x 4 pattern upsampled, plus noise."""
    coarse = rng.uniform(-0.8, 0.8, size=(n, 1, 4, 4))
    smooth = coarse.repeat(2, axis=2).repeat(2, axis=3)
    return np.clip(smooth + rng.normal(0, 0.05, size=(n, 1, 8, 8)), -1, 1)


@pytest.fixture(scope="module")
def planted() -> tuple[MemorisationReport, int, int]:
    rng = np.random.default_rng(6)
    train, test, new = images(rng, 300), images(rng, 200), images(rng, 100)
    copy, noisy = train[17], train[42] + rng.normal(0, 0.01, size=train[42].shape)
    synthetic = np.concatenate([new[:60], copy[None], new[60:], noisy[None]])
    return memorisation_report(synthetic, train, test, k=3), 60, len(synthetic) - 1


def test_planted_copies_are_flagged_and_ranked_first(
    planted: tuple[MemorisationReport, int, int],
) -> None:
    report, copy_at, noisy_at = planted
    assert report.dcr[copy_at] == 0.0 and report.neighbour_indices[copy_at, 0] == 17
    assert report.neighbour_indices[noisy_at, 0] == 42
    for level in ("p1", "p5"):
        assert report.flagged[level][[copy_at, noisy_at]].all()
    assert set(report.risk_order()[:2]) == {copy_at, noisy_at}
    assert report.risk_order()[0] == copy_at  # distance 0 beats a little noise
    # Genuinely new images from the test distribution: flagged at about the chance rate.
    new = np.delete(np.arange(report.dcr.size), [copy_at, noisy_at])
    assert report.flagged["p5"][new].mean() <= 0.15
    assert report.flagged["p1"][new].mean() <= 0.05
    assert report.nndr[copy_at] == 0.0 and np.median(report.nndr[new]) > 0.5


def test_summary_is_json_and_drives_the_verdict(
    planted: tuple[MemorisationReport, int, int],
) -> None:
    report, _, _ = planted
    stored = json.loads(json.dumps(report.summary(), allow_nan=False))
    assert stored["n_synthetic"] == 102 and stored["n_train"] == 300 and stored["n_test"] == 200
    assert stored["coarse_baseline"] is False and stored["baseline_zero_dcr"] == 0
    assert stored["share_flagged"]["p5"] == pytest.approx(report.share_flagged("p5"))
    assert stored["thresholds"]["p1"] <= stored["thresholds"]["p5"]
    assert stored["dcr"]["min"] == 0.0
    strict = release_verdict(stored, max_share=0.0, level="p1")
    assert not strict.passes and strict.level == "p1"
    lenient = release_verdict(stored, max_share=0.5)
    assert lenient.passes and "so the set passes" in lenient.reason


def summary_with(n_flagged: int, n: int = 200, **extra: object) -> dict:
    return {
        "n_synthetic": n,
        "n_flagged": {"p5": n_flagged},
        "share_flagged": {"p5": n_flagged / n if n else 0.0},
        "percentiles": {"p5": 5.0},
        "coarse_baseline": False,
        "baseline_n": 100,
        **extra,
    }


def test_release_verdict_at_the_threshold() -> None:
    at = release_verdict(summary_with(2), max_share=0.01)
    assert at.passes and at.share_flagged == pytest.approx(0.01)
    over = release_verdict(summary_with(3), max_share=0.01)
    assert not over.passes
    assert over.reason == (
        "3 of 200 synthetic images (1.5%) are closer to a training image than 95% of real "
        "test images are; the gate allows 1.0%."
    )
    coarse = release_verdict(summary_with(0, coarse_baseline=True, baseline_n=8))
    assert coarse.passes and "Only 8 real test images" in coarse.reason
    assert not release_verdict(summary_with(0, n=0)).passes
    with pytest.raises(ValueError, match="level"):
        release_verdict(summary_with(1), level="p10")


def test_small_baseline_is_marked_coarse_and_duplicates_give_nndr_one() -> None:
    rng = np.random.default_rng(7)
    train = images(rng, 30)
    train[1] = train[0]  # a duplicated training image
    report = memorisation_report(train[:1], train, images(rng, 6), k=2)
    summary = report.summary()
    assert summary["coarse_baseline"] is True and summary["baseline_n"] == 6
    assert report.dcr[0] == 0.0 and report.nndr[0] == 1.0  # d1 = d2 = 0


def test_memorisation_report_rejects_bad_input() -> None:
    rng = np.random.default_rng(8)
    train, test = images(rng, 10), images(rng, 5)
    with pytest.raises(ValueError, match="k must"):
        memorisation_report(train, train, test, k=1)
    with pytest.raises(ValueError, match="training images"):
        memorisation_report(train, train[:3], test, k=5)
    with pytest.raises(ValueError, match="differ in size"):
        memorisation_report(train[:, :, :4], train, test)
    with pytest.raises(ValueError, match="test image"):
        memorisation_report(train, train, test[:0])
    with pytest.raises(ValueError, match="percentiles"):
        memorisation_report(train, train, test, percentiles=(0.0,))


def test_pixel_features_flattens_images() -> None:
    x = torch.linspace(-1, 1, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    features = pixel_features(x)
    assert features.shape == (2, 48) and features.dtype == np.float32
    np.testing.assert_array_equal(features[1], x[1].reshape(-1).numpy())
