"""Paired image quality (`ml.metrics.quality`): agreement with piq and time per image.

Agreement: the largest |ours - piq| per metric, piq called directly with its own defaults, on
real pairs: demo chest X-rays (grey, 256 px) each against the next patient's X-ray and against a
blurred copy, and pydicom's colour ultrasound cine (RGB, 240 x 320) frame against next frame.
The same data as tests/unit/test_quality_piq.py (tests/quality_fixtures.py), more of it.

Speed: milliseconds per image pair for each metric, on smooth random images (the cost does not
depend on content), grey and RGB at 64 and 256 px, batches of `--batch`, median of `--repeats`.
This sizes the nearest-neighbours job's sample (workers/evaluation.py QUALITY_MAX_IMAGES).

    .venv/bin/python bench/quality_metrics.py
    .venv/bin/python bench/quality_metrics.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from quality_fixtures import cxr_pairs, ultrasound_frames  # noqa: E402

from ml.metrics.piq_loader import piq_module  # noqa: E402
from ml.metrics.quality import METRICS, per_image_quality  # noqa: E402


def _piq(ref: torch.Tensor, cand: torch.Tensor) -> dict[str, torch.Tensor]:
    """piq with its defaults (SSIM without its >256 px down-sampling, as ours)."""
    colour = ref.shape[1] == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # piq's grey -> RGB note for MDSI
        return {
            "psnr": piq_module("piq.psnr").psnr(cand, ref, reduction="none"),
            "ssim": piq_module("piq.ssim").ssim(cand, ref, reduction="none", downsample=False),
            "ms_ssim": piq_module("piq.ms_ssim").multi_scale_ssim(cand, ref, reduction="none"),
            "ms_gmsd": piq_module("piq.gmsd").multi_scale_gmsd(
                cand, ref, reduction="none", chromatic=colour
            ),
            "mdsi": piq_module("piq.mdsi").mdsi(cand, ref, reduction="none"),
            "haarpsi": piq_module("piq.haarpsi").haarpsi(cand, ref, reduction="none"),
        }


def agreement(n: int) -> None:
    x, other, blurred = cxr_pairs(n=n)
    frames, following = ultrasound_frames(n=n)
    cases = {
        "grey X-ray vs other patient": (x, other),
        "grey X-ray vs blurred copy": (x, blurred),
        "RGB ultrasound frame vs next": (frames, following),
    }
    print(f"Largest |ours - piq| over {n} pairs each (tolerance in the tests: 1e-4)")
    print(f"{'pairs':32s}" + "".join(f"{m:>10s}" for m in METRICS))
    for name, (ref, cand) in cases.items():
        ours = per_image_quality(ref * 2 - 1, cand * 2 - 1)
        theirs = _piq(ref, cand)
        diffs = [(torch.tensor(ours[m]) - theirs[m].double()).abs().max().item() for m in METRICS]
        print(f"{name:32s}" + "".join(f"{d:10.1e}" for d in diffs))


def speed(batch: int, repeats: int, device: str) -> None:
    print(f"\nms per image pair, batches of {batch}, median of {repeats}, on {device}")
    print(f"{'images':14s}" + "".join(f"{m:>10s}" for m in METRICS) + f"{'all six':>10s}")
    g = torch.Generator().manual_seed(0)
    for channels in (1, 3):
        for size in (64, 256):
            coarse = torch.rand(batch, channels, size // 8, size // 8, generator=g)
            ref = F.interpolate(coarse, size=(size, size), mode="bilinear") * 2 - 1
            cand = (ref + 0.1 * torch.randn(ref.shape, generator=g)).clamp(-1, 1)
            per_metric = []
            for metric in METRICS:
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    per_image_quality(ref, cand, metrics=(metric,), batch_size=batch, device=device)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - start)
                per_metric.append(1000 * statistics.median(times) / batch)
            label = f"{'grey' if channels == 1 else 'RGB'} {size} px"
            row = "".join(f"{t:10.2f}" for t in per_metric) + f"{sum(per_metric):10.2f}"
            print(f"{label:14s}" + row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="pairs per agreement case")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-agreement", action="store_true")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.no_agreement:
        agreement(args.pairs)
    if not args.no_speed:
        speed(args.batch, args.repeats, args.device)


if __name__ == "__main__":
    main()
