"""Paired PSNR / SSIM / MS-SSIM / MS-GMSD / MDSI / HaarPSI: limiting cases, monotonicity in
noise, small-image plans. Agreement with piq and MONAI is in test_quality_piq.py."""

from __future__ import annotations

import json
import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from ml.metrics.quality import (
    LOWER_IS_BETTER,
    METRICS,
    PSNR_CAP_DB,
    ms_gmsd_scales,
    ms_ssim_plan,
    paired_quality,
    per_image_quality,
)


def _smooth_images(n: int = 4, c: int = 1, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Blurry random blobs in [-1, 1]: structure at several scales, like anatomy, not noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, c, max(2, size // 8), max(2, size // 8), generator=g)
    up = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    return up * 2 - 1


def _noisy(x: torch.Tensor, sigma: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_identical_images(size: int) -> None:
    x = _smooth_images(size=size)
    q = paired_quality(x, x.clone())
    assert q["n"] == 4
    assert q["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert q["ms_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert q["haarpsi"] == pytest.approx(1.0, abs=1e-5)
    assert q["ms_gmsd"] == pytest.approx(0.0, abs=1e-6)
    assert q["mdsi"] == pytest.approx(
        0.0, abs=1e-3
    )  # MDSI's 0.25 power pooling magnifies round-off
    # Infinite PSNR stops at piq's ceiling so the result stays valid JSON.
    assert q["psnr"] == pytest.approx(PSNR_CAP_DB, abs=1e-3) and q["psnr_capped"] == 4
    json.dumps(q, allow_nan=False)


def test_noise_lowers_scores_monotonically() -> None:
    x = _smooth_images(n=3, c=3, size=32)
    results = [paired_quality(x, _noisy(x, s)) for s in (0.02, 0.05, 0.1, 0.3)]
    for key in METRICS:
        values = [r[key] for r in results]
        if key in LOWER_IS_BETTER:
            values = [-v for v in values]
        assert all(a > b for a, b in pairwise(values)), (key, values)
    assert all(r["psnr_capped"] == 0 for r in results)


def test_psnr_matches_closed_form() -> None:
    x = torch.full((2, 1, 16, 16), -1.0)
    y = x + 0.2  # 0.1 on the [0, 1] scale everywhere: MSE 0.01 -> 20 dB
    assert paired_quality(x, y, metrics=("psnr",))["psnr"] == pytest.approx(20.0, abs=1e-4)


def test_numpy_inputs_and_metric_subset() -> None:
    x = _smooth_images(size=16).numpy()
    q = paired_quality(x, x, metrics=("ssim",))
    assert set(q) == {"n", "ssim", "ssim_window"}
    assert set(paired_quality(x, x, metrics="psnr")) == {"n", "psnr", "psnr_capped"}


def test_shape_mismatch_and_bad_input() -> None:
    x = _smooth_images(size=16)
    with pytest.raises(ValueError, match="shape mismatch"):
        paired_quality(x, x[:, :, :8])
    with pytest.raises(ValueError, match="N, C, H, W"):
        paired_quality(x[0], x[0])
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        paired_quality(x.repeat(1, 2, 1, 1), x.repeat(1, 2, 1, 1))
    with pytest.raises(ValueError, match="unknown metrics"):
        paired_quality(x, x, metrics=("lpips",))
    bad = x.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        paired_quality(x, bad)


def test_ms_ssim_plan_for_small_images() -> None:
    assert ms_ssim_plan(256, 256) == (5, 11)
    assert ms_ssim_plan(128, 128) == (4, 11)
    assert ms_ssim_plan(64, 64) == (3, 11)
    assert ms_ssim_plan(32, 32) == (2, 11)
    assert ms_ssim_plan(16, 16) == (2, 7)
    assert ms_ssim_plan(64, 16) == (2, 7)  # the shorter side decides
    assert ms_ssim_plan(5, 5) is None
    assert [ms_gmsd_scales(s, s) for s in (256, 17, 16, 9, 5, 3, 2)] == [4, 4, 3, 3, 2, 1, None]


def test_tiny_images_report_why_ms_ssim_is_missing() -> None:
    x = torch.rand(2, 1, 4, 4) * 2 - 1
    q = paired_quality(x, _noisy(x, 0.1))
    assert q["ms_ssim"] is None and "too small" in q["ms_ssim_note"]
    assert q["ssim_window"] == 3 and np.isfinite(q["ssim"])
    assert q["haarpsi"] is None and "16 px" in q["haarpsi_note"]
    assert q["ms_gmsd_scales"] == 1 and np.isfinite(q["ms_gmsd"]) and np.isfinite(q["mdsi"])


def test_batching_does_not_change_the_mean() -> None:
    x = _smooth_images(n=5, size=32)
    y = _noisy(x, 0.1)
    whole, parts = paired_quality(x, y), paired_quality(x, y, batch_size=2)
    for key in METRICS:
        assert whole[key] == pytest.approx(parts[key], rel=1e-6)


def test_per_image_scores_average_to_the_paired_means() -> None:
    rng = np.random.default_rng(3)
    reference = torch.from_numpy(rng.uniform(-1, 1, (5, 1, 32, 32)).astype(np.float32))
    noise = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    candidate = (reference + 0.1 * noise).clamp(-1, 1)
    per_image = per_image_quality(reference, candidate)
    means = paired_quality(reference, candidate)
    assert set(per_image) == set(METRICS)
    for key, values in per_image.items():
        assert len(values) == 5
        assert np.mean(values) == pytest.approx(means[key], rel=1e-6)
    tiny = per_image_quality(reference[:, :, :4, :4], candidate[:, :, :4, :4])
    # Too small for MS-SSIM and HaarPSI: left out, not guessed.
    assert set(tiny) == {"psnr", "ssim", "ms_gmsd", "mdsi"}
