"""The memorisation check on planted copies (exact k-NN itself: test_knn.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ml.metrics import neighbours
from ml.metrics.neighbours import (
    MemorisationReport,
    memorisation_report,
    pixel_features,
    release_verdict,
)

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
    # Each level's count is tested against its chance level (tests/unit/test_release_gate.py).
    below = stored["baseline_below"]["p5"]
    assert below == int((report.baseline_dcr < report.thresholds["p5"]).sum())
    assert stored["expected_share"]["p5"] == pytest.approx((below + 1) / 201)
    assert stored["p_value"]["p5"] == pytest.approx(
        neighbours.flagged_p_value(stored["n_flagged"]["p5"], 102, 200, below)
    )
    assert "exchangeable" in stored["test"]
    for level in ("p1", "p5"):
        verdict = release_verdict(stored, level=level)
        assert verdict.level == level and verdict.p_value == stored["p_value"][level]
        assert verdict.passes is (verdict.p_value > 0.05)


def summary_with(n_flagged: int, n: int = 200, **extra: object) -> dict:
    return {
        "n_synthetic": n,
        "n_flagged": {"p5": n_flagged},
        "share_flagged": {"p5": n_flagged / n if n else 0.0},
        "baseline_below": {"p5": 5},
        "percentiles": {"p5": 5.0},
        "coarse_baseline": False,
        "baseline_n": 100,
        **extra,
    }


def test_release_verdict_at_the_critical_count() -> None:
    critical = neighbours.critical_count(200, 100, 5, 0.05)
    assert critical == 23  # chance alone flags 6 / 101 = 5.9%; its spread allows 22 of 200
    below = release_verdict(summary_with(critical - 1))
    assert below.passes and below.share_flagged == pytest.approx(0.11)
    at = release_verdict(summary_with(critical))
    assert not at.passes and at.p_value is not None and at.p_value <= 0.05
    assert at.reason == (
        "23 of 200 synthetic images (11.5%) are closer to a training image than 95% of real "
        "test images are; about 5.9% would be by chance (exact one-sided test: p = "
        f"{at.p_value:.2g} <= alpha = 0.05). The gate fails this set at 23 or more flagged."
    )
    coarse = release_verdict(
        summary_with(0, coarse_baseline=True, baseline_n=8, baseline_below={"p5": 0})
    )
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
