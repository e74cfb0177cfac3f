"""Paired (full-reference) image quality: PSNR, SSIM and MS-SSIM of candidates against references.

For jobs that produce one candidate per known reference (image translation, reconstruction,
super-resolution), where a per-pair score is meaningful; unpaired synthesis is judged by the
distribution metrics in `ml.metrics.fid` instead. Images are (N, C, H, W) in [-1, 1], mapped to
[0, 1] (values outside are clipped, as `ml.training.grid.to_uint8` does) and scored by MONAI:

- PSNR (`monai.metrics.PSNRMetric`, max_val 1). Identical images have infinite PSNR, which JSON
  cannot hold, so each image's PSNR is capped at `PSNR_CAP_DB` (100 dB: an MSE of 1e-10 on the
  [0, 1] scale, i.e. identical up to float round-off) and "psnr_capped" counts the images that
  hit the cap, so a reader knows the mean is a floor for them.
- SSIM (Wang et al. 2004; `monai.metrics.SSIMMetric`): 11-px Gaussian window, sigma 1.5. MONAI
  filters without padding, so images smaller than 11 px use the largest odd window that fits
  ("ssim_window" reports it); below 3 px SSIM is None.
- MS-SSIM (Wang et al. 2003; `monai.metrics.MultiScaleSSIMMetric`): the standard 5 scales need
  images of at least 176 px for an 11-px window at the coarsest scale (MONAI checks
  side // (scales - 1)^2 > window - 1; each scale halves the image). Smaller images use the
  rule in `ms_ssim_plan`: keep the 11-px window and drop the coarsest scales until it fits
  (128 px: 4 scales, 64 px: 3, 32 px: 2); if not even 2 scales fit, keep 2 scales and shrink
  the window to the largest odd size that fits, down to 3 px (16 px: window 7). The weights
  are the first `scales` of Wang et al.'s five, renormalised to sum to 1. "ms_ssim_scales" and
  "ms_ssim_window" report the choice: MS-SSIM values computed with different plans do not
  compare. Images under 6 px get None and an "ms_ssim_note".

MS-GMSD, MDSI and HaarPSI are not offered: the maintained PyTorch libraries that implement
them (piq, piqa, pyiqa) all declare torchvision as a dependency, and torchvision is not
installable here; torchmetrics, kornia, scikit-image and sewar do not implement them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

METRICS = ("psnr", "ssim", "ms_ssim")
PSNR_CAP_DB = 100.0
# Wang, Simoncelli & Bovik 2003: the exponents of the five scales, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = 11
_SIGMA = 1.5


def _as_unit(images: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    x = torch.as_tensor(images).detach().to(device="cpu", dtype=torch.float32)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{what}: expected (N, C, H, W) images, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: images contain NaN or infinity")
    return x.clamp(-1.0, 1.0).add(1.0).div(2.0)


def _ms_fits(side: int, scales: int, window: int) -> bool:
    # Both our own need (the coarsest scale holds a whole window, since the filter is unpadded)
    # and MONAI's own size check, which is stricter for 4 scales and looser for 2.
    coarsest = side // 2 ** (scales - 1)
    return coarsest >= window and side // max(1, scales - 1) ** 2 > window - 1


def ms_ssim_plan(height: int, width: int) -> tuple[int, int] | None:
    """(scales, window) for MS-SSIM on height x width images, or None when under 6 px."""
    side = min(height, width)
    for scales in range(len(MS_SSIM_WEIGHTS), 1, -1):
        if _ms_fits(side, scales, _WINDOW):
            return scales, _WINDOW
    for window in range(_WINDOW - 2, 2, -2):
        if _ms_fits(side, 2, window):
            return 2, window
    return None


def _ssim_window(height: int, width: int) -> int | None:
    side = min(height, width, _WINDOW)
    window = side if side % 2 else side - 1
    return window if window >= 3 else None


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


_Metric = PSNRMetric | SSIMMetric | MultiScaleSSIMMetric


def _per_image(metric: _Metric, ref: torch.Tensor, cand: torch.Tensor, size: int) -> torch.Tensor:
    # MONAI metrics return (B, 1) with reduction="none"; computed in batches to bound memory.
    parts = [metric(y_pred=cand[b], y=ref[b]) for b in _batches(len(ref), size)]
    return torch.cat([p.reshape(-1) for p in parts]).double()


def per_image_quality(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    *,
    metrics: Sequence[str] = METRICS,
    batch_size: int = 64,
) -> dict[str, list[float]]:
    """Per pair: "psnr" (capped), "ssim" and "ms_ssim", each left out where the images are too
    small for it (see `paired_quality` for the window and scale rules)."""
    ref, cand = _checked_pair(reference, candidate, metrics, batch_size)
    h, w = ref.shape[2:]
    out: dict[str, list[float]] = {}
    if "psnr" in metrics:
        psnr = _per_image(PSNRMetric(max_val=1.0, reduction="none"), ref, cand, batch_size)
        out["psnr"] = psnr.clamp(max=PSNR_CAP_DB).tolist()
    window = _ssim_window(h, w)
    if "ssim" in metrics and window is not None:
        out["ssim"] = _per_image(_ssim_metric(window), ref, cand, batch_size).tolist()
    plan = ms_ssim_plan(h, w)
    if "ms_ssim" in metrics and plan is not None:
        out["ms_ssim"] = _per_image(_ms_ssim_metric(*plan), ref, cand, batch_size).tolist()
    return out


def _checked_pair(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    metrics: Sequence[str],
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    ref, cand = _as_unit(reference, "reference"), _as_unit(candidate, "candidate")
    if ref.shape != cand.shape:
        raise ValueError(
            f"shape mismatch: reference {tuple(ref.shape)}, candidate {tuple(cand.shape)}"
        )
    return ref, cand


def _ssim_metric(window: int) -> SSIMMetric:
    return SSIMMetric(
        spatial_dims=2, data_range=1.0, win_size=window, kernel_sigma=_SIGMA, reduction="none"
    )


def _ms_ssim_metric(scales: int, window: int) -> MultiScaleSSIMMetric:
    weights = np.asarray(MS_SSIM_WEIGHTS[:scales])
    return MultiScaleSSIMMetric(
        spatial_dims=2,
        data_range=1.0,
        kernel_size=window,
        kernel_sigma=_SIGMA,
        weights=tuple(float(v) for v in weights / weights.sum()),
        reduction="none",
    )


def paired_quality(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    *,
    metrics: Sequence[str] = METRICS,
    batch_size: int = 64,
) -> dict[str, float | int | str | None]:
    """Means over N pairs of the chosen `metrics`, plus "n" and the settings used.

    Keys: "n"; "psnr" (dB, capped per image) and "psnr_capped"; "ssim" and "ssim_window";
    "ms_ssim", "ms_ssim_scales", "ms_ssim_window", and "ms_ssim_note" when it is None.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    ref, cand = _checked_pair(reference, candidate, metrics, batch_size)
    h, w = ref.shape[2:]
    out: dict[str, float | int | str | None] = {"n": int(ref.shape[0])}
    if "psnr" in metrics:
        psnr = _per_image(PSNRMetric(max_val=1.0, reduction="none"), ref, cand, batch_size)
        out["psnr"] = float(psnr.clamp(max=PSNR_CAP_DB).mean())
        out["psnr_capped"] = int((psnr >= PSNR_CAP_DB).sum())
    if "ssim" in metrics:
        out.update(_ssim(ref, cand, h, w, batch_size))
    if "ms_ssim" in metrics:
        out.update(_ms_ssim(ref, cand, h, w, batch_size))
    return out


def _ssim(
    ref: torch.Tensor, cand: torch.Tensor, h: int, w: int, batch_size: int
) -> dict[str, float | int | None]:
    window = _ssim_window(h, w)
    if window is None:
        return {"ssim": None, "ssim_window": None}
    value = float(_per_image(_ssim_metric(window), ref, cand, batch_size).mean())
    return {"ssim": value, "ssim_window": window}


def _ms_ssim(
    ref: torch.Tensor, cand: torch.Tensor, h: int, w: int, batch_size: int
) -> dict[str, float | int | str | None]:
    plan = ms_ssim_plan(h, w)
    if plan is None:
        return {
            "ms_ssim": None,
            "ms_ssim_scales": None,
            "ms_ssim_window": None,
            "ms_ssim_note": f"images of {h}x{w} px are too small for MS-SSIM: two scales with a "
            "3 px window need at least 6 px",
        }
    scales, window = plan
    value = float(_per_image(_ms_ssim_metric(scales, window), ref, cand, batch_size).mean())
    return {"ms_ssim": value, "ms_ssim_scales": scales, "ms_ssim_window": window}
