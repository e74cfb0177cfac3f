"""`ml.metrics.quality` against piq itself and against MONAI, on real grey and colour images.

piq's functions are called here directly, with piq's own defaults wherever the image size lets
our settings equal them, so the test checks what `quality.py` adds (the [-1, 1] -> [0, 1]
mapping, grey -> RGB for MDSI, MS-GMSDc for colour, the small-image plans, batching). MONAI is
an independent implementation of PSNR / SSIM / MS-SSIM: on grey images the two must agree.

Real pairs: demo chest X-rays (grey, 256 px) against a different patient's X-ray (as a
synthetic image against its nearest real neighbour) and against a blurred copy of itself (as a
round trip); pydicom's colour ultrasound cine (YBR_FULL_422, 240 x 320) frame against the next
frame; scikit-learn's 8 x 8 handwritten digits for the small-image plans.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from quality_fixtures import cxr_pairs, digit_pairs, ultrasound_frames

from ml.metrics.piq_loader import PIQ_VERSION, piq_module
from ml.metrics.quality import (
    LOWER_IS_BETTER,
    METRICS,
    MS_SSIM_WEIGHTS,
    ms_gmsd_scales,
    ms_ssim_plan,
    paired_quality,
    per_image_quality,
)

TOL = 1e-4


def _to_signed(unit: torch.Tensor) -> torch.Tensor:
    return unit * 2 - 1


def _piq_reference(
    ref: torch.Tensor, cand: torch.Tensor, *, defaults: bool
) -> dict[str, torch.Tensor]:
    """piq's per-image scores, x = candidate and y = reference as piq reads them. With
    `defaults`, every piq argument that our settings should equal is left at piq's default."""
    h, w = ref.shape[-2:]
    colour = ref.shape[1] == 3
    psnr = piq_module("piq.psnr").psnr
    ssim = piq_module("piq.ssim").ssim
    ms_ssim = piq_module("piq.ms_ssim").multi_scale_ssim
    ms_gmsd = piq_module("piq.gmsd").multi_scale_gmsd
    mdsi = piq_module("piq.mdsi").mdsi
    haarpsi = piq_module("piq.haarpsi").haarpsi
    out = {"psnr": psnr(cand, ref, reduction="none")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # piq warns that it copies grey to RGB for MDSI
        out["mdsi"] = mdsi(cand, ref, reduction="none")
    if defaults:
        out["ssim"] = ssim(cand, ref, reduction="none", downsample=False)
        out["ms_ssim"] = ms_ssim(cand, ref, reduction="none")
        out["ms_gmsd"] = ms_gmsd(cand, ref, reduction="none", chromatic=colour)
        out["haarpsi"] = haarpsi(cand, ref, reduction="none")
        return out
    window = min(11, min(h, w) - (1 - min(h, w) % 2))
    out["ssim"] = ssim(cand, ref, kernel_size=window, reduction="none", downsample=False)
    scales, ms_window = ms_ssim_plan(h, w)  # type: ignore[misc]
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales])
    out["ms_ssim"] = ms_ssim(
        cand, ref, kernel_size=ms_window, scale_weights=weights, reduction="none"
    )
    gmsd_weights = torch.tensor([0.096, 0.596, 0.289, 0.019][: ms_gmsd_scales(h, w)])
    out["ms_gmsd"] = ms_gmsd(
        cand, ref, scale_weights=gmsd_weights, chromatic=colour, reduction="none"
    )
    return out


def _assert_matches(ours: dict[str, list[float]], theirs: dict[str, torch.Tensor]) -> None:
    assert set(ours) == set(theirs)
    for metric, values in theirs.items():
        np.testing.assert_allclose(ours[metric], values.double().numpy(), rtol=0, atol=TOL)


def test_piq_is_loaded_without_torchvision() -> None:
    piq_module("piq.haarpsi")
    assert "torchvision" not in sys.modules
    assert sys.modules["piq"].__version__ == PIQ_VERSION
    with pytest.raises(ValueError, match="not one of"):
        piq_module("piq.fid")  # FID imports torchvision: never through the loader


