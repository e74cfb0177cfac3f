"""Paired quality of synthetic images against their nearest real training image, as the
nearest-neighbours job computes it: on scikit-learn's digits, with planted copies of training
images among new ones, through a real memorisation report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from ml.metrics.neighbours import memorisation_report, pixel_features
from ml.metrics.quality import METRICS, PSNR_CAP_DB
from ml.progress import Stopped
from workers.evaluation import GALLERY_SIZE, _nearest_quality, _with_quality

N_COPIES = 6


def _digits_16px() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, test, synthetic) in [-1, 1] at 16 px: synthetic = N_COPIES exact copies of
    training digits, then digits the generator never saw."""
    images = load_digits().images[:90].astype(np.float32) / 8 - 1  # 0..16 -> [-1, 1]
    x = F.interpolate(torch.from_numpy(images)[:, None], size=(16, 16), mode="bilinear")
    train, test, new = x[:50], x[50:70], x[70:90]
    synthetic = torch.cat([train[:N_COPIES], new])
    return train, test, synthetic


def _report(train: torch.Tensor, test: torch.Tensor, synthetic: torch.Tensor):  # type: ignore[no-untyped-def]
    return memorisation_report(
        pixel_features(synthetic), pixel_features(train), pixel_features(test), k=2
    )


def _never() -> bool:
    return False


def test_copies_score_as_identical_and_new_digits_do_not() -> None:
    train, test, synthetic = _digits_16px()
    report = _report(train, test, synthetic)
    ticks: list[tuple[float, float]] = []
    summary, positions, per_image = _nearest_quality(
        report, synthetic, train, lambda d, t, _m: ticks.append((d, t)), _never
    )
    json.dumps(summary, allow_nan=False)  # stored in the job row and printed by --json
    assert set(per_image) == set(METRICS) and summary["n"] == summary["n_synthetic"] == 26
    assert summary["sample_seed"] is None  # every image scored
    assert ticks[-1][0] == ticks[-1][1] and ticks == sorted(ticks)
    order = np.argsort(positions)
    scores = {m: v[order] for m, v in per_image.items()}
    copies, new = slice(0, N_COPIES), slice(N_COPIES, None)
    assert summary["psnr_capped"] == N_COPIES
    np.testing.assert_allclose(scores["psnr"][copies], PSNR_CAP_DB, atol=1e-3)
    np.testing.assert_allclose(scores["ssim"][copies], 1.0, atol=1e-6)
    np.testing.assert_allclose(scores["haarpsi"][copies], 1.0, atol=1e-5)
    np.testing.assert_allclose(scores["ms_gmsd"][copies], 0.0, atol=1e-6)
    assert scores["psnr"][new].max() < 40 and scores["ssim"][new].max() < 0.99
    assert scores["ms_gmsd"][new].min() > 0.01 and scores["mdsi"][new].min() > 0.01
    # The reference is the nearest training image: the new digit's best PSNR over all of them.
    best = [
        max(-10 * np.log10(float(((s - t) / 2).pow(2).mean()) + 1e-8) for t in train)
        for s in synthetic[new]
    ]
    np.testing.assert_allclose(scores["psnr"][new], best, atol=1e-3)


def test_a_sample_is_scored_and_the_gallery_always_is() -> None:
    train, test, synthetic = _digits_16px()
    report = _report(train, test, synthetic)
    summary, positions, per_image = _nearest_quality(
        report, synthetic, train, lambda *_: None, _never, max_images=8
    )
    assert summary["n"] == 8 and summary["n_synthetic"] == 26 and summary["sample_seed"] == 0
    gallery_order = report.risk_order()[:GALLERY_SIZE]
    assert set(gallery_order.tolist()) <= set(positions.tolist())
    assert all(len(v) == len(positions) for v in per_image.values())
    result = {"gallery": [{} for _ in gallery_order]}
    _with_quality(result, report, positions, per_image)
    first = result["gallery"][0]["quality"]  # the riskiest: a planted copy
    assert int(gallery_order[0]) < N_COPIES and first["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert set(first) == set(METRICS)


def test_a_stop_request_interrupts_the_scoring() -> None:
    train, test, synthetic = _digits_16px()
    with pytest.raises(Stopped):
        _nearest_quality(_report(train, test, synthetic), synthetic, train, print, lambda: True)


def test_the_benchmark_macro_shows_every_metric_with_its_direction() -> None:
    from app.web.templating import templates

    train, test, synthetic = _digits_16px()
    summary, _, _ = _nearest_quality(
        _report(train, test, synthetic), synthetic, train, lambda *_: None, _never, max_images=10
    )
    macros = templates.env.get_template("evaluation/macros.html").module
    html = str(macros.quality_table({"pixel": summary}, "Nearest in"))  # type: ignore[attr-defined]
    for header in ("PSNR (dB) ↑", "SSIM ↑", "MS-SSIM ↑", "MS-GMSD ↓", "MDSI ↓", "HaarPSI ↑"):
        assert header in html, header
    assert f"{summary['ssim']:.4g}" in html and "<small>of 26</small>" in html
    assert "a random sample of 10 (seed 0)" in html
