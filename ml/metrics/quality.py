"""Paired (full-reference) image quality: PSNR, SSIM, MS-SSIM, MS-GMSD, MDSI and HaarPSI.

For pairs where a per-pair score is meaningful: a CycleGAN source against its round trip, a
synthetic image against its nearest real training image (how close is the closest real
match?), reconstruction, super-resolution. Unpaired synthesis as a whole is judged by the
distribution metrics in `ml.metrics.fid`. Images are (N, C, H, W) in [-1, 1] with C = 1 (grey)
or 3 (RGB), mapped to [0, 1] (values outside are clipped, as `ml.training.grid.to_uint8`
does), and every score is computed by piq 0.8.0 (Kastryulin et al., "PyTorch Image Quality",
Apache-2.0), loaded without torchvision by `ml.metrics.piq_loader` (its docstring says why a
loader is needed). One library for all six: MONAI, which computed the first three before,
implements neither MS-GMSD, MDSI nor HaarPSI, and on colour images its MS-SSIM averages the
channels before the product over scales while piq (like TensorFlow) takes the product per
channel; the two agree on grey images (tests/unit/test_quality_piq.py checks both).

Higher is better for PSNR, SSIM, MS-SSIM and HaarPSI; lower is better for MS-GMSD and MDSI
(0 for identical images). `LOWER_IS_BETTER` says which. Settings, and what happens when an
image is too small for one:

- PSNR (`piq.psnr`, data range 1, over all channels). piq adds 1e-8 to the MSE, so identical
  images get 80 dB (`PSNR_CAP_DB`) rather than infinity, which JSON cannot hold; "psnr_capped"
  counts the images within 0.01 dB of it (MSE under 2.3e-11: identical up to round-off), so a
  reader knows the mean is a floor for them.
- SSIM (Wang et al. 2004; `piq.ssim`, no down-sampling): 11-px Gaussian window, sigma 1.5,
  unpadded, mean over channels. Images smaller than 11 px use the largest odd window that fits
  ("ssim_window" reports it); below 3 px SSIM is None.
- MS-SSIM (Wang et al. 2003; `piq.multi_scale_ssim`): the standard 5 scales need images of at
  least 176 px for an 11-px window to fit the coarsest scale (each scale halves the image).
  Smaller images use the rule in `ms_ssim_plan`: keep the 11-px window and drop the coarsest
  scales until it fits (128 px: 4 scales, 64 px: 3, 32 px: 2); if not even 2 scales fit, keep
  2 and shrink the window to the largest odd size that fits, down to 3 px (16 px: window 7).
  The weights are the first `scales` of Wang et al.'s five, renormalised to sum to 1.
  "ms_ssim_scales" and "ms_ssim_window" report the choice: MS-SSIM values computed with
  different plans do not compare. Images under 6 px get None and an "ms_ssim_note".
- MS-GMSD (Zhang et al. 2017; `piq.multi_scale_gmsd`): 4 scales weighted 0.096, 0.596, 0.289,
  0.019, which need at least 17 px (2^scales + 1); smaller images drop the coarsest scales the
  same way ("ms_gmsd_scales"; under 3 px None). Colour images use the paper's chromatic
  variant MS-GMSDc ("ms_gmsd_chromatic"), grey ones the luminance-only MS-GMSD.
- MDSI (Nafchi et al. 2016; `piq.mdsi`, summation combination, the paper's constants). MDSI is
  defined on RGB: grey images are repeated to 3 channels (as piq would, without its warning),
  so their chromatic term is constant. Under 3 px None.
- HaarPSI (Reisenhofer et al. 2018; `piq.haarpsi`, 3 Haar scales, 2x down-sampling first, as
  the authors' code does). Its weights come from the third scale, so the 3 scales are fixed and
  images under 16 px get None and a "haarpsi_note". Colour images add the I and Q channels'
  similarity, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ml.metrics.piq_loader import piq_module

METRICS = ("psnr", "ssim", "ms_ssim", "ms_gmsd", "mdsi", "haarpsi")
LOWER_IS_BETTER = frozenset({"ms_gmsd", "mdsi"})
PSNR_CAP_DB = 80.0  # piq: -10 log10(0 + 1e-8)
_CAPPED_WITHIN_DB = 0.01
# Wang, Simoncelli & Bovik 2003: the exponents of the five scales, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# Zhang et al. 2017 (piq's defaults), finest first.
MS_GMSD_WEIGHTS = (0.096, 0.596, 0.289, 0.019)
HAARPSI_MIN_SIDE = 16  # 2^(scales + 1) for piq's 3 Haar scales
_MIN_SIDE = 3
_WINDOW = 11
_SIGMA = 1.5


def _as_unit(images: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    x = torch.as_tensor(images).detach().to(device="cpu", dtype=torch.float32)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{what}: expected (N, C, H, W) images, got {tuple(x.shape)}")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected 1 (grey) or 3 (RGB) channels, got {x.shape[1]}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: images contain NaN or infinity")
    return x.clamp(-1.0, 1.0).add(1.0).div(2.0)


def _ms_fits(side: int, scales: int, window: int) -> bool:
    # The coarsest scale must hold a whole window, since the SSIM filter is unpadded (this is
    # stricter than piq's own check, (window - 1) * 2^(scales - 1) + 1).
    return side // 2 ** (scales - 1) >= window


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


def ms_gmsd_scales(height: int, width: int) -> int | None:
    """Scales of MS-GMSD on height x width images (piq needs 2^scales + 1 px), or None."""
    side = min(height, width)
    for scales in range(len(MS_GMSD_WEIGHTS), 0, -1):
        if side >= 2**scales + 1:
            return scales
    return None


def _ssim_window(height: int, width: int) -> int | None:
    side = min(height, width, _WINDOW)
    window = side if side % 2 else side - 1
    return window if window >= _MIN_SIDE else None


def _weights(values: Sequence[float], n: int) -> torch.Tensor:
    w = torch.tensor(values[:n], dtype=torch.float32)
    return w / w.sum()


_Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BatchFn = Callable[[int, int], None]


def _scorers(h: int, w: int, channels: int) -> dict[str, tuple[_Scorer, dict[str, object]]]:
    """Per metric that fits h x w: a function (reference, candidate) -> (B,) scores, and the
    settings reported beside its mean. piq reads x as the distorted image and y as the reference:
    MDSI is not symmetric (its gradient term compares each image with their average), so the
    candidate goes first."""
    out: dict[str, tuple[_Scorer, dict[str, object]]] = {}
    psnr = piq_module("piq.psnr").psnr
    out["psnr"] = (lambda r, c: psnr(c, r, data_range=1.0, reduction="none"), {})
    window = _ssim_window(h, w)
    if window is not None:
        ssim = piq_module("piq.ssim").ssim
        out["ssim"] = (
            lambda r, c: ssim(
                c,
                r,
                kernel_size=window,
                kernel_sigma=_SIGMA,
                data_range=1.0,
                reduction="none",
                downsample=False,
            ),
            {"ssim_window": window},
        )
    plan = ms_ssim_plan(h, w)
    if plan is not None:
        ms_ssim = piq_module("piq.ms_ssim").multi_scale_ssim
        weights = _weights(MS_SSIM_WEIGHTS, plan[0])
        out["ms_ssim"] = (
            lambda r, c: ms_ssim(
                c,
                r,
                kernel_size=plan[1],
                kernel_sigma=_SIGMA,
                data_range=1.0,
                reduction="none",
                scale_weights=weights.to(c.device),
            ),
            {"ms_ssim_scales": plan[0], "ms_ssim_window": plan[1]},
        )
    scales = ms_gmsd_scales(h, w)
    if scales is not None:
        ms_gmsd = piq_module("piq.gmsd").multi_scale_gmsd
        gmsd_weights = _weights(MS_GMSD_WEIGHTS, scales)
        chromatic = channels == 3
        out["ms_gmsd"] = (
            lambda r, c: ms_gmsd(
                c,
                r,
                data_range=1.0,
                reduction="none",
                scale_weights=gmsd_weights.to(c.device),
                chromatic=chromatic,
            ),
            {"ms_gmsd_scales": scales, "ms_gmsd_chromatic": chromatic},
        )
    if min(h, w) >= _MIN_SIDE:
        mdsi = piq_module("piq.mdsi").mdsi
        out["mdsi"] = (
            lambda r, c: mdsi(_rgb(c), _rgb(r), data_range=1.0, reduction="none"),
            {},
        )
    if min(h, w) >= HAARPSI_MIN_SIDE:
        haarpsi = piq_module("piq.haarpsi").haarpsi
        out["haarpsi"] = (lambda r, c: haarpsi(c, r, data_range=1.0, reduction="none"), {})
    return out


def _rgb(x: torch.Tensor) -> torch.Tensor:
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _too_small(metric: str, h: int, w: int) -> dict[str, object]:
    """The keys a metric reports when the images are too small for it."""
    if metric == "ssim":
        return {"ssim": None, "ssim_window": None}
    if metric == "ms_ssim":
        return {
            "ms_ssim": None,
            "ms_ssim_scales": None,
            "ms_ssim_window": None,
            "ms_ssim_note": f"images of {h}x{w} px are too small for MS-SSIM: two scales with a "
            "3 px window need at least 6 px",
        }
    if metric == "ms_gmsd":
        return {"ms_gmsd": None, "ms_gmsd_scales": None, "ms_gmsd_chromatic": None}
    if metric == "haarpsi":
        return {
            "haarpsi": None,
            "haarpsi_note": f"images of {h}x{w} px are too small for HaarPSI: its 3 Haar scales "
            f"need at least {HAARPSI_MIN_SIDE} px",
        }
    return {metric: None}


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


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


def _scores(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    metrics: Sequence[str] | str,
    batch_size: int,
    device: str | torch.device,
    on_batch: BatchFn | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, dict[str, object]]]:
    """(reference in [0, 1], per-image float64 scores, settings) for the metrics that fit."""
    chosen = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    ref, cand = _checked_pair(reference, candidate, chosen, batch_size)
    h, w = ref.shape[2:]
    scorers = _scorers(h, w, ref.shape[1])
    scores: dict[str, torch.Tensor] = {}
    settings: dict[str, dict[str, object]] = {}
    todo = [m for m in METRICS if m in chosen]
    total, done = len(ref) * sum(m in scorers for m in todo), 0
    for metric in todo:
        if metric not in scorers:
            settings[metric] = _too_small(metric, h, w)
            continue
        score, setting = scorers[metric]
        parts = []
        for b in _batches(len(ref), batch_size):  # batches bound the memory of MDSI's maps
            with torch.no_grad():
                parts.append(score(ref[b].to(device), cand[b].to(device)).reshape(-1).cpu())
            done += len(parts[-1])
            if on_batch is not None:
                on_batch(done, total)
        scores[metric] = torch.cat(parts).double()
        settings[metric] = setting
    return ref, scores, settings


@dataclass(frozen=True)
class QualityReport:
    """`summary`: what `paired_quality` returns; `per_image`: what `per_image_quality` does."""

    summary: dict[str, float | int | str | bool | None]
    per_image: dict[str, list[float]]


def quality_report(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    *,
    metrics: Sequence[str] | str = METRICS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    on_batch: BatchFn | None = None,
) -> QualityReport:
    """Both views of one computation. `on_batch(done, total)` is called after each batch of
    each metric (images done of all the images times metrics): a job reports progress there,
    and may raise there to stop."""
    ref, scores, settings = _scores(reference, candidate, metrics, batch_size, device, on_batch)
    summary: dict[str, float | int | str | bool | None] = {"n": int(ref.shape[0])}
    for metric, setting in settings.items():
        if metric in scores:
            summary[metric] = float(scores[metric].mean())
        summary.update(setting)  # type: ignore[arg-type]
        if metric == "psnr":
            capped = scores["psnr"] >= PSNR_CAP_DB - _CAPPED_WITHIN_DB
            summary["psnr_capped"] = int(capped.sum())
    per_image = {metric: values.tolist() for metric, values in scores.items()}
    return QualityReport(summary=summary, per_image=per_image)


def per_image_quality(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    *,
    metrics: Sequence[str] | str = METRICS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, list[float]]:
    """Per pair, each metric of `metrics` that the image size allows (see the module docstring);
    the others are left out, not guessed."""
    report = quality_report(
        reference, candidate, metrics=metrics, batch_size=batch_size, device=device
    )
    return report.per_image


def paired_quality(
    reference: torch.Tensor | np.ndarray,
    candidate: torch.Tensor | np.ndarray,
    *,
    metrics: Sequence[str] | str = METRICS,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> dict[str, float | int | str | bool | None]:
    """Means over N pairs of the chosen `metrics`, plus "n" and the settings used.

    Keys: "n"; "psnr" (dB) and "psnr_capped"; "ssim" and "ssim_window"; "ms_ssim",
    "ms_ssim_scales", "ms_ssim_window" ("ms_ssim_note" when None); "ms_gmsd",
    "ms_gmsd_scales", "ms_gmsd_chromatic"; "mdsi"; "haarpsi" ("haarpsi_note" when None).
    """
    report = quality_report(
        reference, candidate, metrics=metrics, batch_size=batch_size, device=device
    )
    return report.summary