def test_grey_x_rays_match_piq_defaults() -> None:
    x, other, blurred = cxr_pairs(n=3)
    ref, cand = torch.cat([x, x]), torch.cat([other, blurred])  # both pairings in one batch
    ours = per_image_quality(_to_signed(ref), _to_signed(cand), batch_size=4)
    _assert_matches(ours, _piq_reference(ref, cand, defaults=True))


def test_colour_ultrasound_frames_match_piq_defaults() -> None:
    frames, following = ultrasound_frames(n=3)
    assert frames.shape == (3, 3, 240, 320)
    assert not torch.equal(frames[:, 0], frames[:, 1])  # really colour, not grey in RGB
    ours = per_image_quality(_to_signed(frames), _to_signed(following), batch_size=2)
    theirs = _piq_reference(frames, following, defaults=True)
    _assert_matches(ours, theirs)
    # MS-GMSDc differs from the luminance-only MS-GMSD: the colour path is really taken.
    grey_only = piq_module("piq.gmsd").multi_scale_gmsd(following, frames, reduction="none")
    assert not torch.allclose(grey_only, theirs["ms_gmsd"], atol=1e-6)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_small_colour_images_match_piq_with_the_reduced_plans(size: int) -> None:
    frames, following = ultrasound_frames(n=2)
    small = F.interpolate(frames, size=(size, size), mode="area")
    small_next = F.interpolate(following, size=(size, size), mode="area")
    ours = per_image_quality(_to_signed(small), _to_signed(small_next))
    theirs = _piq_reference(small, small_next, defaults=False)
    theirs["haarpsi"] = piq_module("piq.haarpsi").haarpsi(small_next, small, reduction="none")
    _assert_matches(ours, theirs)


def test_eight_pixel_digits_match_piq_and_leave_out_haarpsi() -> None:
    x, y = digit_pairs()
    ours = per_image_quality(_to_signed(x), _to_signed(y))
    assert "haarpsi" not in ours  # 8 px < HaarPSI's 16: left out, not guessed
    assert ms_ssim_plan(8, 8) == (2, 3) and ms_gmsd_scales(8, 8) == 2
    _assert_matches(ours, _piq_reference(x, y, defaults=False))
    summary = paired_quality(_to_signed(x), _to_signed(y))
    assert summary["haarpsi"] is None and "16 px" in str(summary["haarpsi_note"])
    assert summary["ms_gmsd_scales"] == 2 and summary["ms_gmsd_chromatic"] is False


def test_grey_psnr_ssim_ms_ssim_agree_with_monai() -> None:
    from monai.metrics import MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

    x, other, _ = cxr_pairs(n=2)
    ours = per_image_quality(_to_signed(x), _to_signed(other), metrics=("psnr", "ssim", "ms_ssim"))
    monai = {
        "psnr": PSNRMetric(max_val=1.0, reduction="none")(other, x),
        "ssim": SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")(other, x),
        "ms_ssim": MultiScaleSSIMMetric(
            spatial_dims=2, data_range=1.0, weights=MS_SSIM_WEIGHTS, reduction="none"
        )(other, x),
    }
    _assert_matches(ours, {k: v.reshape(-1) for k, v in monai.items()})


def test_x_ray_pairs_rank_as_expected() -> None:
    """A blurred copy is closer to its X-ray than another patient's X-ray is, on every metric
    and in its own direction."""
    x, other, blurred = cxr_pairs(n=2)
    near = paired_quality(_to_signed(x), _to_signed(blurred))
    far = paired_quality(_to_signed(x), _to_signed(other))
    for metric in METRICS:
        better = (
            near[metric] < far[metric] if metric in LOWER_IS_BETTER else near[metric] > far[metric]
        )  # type: ignore[operator]
        assert better, (metric, near[metric], far[metric])
